"""A sync pass over the tables read by PostgreSQL change capture (`incremental: {t: {capture: true}}`).

One logical replication slot per migration (`migrator_<id>`) is created before the first copy,
so every change from then on is kept for the later passes. A pass peeks the slot's changes (a
window of whole transactions), writes them — deletes, then the new versions of changed rows by
upsert, each table's commit carrying the window's LSN as its checkpoint — and only then advances
the slot. A crash before the advance replays the window: upserts and deletes by key give the same
result twice, so the target ends exact either way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from service.connectors.base import KeyedWriter, Sink, Source
from service.connectors.postgres import connection as pgc
from service.core.batch import Batch, Checkpoint, Reject
from service.core.errors import InvalidInput
from service.core.schema import TableSchema
from service.core.urls import EndpointUrl
from service.pipeline.progress import TableStatus
from service.quality.conform import ConformStage
from service.quality.stage import QualityStage
from service.sync import capture

if TYPE_CHECKING:
    from service.runs.migration import Migration

WINDOW = 50_000  # changes read at a time


def slot_name(migration_id: str) -> str:
    return "migrator_" + re.sub(r"[^a-z0-9_]", "_", migration_id.lower())


async def create_capture_slot(source: EndpointUrl, migration_id: str, timeout: float) -> str:
    conn = await pgc.connect(source, timeout)
    try:
        slot = slot_name(migration_id)
        await capture.create_slot(conn, slot)
        return slot
    finally:
        await conn.close(timeout=5)


async def drop_capture_slot(source: EndpointUrl, slot: str, timeout: float) -> bool:
    conn = await pgc.connect(source, timeout)
    try:
        return await capture.drop_slot(conn, slot)
    finally:
        await conn.close(timeout=5)


async def pending_captured(source: EndpointUrl, slot: str, timeout: float) -> int:
    conn = await pgc.connect(source, timeout)
    try:
        return await capture.pending(conn, slot)
    finally:
        await conn.close(timeout=5)


async def apply_captured(run: Migration, source: Source, sink: Sink, schemas: list[TableSchema]) -> None:
    """Apply the slot's changes to the captured tables until it is drained."""
    assert run.sync is not None and run.sync.slot is not None
    spec, slot, n = run.spec, run.sync.slot, run.sync.pass_no
    conn = await pgc.connect(run.endpoints.source, spec.timeout, command_timeout=spec.timeout)
    writers = {}
    try:
        for schema in schemas:
            quality = run._quality(schema)
            writer = await sink.open_table(quality.schema, spec.target_name(schema.name), run.id)
            await run._sync_writer(writer, schema)
            stage = QualityStage(quality, ConformStage(quality.schema, writer.schema))
            writers[schema.name] = (writer, stage)
            progress = run.tables[schema.name]
            progress.status = TableStatus.RUNNING
            await run.store.save_table(run.id, schema.name, spec.target_name(schema.name), "running", progress.total)
        by_name = {s.name: s for s in schemas}
        deleted = 0
        while True:
            changes = await capture.read_changes(conn, slot, by_name, limit=WINDOW)
            if changes.lsn is None:
                break
            for name, table in changes.tables.items():
                writer, stage = writers[name]
                progress = run.tables[name]
                if table.deletes.num_rows:
                    if not isinstance(writer, KeyedWriter):
                        raise InvalidInput(f"change capture: a {sink.kind} target cannot delete rows by key")
                    deleted += await writer.delete_keys(table.deletes)
                rows = table.upserts.num_rows
                batch = Batch(seq=progress.batches, table=name, upto=[f"#{n}", changes.lsn],
                              first_row=progress.written + progress.failed + 1, data=table.upserts, rows_read=rows,
                              read_at=time.monotonic())
                batch = await stage(batch)

                async def turn(refused: Sequence[Reject], batch: Batch = batch,
                               name: str = name) -> Checkpoint:
                    p = run.tables[name]
                    rejects = [*batch.rejects, *refused]
                    checkpoint = Checkpoint(batch.upto, p.written + batch.rows - len(refused),
                                            p.failed + len(rejects), p.batches + 1)
                    await run.store.save_checkpoint(run.id, name, checkpoint, rejects, [])
                    return checkpoint

                checkpoint = await writer.write(batch, turn)
                progress.written, progress.failed = checkpoint.rows_written, checkpoint.rows_failed
                progress.batches = checkpoint.batches
                run._pass_rows += batch.rows
            await capture.advance(conn, slot, changes.lsn)
            if changes.count < WINDOW:
                break
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
        await conn.close(timeout=5)
