"""A sync pass over the tables read by change capture (`incremental: {t: {capture: true}}`).

PostgreSQL: one logical replication slot per migration (`migrator_<id>`) is created before the first copy,
so every change from then on is kept for the later passes. A pass peeks the slot's changes (a
window of whole transactions), writes them — deletes, then the new versions of changed rows by
upsert, each table's commit carrying the window's LSN as its checkpoint — and only then advances
the slot. A crash before the advance replays the window: upserts and deletes by key give the same
result twice, so the target ends exact either way.

MongoDB (a replica set or sharded cluster): each collection's change stream, from a resume token
noted before the first copy; the token after each applied window is saved once the target has
committed it, with the same replay argument.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import asyncpg
import pyarrow as pa

from service.connectors.base import KeyedWriter, Sink, Source, TableWriter
from service.connectors.postgres import connection as pgc
from service.core.batch import Batch, Checkpoint, Reject
from service.core.errors import InvalidInput
from service.core.schema import TableSchema
from service.core.urls import EndpointUrl
from service.pipeline.pipeline import Stage
from service.pipeline.progress import TableStatus
from service.quality.conform import ConformStage
from service.quality.stage import QualityStage
from service.sync import capture

if TYPE_CHECKING:
    from service.runs.migration import Migration

WINDOW = 50_000  # changes read at a time


def slot_name(migration_id: str) -> str:
    return "migrator_" + re.sub(r"[^a-z0-9_]", "_", migration_id.lower())


@contextlib.asynccontextmanager
async def _connected(source: EndpointUrl, timeout: float) -> AsyncIterator[asyncpg.Connection]:
    conn = await pgc.connect(source, timeout)
    try:
        yield conn
    finally:
        await conn.close(timeout=5)


async def create_capture_slot(source: EndpointUrl, migration_id: str, timeout: float) -> str:
    async with _connected(source, timeout) as conn:
        slot = slot_name(migration_id)
        await capture.create_slot(conn, slot)
        return slot


async def drop_capture_slot(source: EndpointUrl, slot: str, timeout: float) -> bool:
    async with _connected(source, timeout) as conn:
        return await capture.drop_slot(conn, slot)


async def pending_captured(source: EndpointUrl, slot: str, timeout: float, tables: Sequence[str]) -> int:
    """Changes of `tables` waiting in the slot (those of other tables pass through it too)."""
    async with _connected(source, timeout) as conn:
        return await capture.pending(conn, slot, tables)


async def apply_captured(run: Migration, source: Source, sink: Sink, schemas: list[TableSchema]) -> None:
    """Apply the changes captured since the last pass to the captured tables: the PostgreSQL
    slot's, or each MongoDB collection's change stream's, until drained."""
    spec = run.spec
    writers: dict[str, tuple[TableWriter, Stage]] = {}
    try:
        for schema in schemas:
            quality = run._quality(schema)
            writer = await sink.open_table(quality.schema, spec.target_name(schema.name), run.id)
            await run._sync_writer(writer, schema)
            writers[schema.name] = (writer, QualityStage(quality, ConformStage(quality.schema, writer.schema)))
            progress = run.tables[schema.name]
            # The counts go on from the target's own checkpoint (exact even when the store lags a window).
            stored = await writer.reconcile(await run.store.load_checkpoint(run.id, schema.name))
            if stored is not None:
                progress.written, progress.failed, progress.batches = (stored.rows_written, stored.rows_failed,
                                                                       stored.batches)
            run.note_pass_start(schema.name)
            progress.status = TableStatus.RUNNING
            await run.store.save_table(run.id, schema.name, spec.target_name(schema.name), "running", progress.total)
        if source.kind == "postgresql":
            deleted = await _drain_slot(run, writers, schemas)
        else:
            deleted = await _drain_streams(run, source, writers, schemas)
        for name, (writer, _) in writers.items():  # all committed: the final commit, sequences moved on
            for warning in await writer.finish():
                await run._log("WARNING", warning, table=name)
        for name in writers:
            progress = run.tables[name]
            progress.status = TableStatus.COMPLETED
            progress.total = progress.done
            await run.store.save_table(run.id, name, spec.target_name(name), "completed", progress.total)
        if deleted:
            await run._log("INFO", f"Change capture: {deleted} row(s) deleted in the source were deleted in the target")
    finally:
        for writer, _ in writers.values():
            await writer.close()


