"""Verify a migration (DESIGN.md §3 `verify`): does the target hold the source's rows minus the
reported rejects?

Per table:
- counts: the source's rows (now) minus the run's rejects, against the target's rows;
- with `deep`: a digest of every row on both sides (service.verify.digest), streamed; the source
  side goes through what the run did to it — the rows the run rejected left out (by row number),
  the spec's transforms applied, the values cast to the target's types — so equal data gives
  equal digests. When they differ and the table has a key, the keys missing from the target,
  extra in it and with different values are named (the first `limit` of each);
- integrity in the target (PostgreSQL): keys that occur twice, and rows whose foreign key points
  at a row that is not there.

Both sides are read through the connectors' own readers (the target's kind read as a source).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc

from service.connectors.base import Source
from service.connectors.registry import open_source
from service.core.batch import Reject
from service.core.errors import MigratorError, UnknownTable
from service.core.excel import neutralised
from service.core.hashing import arange
from service.core.schema import ForeignKey, TableSchema
from service.core.urls import EndpointUrl, Kind
from service.plan.planner import PlanOptions  # what a run's spec offers: planning and verifying read the same
from service.quality.conform import ConformStage
from service.quality.rows import Rows
from service.quality.stage import TableQuality
from service.store.base import StateStore
from service.store.rows import now
from service.verify.digest import Differences, Digest, Spill, Workspace, compare, partitions_for, row_hashes

LIMIT = 20  # keys named per kind of difference


@runtime_checkable
class IntegrityReader(Protocol):
    """A reader that can check keys in its database (PostgreSQL)."""

    async def describe(self, table: str) -> TableSchema: ...
    async def duplicate_keys(self, table: str, key: Sequence[str], limit: int) -> tuple[int, list[str]]: ...
    async def orphans(self, table: str, key: ForeignKey, limit: int) -> tuple[int, list[str]]: ...


@dataclass(frozen=True)
class Pair:
    """One table to verify: its source name and its target name."""

    source: str
    target: str


async def verify(store: StateStore, migration_id: str, spec: PlanOptions, source_url: EndpointUrl,
                 target_url: EndpointUrl, tables: Sequence[Pair], *, deep: bool = False,
                 limit: int = LIMIT) -> dict[str, object]:
    """The verification report: `{ok, deep, checkedAt, seconds, tables: [...]}`."""
    started = time.monotonic()
    source = open_source(source_url, timeout=spec.timeout, csv=spec.csv, mongo=spec.mongo)
    target = open_source(target_url, timeout=spec.timeout, csv=spec.csv, mongo=spec.mongo)
    try:
        await source.check()
        await target.check()
        schemas = {p.source: await source.describe(p.source) for p in tables}
        # A CSV export with excelSafe holds risky text prefixed with ': the expected side is made so too.
        excel = target_url.kind is Kind.CSV and spec.csv.excel_safe
        results = [await _table(store, migration_id, spec, source, target, p, schemas, deep=deep, limit=limit,
                                excel=excel) for p in tables]
    finally:
        await asyncio.shield(source.close())
        await asyncio.shield(target.close())
    return {
        "ok": all(t["ok"] for t in results),
        "deep": deep,
        "checkedAt": now(),
        "seconds": round(time.monotonic() - started, 3),
        "tables": results,
    }


async def _table(store: StateStore, migration_id: str, spec: PlanOptions, source: Source, target: Source,
                 pair: Pair, schemas: Mapping[str, TableSchema], *, deep: bool, limit: int,
                 excel: bool = False) -> dict[str, object]:
    schema = schemas[pair.source]
    rejects = await store.rejects(migration_id, table=pair.source, limit=100_000_000)
    source_count = await source.count(pair.source, exact=True)
    result: dict[str, object] = {"name": pair.source, "target": pair.target, "sourceCount": source_count,
                                 "rejected": len(rejects), "expectedCount": source_count - len(rejects)}
    try:
        target_schema = await target.describe(pair.target)
    except UnknownTable:
        result.update(targetCount=0, match=source_count == len(rejects), ok=False,
                      problems=[f"the target has no table {pair.target}"])
        return result
    target_count = await target.count(pair.target, exact=True)
    result["targetCount"] = target_count
    result["match"] = target_count == source_count - len(rejects)
    problems: list[str] = []
    if not result["match"]:
        problems.append(f"{pair.target} has {target_count} rows, {source_count - len(rejects)} expected "
                        f"({source_count} in the source, {len(rejects)} rejected)")
    quality = TableQuality.of(schema, transforms=spec.transforms, rules=spec.rules, dedupe=spec.dedupe,
                              validation=spec.validation)
    key = [k for k in quality.schema.key if k in target_schema.column_names]
    if deep:
        problems += await _deep(spec, source, target, schema, target_schema, quality, key, rejects_rows(rejects),
                                result, limit, excel)
    if isinstance(target, IntegrityReader):
        problems += await _integrity(target, pair, schema, schemas, spec, key or list(target_schema.key), result,
                                     limit)
    result["problems"] = problems
    result["ok"] = not problems
    return result


def rejects_rows(rejects: Sequence[Reject]) -> pa.Array:
    """The source row numbers of `rejects`."""
    return pa.array(sorted({r.row for r in rejects if r.row is not None}), pa.int64())


async def _deep(spec: PlanOptions, source: Source, target: Source, schema: TableSchema, target_schema: TableSchema,
                quality: TableQuality, key: list[str], rejected: pa.Array, result: dict[str, object],
                limit: int, excel: bool = False) -> list[str]:
    columns = [c for c in quality.schema.column_names if c in target_schema.column_names]
    json_columns = frozenset(c.name for c in target_schema.columns
                             if c.name in columns and (c.logical == "json" or (c.native_type or "") in ("json", "jsonb")))
    conform = ConformStage(replace(quality.schema, columns=tuple(quality.schema.column(c) for c in columns)),
                           target_schema)
    expected = int(str(result["sourceCount"])) - int(str(result["rejected"]))
    partitions = partitions_for(max(expected, int(str(result["targetCount"]))))
    sides = (Digest(), Digest())
    with Workspace() as folder:
        spills = (Spill(folder, "source", partitions), Spill(folder, "target", partitions)) if key else None
        try:
            async for data in _expected_rows(source, schema, quality, conform, rejected, spec.batch_size, excel):
                await asyncio.to_thread(_take, sides[0], spills[0] if spills else None, data, columns, json_columns, key)
            async for batch in _read(target, target_schema, spec.batch_size):
                await asyncio.to_thread(_take, sides[1], spills[1] if spills else None, batch.select(columns),
                                        columns, json_columns, key)
        finally:
            if spills:
                for s in spills:
                    s.close()
        same = sides[0].rows == sides[1].rows and sides[0].total == sides[1].total
        result["checksumMatch"] = same
        result["checksum"] = {"source": f"{sides[0].total:016x}", "target": f"{sides[1].total:016x}",
                              "columns": columns}
        if same:
            return []
        if not spills:
            return [f"the rows of {result['target']} differ from the source's (no key to name them by)"]
        found: Differences = await asyncio.to_thread(compare, spills[0], spills[1], limit)
    result.update(missing=found.missing, extra=found.extra, different=found.different,
                  missingCount=found.missing_count, extraCount=found.extra_count,
                  differentCount=found.different_count, key=key)
    problems = []
    for what, count, keys in (("missing from the target", found.missing_count, found.missing),
                              ("extra in the target", found.extra_count, found.extra),
                              ("different in the target", found.different_count, found.different)):
        if count:
            problems.append(f"{count} row(s) {what}: {', '.join(map(str, keys))}{' …' if count > len(keys) else ''}")
    return problems or [f"the rows of {result['target']} differ from the source's"]


def _take(digest: Digest, spill: Spill | None, data: pa.RecordBatch, columns: Sequence[str],
          json_columns: frozenset[str], key: Sequence[str]) -> None:
    hashes = row_hashes(data, columns, json_columns)
    digest.add(hashes)
    if spill is not None:
        spill.add(data, key, hashes)


async def _read(reader: Source, schema: TableSchema, batch_size: int) -> AsyncIterator[pa.RecordBatch]:
    batches = reader.read(schema, after=None, start_row=1, batch_size=batch_size, native=None)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            if isinstance(batch.data, pa.RecordBatch):
                yield batch.data


async def _expected_rows(source: Source, schema: TableSchema, quality: TableQuality, conform: ConformStage,
                         rejected: pa.Array, batch_size: int, excel: bool = False) -> AsyncIterator[pa.RecordBatch]:
    """The source's rows as the run wrote them: without the rows it rejected, transformed, cast."""
    batches = source.read(schema, after=None, start_row=1, batch_size=batch_size, native=None)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            if not isinstance(batch.data, pa.RecordBatch) or not batch.data.num_rows:
                continue
            data = batch.data
            numbers = batch.numbers if batch.numbers is not None else pc.add(arange(data.num_rows), batch.first_row)
            if len(rejected):
                keep = pc.invert(pc.is_in(numbers, value_set=rejected))
                data, numbers = data.filter(keep), numbers.filter(keep)
            expected = await asyncio.to_thread(_transformed, quality, conform, data, numbers, batch.first_row)
            yield neutralised(expected) if excel else expected


