"""The plan of a migration (DESIGN.md §3 `plan`): per table its target, record count and columns,
the order tables run in, the total, a time estimate, and the spec's transforms and rules."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from service.connectors.base import Source
from service.connectors.csv.dialect import CsvOptions
from service.connectors.mongo.options import MongoOptions
from service.connectors.registry import open_source
from service.core.errors import InvalidInput
from service.core.types import spec_type_name
from service.core.urls import EndpointUrl, Kind

log = logging.getLogger(__name__)


class PlanOptions(Protocol):
    """What planning needs of a migration spec (runs.spec.MigrationSpec is one)."""

    @property
    def tables(self) -> tuple[str, ...] | None: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def parallel_batches(self) -> int: ...
    @property
    def timeout(self) -> float: ...
    @property
    def mode(self) -> str: ...
    @property
    def on_error(self) -> str: ...
    @property
    def validation(self) -> bool: ...
    @property
    def rules(self) -> Mapping[str, object]: ...
    @property
    def transforms(self) -> Mapping[str, object]: ...
    @property
    def csv(self) -> CsvOptions: ...
    @property
    def mongo(self) -> MongoOptions: ...
    def target_name(self, table: str) -> str: ...

# Rows per second this service sustains per source → target kind on a 2-core machine (make bench,
# 3-column rows). A rough guide until estimates come from a probe of the actual databases.
_RATE: dict[tuple[Kind, Kind], float] = {
    (Kind.POSTGRES, Kind.POSTGRES): 400_000,
    (Kind.CSV, Kind.POSTGRES): 430_000,
    (Kind.POSTGRES, Kind.CSV): 780_000,
}
_DEFAULT_RATE = 150_000.0
_PER_TABLE_SECONDS = 0.05  # connecting, creating the table, the final commit


async def make_plan(spec: PlanOptions, source_url: EndpointUrl, target_url: EndpointUrl) -> dict[str, object]:
    """Read the source's tables, columns and counts; raises UnknownTable / EndpointError."""
    source = open_source(source_url, timeout=spec.timeout, csv=spec.csv, mongo=spec.mongo)
    try:
        await source.check()
        names = list(spec.tables) if spec.tables else await source.list_tables()
        names.sort(key=lambda n: n in spec.mongo.embed)  # embedded rows after their parents
        if not names:
            raise InvalidInput(f"the source {source_url.masked} has no tables")
        tables = [await _table(source, name, spec) for name in names]
    finally:
        await asyncio.shield(source.close())
    total = sum(int(str(t["totalRecords"])) for t in tables)
    rate = _RATE.get((source_url.kind, target_url.kind), _DEFAULT_RATE)
    return {
        "source": source_url.masked,
        "target": target_url.masked,
        "tables": tables,
        "order": names,
        "totalRecords": total,
        "estimatedSeconds": round(_PER_TABLE_SECONDS * len(tables) + total / rate, 2),
        "batchSize": spec.batch_size,
        "parallelBatches": spec.parallel_batches,
        "mode": spec.mode,
        "onError": spec.on_error,
        "transformations": {t: spec.transforms[t] for t in names if t in spec.transforms},
        "validationRules": {t: spec.rules[t] for t in names if t in spec.rules} if spec.validation else {},
    }


async def _table(source: Source, name: str, spec: PlanOptions) -> dict[str, object]:
    schema = await source.describe(name)  # UnknownTable names a missing table
    return {
        "name": name,
        "target": (f"{embed.into}.{embed.field} (embedded by {embed.foreign_key})"
                   if (embed := spec.mongo.embed.get(name)) else spec.target_name(name)),
        "totalRecords": await source.count(name, exact=True),
        "columns": [{"name": c.name, "type": spec_type_name(c.type), "nullable": c.nullable,
                     **({"sourceType": c.native_type} if c.native_type else {})} for c in schema.columns],
        "key": list(schema.key),
        "notes": list(schema.notes),
        "dependsOn": [],
    }
