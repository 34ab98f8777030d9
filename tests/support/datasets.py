"""Shared test data: a people table full of the values CSV gets wrong (quotes, commas, newlines
inside quotes, non-ASCII, empty string next to NULL), as rows and as a CSV file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from tests.support.csvtext import write_csv

PEOPLE_HEADER = ("id", "name", "score", "active", "joined", "note")

# (id, name, score, active, joined, note); None is NULL (an unquoted empty field), "" an empty string.
PEOPLE_SPECIAL = [
    (1, 'He said "hi"', 1.5, True, date(2024, 1, 2), "plain"),
    (2, "a,b,c", -2.25, False, date(1999, 12, 31), ""),
    (3, "first line\nsecond line", 0.0, True, None, None),
    (4, "Zoë Ångström 東京 🚀", 3.125, None, date(2000, 2, 29), "naïve café"),
    (5, "", None, False, date(2024, 3, 4), None),
    (6, None, 7.5, True, date(2024, 5, 6), 'comma, "quote" and\nnewline'),
    (7, '""', 1e-3, False, date(1970, 1, 1), ' leading and trailing spaces '),
    (8, "tab\there; semi;colon", 123456789.25, True, date(2038, 1, 19), "\\backslash\\N"),
]


def people_rows(n: int = 300) -> list[tuple[object, ...]]:
    """The special rows first, then ordinary ones with a special value every few rows."""
    rows: list[tuple[object, ...]] = list(PEOPLE_SPECIAL)
    for i in range(len(rows) + 1, n + 1):
        name = f"person {i}" if i % 4 else f'person "{i}",\nmultiline'
        note = None if i % 5 == 0 else "" if i % 7 == 0 else f"ñote {i}"
        rows.append((i, name, i / 4, i % 3 == 0, date(2020, 1, 1 + i % 28), note))
    return rows


def write_people_csv(path: Path, rows: list[tuple[object, ...]]) -> None:
    write_csv(path, PEOPLE_HEADER, rows)
