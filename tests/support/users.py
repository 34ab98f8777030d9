"""A users CSV with a known set of bad rows, and the spec (transforms, rules, dedupe) that rejects
exactly those: `write_users(folder)` writes `users.csv` — GOOD[:20], every BAD row, GOOD[20:]."""

from __future__ import annotations

from pathlib import Path

from tests.support.csvtext import write_csv

HEADER = ("id", "email", "full_name", "age", "joined", "country")
GOOD = [(i, f"User{i}@Example.com", f"  Name {i} ", 20 + i % 50, f"0{1 + i % 9}/01/2024", "DE") for i in range(1, 41)]
BAD = {  # row id -> (the bad row, the rule that rejects it)
    41: ((41, "not-an-email", "A", 30, "01/01/2024", "DE"), "format"),
    42: ((42, "u42@example.com", "B", 200, "01/01/2024", "DE"), "max"),
    43: ((43, None, "C", 30, "01/01/2024", "DE"), "required"),
    44: ((44, "USER1@example.com", "D", 30, "01/01/2024", "DE"), "duplicate"),  # user1's email, lowercased
    45: ((45, "u45@example.com", "E", 30, "31/13/2024", "DE"), "dateFormat"),
    46: ((46, "u46@example.com", "F", 30, "01/01/2024", "XX"), "enum"),
}
SPEC: dict[str, object] = {
    "batchSize": 7,
    "transforms": {"users": [
        {"rename": {"full_name": "name"}},
        {"trim": ["name"]},
        {"lowercase": ["email"]},
        {"dateFormat": {"joined": "%d/%m/%Y"}},
    ]},
    "rules": {"users": {
        "email": {"required": True, "format": "email"},
        "age": {"type": "integer", "min": 0, "max": 150},
        "country": {"enum": ["DE", "FR", "US"]},
    }},
    "dedupe": {"users": {"key": ["email"], "keep": "first"}},
}


def write_users(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [*GOOD[:20], *(row for row, _ in BAD.values()), *GOOD[20:]]
    write_csv(folder / "users.csv", HEADER, rows)
