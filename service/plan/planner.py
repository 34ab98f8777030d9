"""The plan of a migration (DESIGN.md §3 `plan`): per table its target, record count, columns and
keys, the target's column types and what the run will create; the order tables load in (from
foreign keys); the total; a time estimate from a short probe of these databases; and the spec's
transforms and rules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Protocol

import pyarrow as pa

from service.connectors.base import Sink, Source
from service.connectors.csv.dialect import CsvOptions
from service.connectors.mongo.options import MongoOptions
from service.connectors.registry import open_sink, open_source
from service.core.errors import InvalidInput, MigratorError
from service.core.schema import TableSchema
from service.core.types import spec_type_name
from service.core.urls import EndpointUrl
from service.plan.order import load_order
from service.quality.stage import TableQuality
from service.sync.options import SyncOptions, table_problems

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
    def parallel_tables(self) -> int: ...
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
    def dedupe(self) -> Mapping[str, object]: ...
    @property
    def csv(self) -> CsvOptions: ...
    @property
    def mongo(self) -> MongoOptions: ...
    def target_name(self, table: str) -> str: ...


# A PostgreSQL table with more rows than this (by the planner's statistics) is not counted
# exactly: count(*) would read it all. Its count is the estimate, marked as such.
EXACT_COUNT_LIMIT = 5_000_000
PROBE_ROWS = 20_000  # rows read and written by the speed probe (at most one batch)
_PER_TABLE_SECONDS = 0.05  # connecting, creating the table, the final commit
_FALLBACK_RATE = 100_000.0  # rows/s, only when the probe could not run (named in the plan)


async def make_plan(spec: PlanOptions, source_url: EndpointUrl, target_url: EndpointUrl) -> dict[str, object]:
    """Read the source's tables, columns, keys and counts, see what the target has, and probe the
    speed of both; raises UnknownTable / EndpointError / InvalidSpec."""
    source = open_source(source_url, timeout=spec.timeout, csv=spec.csv, mongo=spec.mongo)
    sink = open_sink(target_url, timeout=spec.timeout, csv=spec.csv, parallel=1, mode=spec.mode, mongo=spec.mongo)
    try:
        await source.check()
        names = list(spec.tables) if spec.tables else await source.list_tables()
        if not names:
            raise InvalidInput(f"the source {source_url.masked} has no tables")
        schemas = [await source.describe(name) for name in names]  # UnknownTable names a missing table
        sync = getattr(spec, "sync", None)
        if isinstance(sync, SyncOptions) and sync.enabled:
            problems = table_problems(sync, schemas, source_kind=source.kind,
                                      cursor_reads=hasattr(source, "cursor_max"), target_kind=target_url.kind.value)
            if problems:
                raise InvalidInput("; ".join(problems), details={"field": "incremental"})
        counts = {s.name: await _count(source, s.name) for s in schemas}
        existing = await _target_tables(target_url, spec)
        order = load_order(schemas)
        tables = [_table(s, counts[s.name], spec, sink, existing, order.depends_on[s.name]) for s in schemas]
        estimate = await _estimate(source, sink, schemas, counts, spec)
    finally:
        await asyncio.shield(source.close())
        await asyncio.shield(sink.close())
    by_name = {t["name"]: t for t in tables}
    embedded = [n for n in order.order if n in spec.mongo.embed]  # written into their parents, last
    ordered = [n for n in order.order if n not in spec.mongo.embed] + embedded
    total = sum(int(counts[n][0]) for n in names)
    return {
        "source": source_url.masked,
        "target": target_url.masked,
        "tables": [by_name[n] for n in ordered],
        "order": ordered,
        "levels": [[n for n in level if n not in spec.mongo.embed] for level in order.levels if level] + (
            [embedded] if embedded else []),
        "orderNotes": order.notes,
        "totalRecords": total,
        "estimatedSeconds": round(_PER_TABLE_SECONDS * len(tables) + total / float(str(estimate["rowsPerSecond"])), 2),
        "estimate": estimate,
        "batchSize": spec.batch_size,
        "parallelBatches": spec.parallel_batches,
        "parallelTables": spec.parallel_tables,
        "mode": spec.mode,
        "onError": spec.on_error,
        "transformations": {t: spec.transforms[t] for t in names if t in spec.transforms},
        "validationRules": {t: spec.rules[t] for t in names if t in spec.rules} if spec.validation else {},
        "dedupe": {t: spec.dedupe[t] for t in names if t in spec.dedupe},
    }


async def _count(source: Source, table: str) -> tuple[int, bool]:
    """(rows, whether that is an estimate): exact, unless the source's statistics say the table
    is too large to count quickly."""
    estimate = await source.count(table, exact=False)
    if estimate > EXACT_COUNT_LIMIT:
        return estimate, True
    return await source.count(table, exact=True), False


async def _target_tables(target_url: EndpointUrl, spec: PlanOptions) -> set[str] | None:
    """The tables the target has now (read through its own source connector), or None when it
    cannot say (e.g. a CSV folder not created yet)."""
    reader = open_source(target_url, timeout=spec.timeout, csv=spec.csv, mongo=spec.mongo)
    try:
        await reader.check()
        return set(await reader.list_tables())
    except MigratorError:
        return None
    finally:
        await asyncio.shield(reader.close())


def _table(schema: TableSchema, count: tuple[int, bool], spec: PlanOptions, sink: Sink,
           existing: set[str] | None, depends_on: list[str]) -> dict[str, object]:
    name = schema.name
    embed = spec.mongo.embed.get(name)
    target = spec.target_name(name)
    after = TableQuality.of(schema, transforms=spec.transforms, rules=spec.rules, dedupe=spec.dedupe,
                            validation=spec.validation).schema  # the columns the target gets
    exists = None if existing is None else target in existing
    if embed is not None:
        create = f"nothing: rows are embedded into {embed.into}.{embed.field}"
    elif exists:
        create = f"nothing: {target} exists; rows are added to it ({spec.mode})"
    else:
        parts = [f"table {target} ({len(after.columns)} columns)"]
        if schema.key:
            parts.append(f"primary key ({', '.join(schema.key)}) after the load")
        if schema.indexes:
            parts.append(f"{len(schema.indexes)} index(es) after the load")
        if schema.foreign_keys:
            parts.append(f"{len(schema.foreign_keys)} foreign key(s) once every table is loaded, then validated")
        create = ", ".join(parts) + ("" if exists is False else " (if it does not exist yet)")
    return {
        "name": name,
        "target": f"{embed.into}.{embed.field} (embedded by {embed.foreign_key})" if embed else target,
        "totalRecords": count[0],
        "countIsEstimate": count[1],
        "columns": [{"name": c.name, "type": spec_type_name(c.type), "nullable": c.nullable,
                     **({"sourceType": c.native_type} if c.native_type else {})} for c in schema.columns],
        "targetColumns": [{"name": n, "type": t} for n, t in sink.column_types(after)],
        "key": list(schema.key),
        "foreignKeys": [{"name": k.name, "columns": list(k.columns), "references": k.table,
                         "referencedColumns": list(k.references)} for k in schema.foreign_keys],
        "indexes": [{"name": i.name, "columns": [f for f, _ in i.fields], "unique": i.unique} for i in schema.indexes],
        "targetExists": exists,
        "create": create,
        "notes": list(schema.notes),
        "dependsOn": depends_on,
    }


async def _estimate(source: Source, sink: Sink, schemas: list[TableSchema], counts: dict[str, tuple[int, bool]],
                    spec: PlanOptions) -> dict[str, object]:
    """Rows per second from a probe: the first rows (at most PROBE_ROWS, one batch) of the largest
    table read from the source, then written to a throw-away place in the target. The run moves
    rows at about the slower of the two (reading and writing overlap)."""
    largest = max(schemas, key=lambda s: counts[s.name][0])
    if counts[largest.name][0] == 0:
        return {"method": "nothing to move", "rowsPerSecond": _FALLBACK_RATE}
    try:
        started = time.monotonic()
        data = await _first_rows(source, largest, min(spec.batch_size, PROBE_ROWS))
        read_seconds = time.monotonic() - started
        if data is None or data.num_rows == 0:
            raise InvalidInput(f"no rows could be read from {largest.name}")
        write_seconds = await sink.probe_write(largest, data)
    except MigratorError as exc:
        log.info("speed probe failed: %s", exc.message)
        return {"method": f"default rate (the probe failed: {exc.message})", "rowsPerSecond": _FALLBACK_RATE}
    rows = data.num_rows
    read_rate = rows / max(read_seconds, 1e-6)
    write_rate = rows / max(write_seconds, 1e-6)
    return {"method": "probe", "table": largest.name, "rows": rows,
            "readRowsPerSecond": round(read_rate), "writeRowsPerSecond": round(write_rate),
            "rowsPerSecond": round(min(read_rate, write_rate))}


async def _first_rows(source: Source, schema: TableSchema, n: int) -> pa.RecordBatch | None:
    batches = source.read(schema, after=None, start_row=1, batch_size=n, native=None)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            if isinstance(batch.data, pa.RecordBatch) and batch.data.num_rows:
                return batch.data.slice(0, n)
    return None