def _transformed(quality: TableQuality, conform: ConformStage, data: pa.RecordBatch, numbers: pa.Array,
                 first_row: int) -> pa.RecordBatch:
    rows = Rows.of(quality.schema.name, data, first_row, quality.schema.key, numbers)
    for step in quality.steps:
        rows = step(rows)
    rows = rows.with_data(rows.data.select(conform.columns))
    return conform.step(rows).data


async def _has_table(reader: IntegrityReader, table: str) -> bool:
    try:
        await reader.describe(table)
    except UnknownTable:
        return False
    return True


async def _integrity(target: IntegrityReader, pair: Pair, schema: TableSchema, schemas: Mapping[str, TableSchema],
                     spec: PlanOptions, key: list[str], result: dict[str, object], limit: int) -> list[str]:
    problems = []
    try:
        if key:
            count, keys = await target.duplicate_keys(pair.target, key, limit)
            result["duplicateKeys"] = {"count": count, "keys": keys}
            if count:
                problems.append(f"{count} key value(s) of ({', '.join(key)}) occur more than once: {', '.join(keys)}")
        orphans: list[dict[str, object]] = []
        for fk in schema.foreign_keys:
            parent = schemas.get(fk.table)
            refs = fk.references or (parent.key if parent else ())
            if not refs:
                continue
            mapped = replace(fk, table=spec.target_name(fk.table) if parent else fk.table, references=refs)
            if not await _has_table(target, mapped.table):
                orphans.append({"foreignKey": fk.name, "columns": list(fk.columns), "references": mapped.table,
                                "skipped": f"the target has no table {mapped.table}"})
                continue
            count, keys = await target.orphans(pair.target, mapped, limit)
            orphans.append({"foreignKey": fk.name, "columns": list(fk.columns), "references": mapped.table,
                            "count": count, "values": keys})
            if count:
                problems.append(f"{count} row(s) whose {', '.join(fk.columns)} has no {mapped.table} row: "
                                f"{', '.join(keys)}")
        result["orphans"] = orphans
    except MigratorError as exc:
        problems.append(f"integrity not checked: {exc.message}")
    return problems