async def _drain_slot(run: Migration, writers: dict[str, tuple[TableWriter, Stage]], schemas: list[TableSchema]) -> int:
    """Windows of the slot up to the WAL position of the pass's start (what comes later is the
    next pass's: a busy source, or other tables' writes, never keep a pass going). In each window
    deletes go children first (the reverse of the load order) and upserts parents first; the slot
    advances once the target has made the window durable. Pause holds it between windows."""
    assert run.sync is not None and run.sync.slot is not None
    slot, n = run.sync.slot, run.sync.pass_no
    conn = await pgc.connect(run.endpoints.source, run.spec.timeout, command_timeout=run.spec.timeout)
    by_name = {s.name: s for s in schemas}  # every captured table, always: the slot's changes are shared
    deleted = 0
    try:
        end = _lsn(str(await conn.fetchval("SELECT pg_current_wal_lsn()::text")))
        while True:
            await run.gate.passage()
            changes = await capture.read_changes(conn, slot, by_name, limit=WINDOW)
            if changes.lsn is None:
                break
            position: list[str | int | float | None] = [f"#{n}", changes.lsn]
            for name in by_name:  # parents first: a moved child finds its new parent
                if name in changes.tables and not await _applied(writers[name][0], position):
                    await _upsert(run, *writers[name], name, changes.tables[name].upserts, position)
            for name in reversed(by_name):  # then children first: a parent goes once nothing points at it
                if name in changes.tables:
                    deleted += await _delete(run, writers[name][0], changes.tables[name].deletes)
            for writer, _ in writers.values():  # one synchronous commit flushes every earlier one
                await _durable(writer)
                break
            await capture.advance(conn, slot, changes.lsn)
            if _lsn(changes.lsn) >= end:
                break
    finally:
        await conn.close(timeout=5)
    return deleted


async def _drain_streams(run: Migration, source: Source, writers: dict[str, tuple[TableWriter, Stage]],
                         schemas: list[TableSchema]) -> int:
    """MongoDB: each collection's change stream from the token saved after its last applied window
    (saved once the target committed it: a crash replays the window, which by key changes nothing)."""
    assert run.sync is not None
    deleted = 0
    for schema in schemas:
        table = run.sync.tables.setdefault(schema.name, {})
        while True:
            upserts, deletes, token, count, rejects = await source.changes(  # type: ignore[attr-defined]
                schema, str(table["token"]), WINDOW)
            await run.gate.passage()
            position: list[str | int | float | None] = [f"#{run.sync.pass_no}", token]
            if count and not await _applied(writers[schema.name][0], position):
                await _upsert(run, *writers[schema.name], schema.name, upserts, position, rejects)
                deleted += await _delete(run, writers[schema.name][0], deletes)
                await _durable(writers[schema.name][0])
            table["token"] = token
            await run._save_sync()
            if count < WINDOW:
                break
    return deleted


async def _applied(writer: TableWriter, position: list[str | int | float | None]) -> bool:
    """Whether the target already committed this window for this table (a window replayed after a
    crash: writing it again would change nothing but count its rows and rejects twice)."""
    committed = await writer.reconcile(None)
    return committed is not None and committed.position == position


def _lsn(text: str) -> int:
    """A PostgreSQL LSN (`16/B374D848`) as a number."""
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


async def _delete(run: Migration, writer: TableWriter, deletes: pa.RecordBatch) -> int:
    if not deletes.num_rows:
        return 0
    if not isinstance(writer, KeyedWriter):
        raise InvalidInput(f"change capture: a {run.endpoints.target.kind} target cannot delete rows by key")
    deleted = await writer.delete_keys(deletes)
    run._pass_deleted += deleted
    return deleted


async def _durable(writer: TableWriter) -> None:
    """What the writer committed is on disk (a PostgreSQL target commits batches asynchronously)."""
    if isinstance(writer, KeyedWriter):
        await writer.flush()


async def _upsert(run: Migration, writer: TableWriter, stage: Stage, name: str, upserts: pa.RecordBatch,
                  position: list[str | int | float | None], rejects: Sequence[Reject] = ()) -> None:
    """One window's new row versions of one table, with the window's position as the table's
    checkpoint (the rows that do not pass the rules or fit the target are rejects)."""
    progress = run.tables[name]
    batch = Batch(seq=progress.batches, table=name, upto=position, first_row=progress.done + 1, data=upserts,
                  rows_read=upserts.num_rows + len(rejects), rejects=list(rejects), read_at=time.monotonic())
    batch = await stage(batch)
    failed: list[Reject] = []

    async def turn(refused: Sequence[Reject]) -> Checkpoint:
        failed.extend([*batch.rejects, *refused])
        return Checkpoint(position, progress.written + batch.rows - len(refused), progress.failed + len(failed),
                          progress.batches + 1)

    checkpoint = await writer.write(batch, turn)
    # After the target's commit, as for any batch (a replayed window must not count its rejects twice).
    await run.store.save_checkpoint(run.id, name, checkpoint, failed, [])
    progress.written, progress.failed, progress.batches = (checkpoint.rows_written, checkpoint.rows_failed,
                                                           checkpoint.batches)
    run._pass_rows += batch.rows - (len(failed) - len(batch.rejects))
    run._check_reject_limit()
