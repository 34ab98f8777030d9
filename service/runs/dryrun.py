"""A dry run: the spec's transforms, rules and duplicate detection applied to a sample of each
table, reporting how many rows would fail and why — nothing is written."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence

import pyarrow as pa

from service.connectors.registry import open_source
from service.core.urls import EndpointUrl
from service.quality.rejects import reject_json
from service.quality.rows import Rows
from service.quality.stage import TableQuality
from service.runs.spec import MigrationSpec

EXAMPLES = 5


async def dry_run(spec: MigrationSpec, source_url: EndpointUrl, tables: Sequence[str] | None, sample: int
                  ) -> dict[str, dict[str, object]]:
    """Per table (default: every table of the source): rows sampled, rows that would be rejected
    (by rule), warnings, a few examples."""
    source = open_source(source_url, timeout=spec.timeout, csv=spec.csv, mongo=spec.mongo)
    report: dict[str, dict[str, object]] = {}
    try:
        for table in tables if tables is not None else await source.list_tables():
            schema = await source.describe(table)
            quality = TableQuality.of(schema, transforms=spec.transforms, rules=spec.rules, dedupe=spec.dedupe,
                                      validation=spec.validation)
            reader = source.read(schema, after=None, start_row=1, batch_size=sample, native=None)
            async with contextlib.aclosing(reader):
                batch = await anext(reader, None)
            if batch is None or not isinstance(batch.data, pa.RecordBatch):
                report[table] = {"sampled": 0, "wouldFail": 0, "byRule": {}, "warnings": 0, "examples": []}
                continue

            def check(data: pa.RecordBatch = batch.data, first: int = batch.first_row) -> Rows:
                rows = Rows.of(table, data, first, quality.schema.key)
                for step in quality.steps:
                    rows = step(rows)
                return rows

            rows = await asyncio.to_thread(check)
            rejects = [*batch.rejects, *rows.rejects]
            warnings = quality.take_warnings()
            report[table] = {
                "sampled": batch.rows_read,
                "wouldFail": len(rejects),
                "byRule": dict(Counter(r.rule for r in rejects)),
                "warnings": len(warnings),
                "examples": [reject_json(r) for r in rejects[:EXAMPLES]],
            }
    finally:
        await asyncio.shield(source.close())
    return report
