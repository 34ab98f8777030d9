"""Rejected rows for people: as JSON, as a summary CSV (one line per reject) and as a rows CSV.

The rows CSV of a table holds each rejected row whole — its columns as the source had them —
and a last column `_migrator_error` saying why. Corrected, the file loads again as a source
(`csv:///…/users.csv` into the same target table): the CSV source never loads a column named
`_migrator_error`. A row the source could not even split into fields (a ragged CSV line) has
empty cells and its raw text in the error: fill it in, or delete it, before loading again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import replace

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from service.core.batch import REJECT_ERROR_COLUMN, Batch, Reject
from service.core.excel import neutralised_text

COLUMNS = ("table", "row", "key", "column", "value", "rule", "error")
ERROR_COLUMN = REJECT_ERROR_COLUMN


def with_records(batch: Batch) -> list[Reject]:
    """The batch's rejects, each with its whole source row (`record`) when the batch still has it."""
    source = batch.source
    if source is None or not batch.rejects:
        return batch.rejects
    n = source.data.num_rows
    if source.numbers is None:
        index = {r.row: r.row - source.first_row for r in batch.rejects
                 if r.row is not None and 0 <= r.row - source.first_row < n}
    else:
        wanted = [r.row for r in batch.rejects if r.row is not None]
        found = pc.index_in(pa.array(wanted, pa.int64()), value_set=source.numbers).to_pylist() if wanted else []
        index = {row: i for row, i in zip(wanted, found) if i is not None}
    if not index:
        return batch.rejects
    rows = sorted(set(index.values()))
    taken = source.data.take(pa.array(rows, pa.int64()))
    texts = {name: _texts(taken.column(name)) for name in taken.schema.names}
    records = {row: {name: texts[name][j] for name in texts} for j, row in enumerate(rows)}
    return [r if r.record is not None or r.row not in index else replace(r, record=records[index[r.row]])
            for r in batch.rejects]


def _texts(column: pa.Array) -> list[str | None]:
    """Each value as CSV text, as the CSV source reads it back: Arrow's own text of numbers,
    dates and booleans; JSON for lists and structs."""
    t = column.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return list(column.to_pylist())
    if not (pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        try:
            return list(pc.cast(column, pa.string()).to_pylist())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return [None if v is None else v.decode(errors="backslashreplace") if isinstance(v, bytes)
            else orjson.dumps(v, default=str).decode() for v in column.to_pylist()]


def rejects_csv(rejects: Iterable[Reject]) -> str:
    """The summary CSV: one line per reject (table, row, key, column, value, rule, error)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rejects:  # excel-safe: this file is for reading, and values are the source's, unchecked
        writer.writerow([neutralised_text(str(v)) for v in (r.table, "" if r.row is None else r.row, r.key or "",
                                                            r.column or "", "" if r.value is None else r.value,
                                                            r.rule, r.message)])
    return out.getvalue()


def rows_csv(rejects: Sequence[Reject], columns: Sequence[str] = ()) -> str:
    """The rows CSV of one table's rejects: the rows' own columns (`columns`, else those of the
    records in first-seen order), then `_migrator_error`. A row rejected twice is written once."""
    names = list(columns)
    if not names:
        for r in rejects:
            names += [k for k in (r.record or {}) if k not in names]
    errors: dict[object, list[str]] = {}
    first: dict[object, Reject] = {}
    for i, r in enumerate(rejects):
        row: object = r.row if r.row is not None else ("no row", i)
        first.setdefault(row, r)
        errors.setdefault(row, []).append(_error(r))
    lines = [",".join(_quoted(name) for name in (*names, ERROR_COLUMN))]
    for row, r in first.items():
        record = r.record or {}
        lines.append(",".join([*(_quoted(record.get(name)) for name in names), _quoted("; ".join(errors[row]))]))
    return "\n".join(lines) + "\n"


def _quoted(value: str | None) -> str:
    """A CSV field: NULL as nothing, every text quoted — so an empty text stays an empty text."""
    return "" if value is None else '"' + value.replace('"', '""') + '"'


def _error(r: Reject) -> str:
    where = f"row {r.row}" if r.row is not None else "a row"
    text = f"{where}: {r.message} [{r.rule}]"
    if r.record is None and r.value is not None and r.rule == "csv_format":
        text += f"; the line was: {r.value}"
    elif r.record is None:
        text += "; the row's values were not kept"
    return text


def reject_json(r: Reject) -> dict[str, object]:
    return {"table": r.table, "row": r.row, "key": r.key, "column": r.column, "value": r.value, "rule": r.rule,
            "message": r.message, "record": r.record}
