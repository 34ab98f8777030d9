"""Cancelling the task that runs a migration: it stops promptly, says `cancelled`, and running the
same spec again resumes it to exactly the source rows."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from service.runs.migration import Migration, create_or_resume, resolve
from service.runs.spec import MigrationSpec
from service.store import SqliteStateStore
from tests.runs.conftest import BIG_ROWS
from tests.support import pg
from tests.support.runs import run_until_committed


def spec_for(source: str, target: str) -> dict[str, object]:
    return {"source": source, "target": target, "batchSize": 500}


async def run_and_cancel(store: SqliteStateStore, data_dir: Path, spec: dict[str, object], *,
                         paused: bool = False) -> tuple[Migration, float]:
    """Start the run, cancel it after its first committed batch; returns how long stopping took."""
    migration, task = await run_until_committed(store, spec, data_dir, pause=paused)
    loop = asyncio.get_running_loop()
    began = loop.time()
    task.cancel()
    try:
        async with asyncio.timeout(10):
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return migration, loop.time() - began


async def test_a_cancelled_run_stops_within_two_seconds_and_says_cancelled(
    store: SqliteStateStore, data_dir: Path, big_source: str, pg_dsn: str
) -> None:
    migration, took = await run_and_cancel(store, data_dir, spec_for(big_source, pg_dsn))

    assert took < 2.0
    assert migration.status == "cancelled"
    record = await store.get_migration(migration.id)
    assert record is not None and record.status == "cancelled"
    assert await pg.count_rows(pg_dsn, "big") < BIG_ROWS


async def test_a_paused_run_can_be_cancelled_within_two_seconds(
    store: SqliteStateStore, data_dir: Path, big_source: str, pg_dsn: str
) -> None:
    migration, took = await run_and_cancel(store, data_dir, spec_for(big_source, pg_dsn), paused=True)

    assert took < 2.0
    assert migration.status == "cancelled"


async def test_running_a_cancelled_migration_again_resumes_it_to_exactly_the_source_rows(
    store: SqliteStateStore, data_dir: Path, big_source: str, pg_dsn: str
) -> None:
    spec = spec_for(big_source, pg_dsn)
    cancelled, _ = await run_and_cancel(store, data_dir, spec)
    assert 0 < await pg.count_rows(pg_dsn, "big") < BIG_ROWS

    parsed = MigrationSpec.from_dict(spec)
    endpoints = resolve(parsed, data_dir)
    record, resumed = await create_or_resume(store, parsed, endpoints)
    assert resumed and record.id == cancelled.id
    again = Migration(record, parsed, endpoints, store)
    async with asyncio.timeout(60):
        await again.run()

    assert again.status == "completed"
    assert await pg.digest(pg_dsn, "big", ["id"]) == await pg.digest(big_source, "big", ["id"])


async def test_a_cancelled_run_leaves_no_connection_open_on_the_source(
    store: SqliteStateStore, data_dir: Path, big_source: str, pg_dsn: str
) -> None:
    _, task = await run_until_committed(store, spec_for(big_source, pg_dsn), data_dir, pause=True)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    database = big_source.rsplit("/", 1)[1]
    others = await pg.fetch(big_source, "SELECT pid, application_name, state FROM pg_stat_activity"
                                        " WHERE datname = $1 AND pid <> pg_backend_pid()", database)
    assert others == []
    assert task.cancelled()


def open_files() -> set[str]:
    """Paths of the files this process has open."""
    paths = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            paths.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return paths


async def test_a_cancelled_csv_run_leaves_the_source_file_closed(
    store: SqliteStateStore, data_dir: Path
) -> None:
    big = data_dir / "big.csv"
    with open(big, "w") as f:
        f.write("id,name\n")
        f.writelines(f"{i},name {i}\n" for i in range(300_000))
    _, task = await run_until_committed(
        store, {"source": "csv:///big.csv", "target": "sqlite:///out.db", "batchSize": 500}, data_dir, pause=True)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert str(big) not in open_files()
    assert task.cancelled()
