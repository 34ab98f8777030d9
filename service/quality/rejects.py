"""Rejected rows as a CSV file: one row per reject, the reason beside the value. Corrected, such
a file can be loaded again as a source (`csv:///…/rejects.csv`) to migrate just those rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from service.core.batch import Reject

COLUMNS = ("table", "row", "key", "column", "value", "rule", "error")


def rejects_csv(rejects: Iterable[Reject]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rejects:
        writer.writerow((r.table, "" if r.row is None else r.row, r.key or "", r.column or "",
                         "" if r.value is None else r.value, r.rule, r.message))
    return out.getvalue()


def reject_json(r: Reject) -> dict[str, object]:
    return {"table": r.table, "row": r.row, "key": r.key, "column": r.column, "value": r.value, "rule": r.rule,
            "message": r.message}
