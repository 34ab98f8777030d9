"""CSV text as users write and read it, with NULL (an unquoted empty field) kept apart from the
empty string (a quoted empty field `""`). A small RFC 4180 reader/writer independent of the service."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

Cell = str | None


def field(value: object) -> str:
    """One CSV field: None -> nothing, '' -> `""`, text quoted only when it has to be."""
    if value is None:
        return ""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if text == "" or any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(field(h) for h in header) + "\n")
        for row in rows:
            f.write(",".join(field(v) for v in row) + "\n")


def read_csv(path: Path) -> list[list[Cell]]:
    """Every record (header included) of a UTF-8 CSV file; unquoted empty fields are None."""
    text = path.read_text(encoding="utf-8")
    records: list[list[Cell]] = []
    record: list[Cell] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            parts, j = [], i + 1
            while True:
                k = text.index('"', j)
                parts.append(text[j:k])
                if k + 1 < n and text[k + 1] == '"':
                    parts.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            value: Cell = "".join(parts)
        else:
            k = i
            while k < n and text[k] not in ",\r\n":
                k += 1
            value = text[i:k] or None
            i = k
        record.append(value)
        if i < n and text[i] == ",":
            i += 1
            if i == n:
                record.append(None)
        else:
            if text.startswith("\r\n", i):
                i += 2
            elif i < n:
                i += 1
            records.append(record)
            record = []
    if record:
        records.append(record)
    return records
