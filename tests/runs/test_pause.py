"""Pausing a running migration: the status says `paused`, the target stops growing, nothing more is
read; resuming finishes with exactly the source rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.runs.migration import Migration
from service.store import SqliteStateStore
from tests.runs.conftest import BIG_ROWS
from tests.support import pg
from tests.support.runs import Watcher, prepare


async def start(store: SqliteStateStore, data_dir: Path, source: str, target: str,
                watcher: Watcher) -> tuple[Migration, asyncio.Task[None]]:
    migration = await prepare(store, {"source": source, "target": target, "batchSize": 500}, data_dir,
                              listeners=[watcher])
    return migration, asyncio.create_task(migration.run())


async def finish(task: asyncio.Task[None]) -> None:
    """Stop the run if a test failed half-way, so nothing outlives the test."""
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_pause_reports_paused_and_the_target_stops_growing(
    store: SqliteStateStore, data_dir: Path, big_source: str, pg_dsn: str
) -> None:
    watcher = Watcher()
    migration, task = await start(store, data_dir, big_source, pg_dsn, watcher)
    try:
        async with asyncio.timeout(30):
            await watcher.committed.wait()
            await migration.pause()

        assert migration.status == "paused"
        record = await store.get_migration(migration.id)
        assert record is not None and record.status == "paused"
        samples = []
        for _ in range(3):
            samples.append((await pg.count_rows(pg_dsn, "big"), migration.tables["big"].read))
            await asyncio.sleep(0.25)
        assert samples[0] == samples[1] == samples[2]
        rows_while_paused, _ = samples[0]
        assert 0 < rows_while_paused < BIG_ROWS
        assert not task.done()
    finally:
        await finish(task)


async def test_resume_after_pause_completes_with_exactly_the_source_rows(
    store: SqliteStateStore, data_dir: Path, big_source: str, pg_dsn: str
) -> None:
    watcher = Watcher()
    migration, task = await start(store, data_dir, big_source, pg_dsn, watcher)
    try:
        async with asyncio.timeout(30):
            await watcher.committed.wait()
            await migration.pause()
        await asyncio.sleep(0.3)
        await migration.resume()
        assert migration.status == "executing"
        async with asyncio.timeout(60):
            await task
    finally:
        await finish(task)

    assert migration.status == "completed"
    assert await pg.digest(pg_dsn, "big", ["id"]) == await pg.digest(big_source, "big", ["id"])


async def test_a_pause_asked_for_before_the_first_batch_holds_and_says_paused(
    store: SqliteStateStore, data_dir: Path, big_source: str, pg_dsn: str
) -> None:
    watcher = Watcher()
    migration, task = await start(store, data_dir, big_source, pg_dsn, watcher)
    try:
        async with asyncio.timeout(10):
            await migration.pause()  # while the run is still connecting and planning
            await watcher.started.wait()
        await asyncio.sleep(0.3)

        assert await pg.count_rows(pg_dsn, "big") == 0
        assert migration.tables["big"].read == 0
        assert migration.status == "paused"
        await migration.resume()
        async with asyncio.timeout(60):
            await task
    finally:
        await finish(task)
    assert await pg.digest(pg_dsn, "big", ["id"]) == await pg.digest(big_source, "big", ["id"])
