"""Runs stopped half-way and run again: a CSV source past its first read block continues with exactly
the next row (PostgreSQL and SQLite targets, same or another batch size); a target emptied between
the two runs gets every row again, never a silently incomplete copy."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import warnings
from contextlib import closing
from pathlib import Path

import pytest

from service.core.errors import MigratorError
from service.runs.events import BatchCommitted, Event
from service.store import SqliteStateStore
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.bigtable import create_big_table
from tests.support.csvtext import read_csv, write_csv
from tests.support.runs import prepare

ROWS = 300_000
STOP_AFTER = 200_000  # rows committed before stopping: well into the file's second 4 MiB


def csv_rows() -> list[tuple[object, ...]]:
    return [(i, f'name "{i}",\nsecond line' if i % 997 == 0 else f"name {i}", i * 0.5) for i in range(1, ROWS + 1)]


async def stop_half_way(store: SqliteStateStore, data_dir: Path, spec: dict[str, object]) -> int:
    """Run `spec` until STOP_AFTER rows are committed, pause, then cancel; returns rows committed."""
    reached = asyncio.Event()

    def watch(event: Event) -> None:
        if isinstance(event, BatchCommitted) and event.progress.written >= STOP_AFTER:
            reached.set()

    migration = await prepare(store, spec, data_dir, listeners=[watch])
    task = asyncio.create_task(migration.run())
    try:
        async with asyncio.timeout(60):
            await reached.wait()
            await migration.pause()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    del task
    with warnings.catch_warnings():
        # A cancelled run leaves its source file open until garbage collection (see
        # test_cancel.py::test_a_cancelled_csv_run_leaves_the_source_file_closed); not this test's subject.
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    written = migration.tables["big"].written
    assert STOP_AFTER <= written < ROWS, "the run finished before it could be stopped"
    return written


@pytest.mark.parametrize(("target_kind", "resume_batch_size"), [("postgresql", 1000), ("sqlite", 1000),
                                                                 ("postgresql", 7777)])
async def test_a_csv_stopped_past_its_first_block_resumes_with_exactly_the_next_row(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, target_kind: str, resume_batch_size: int
) -> None:
    rows = csv_rows()
    write_csv(data_dir / "big.csv", ("id", "name", "amount"), rows)
    target = pg_dsn if target_kind == "postgresql" else "sqlite:///big.db"
    spec = {"source": "csv:///big.csv", "target": target, "batchSize": 1000}

    await stop_half_way(store, data_dir, spec)
    again = await prepare(store, {**spec, "batchSize": resume_batch_size}, data_dir)
    async with asyncio.timeout(60):
        await again.run()

    assert again.status == "completed"
    sql = "SELECT id, name, amount FROM big ORDER BY id"
    if target_kind == "postgresql":
        got = await pg.fetch(pg_dsn, sql)
    else:
        with closing(sqlite3.connect(data_dir / "big.db")) as conn:
            got = conn.execute(sql).fetchall()
    assert len(got) == ROWS
    assert got == rows


async def run_again(store: SqliteStateStore, data_dir: Path, spec: dict[str, object]) -> bool:
    """Run `spec` again; False when it refuses with an error (acceptable: nothing is silently lost)."""
    again = await prepare(store, spec, data_dir)
    try:
        async with asyncio.timeout(60):
            await again.run()
    except MigratorError:
        return False
    return True


@pytest.mark.parametrize("target_kind", ["postgresql", "sqlite"])
async def test_a_target_table_dropped_between_runs_gets_every_row_again(
    store: SqliteStateStore, data_dir: Path, new_pg_db: NewDatabase, target_kind: str
) -> None:
    source = await new_pg_db()
    await create_big_table(source, ROWS)
    target = await new_pg_db() if target_kind == "postgresql" else "sqlite:///big.db"
    spec = {"source": source, "target": target, "batchSize": 1000}
    await stop_half_way(store, data_dir, spec)
    # "start that table over"
    if target_kind == "postgresql":
        await pg.execute(target, "DROP TABLE big")
    else:
        with closing(sqlite3.connect(data_dir / "big.db")) as conn:
            conn.execute("DROP TABLE big")

    if await run_again(store, data_dir, spec):
        if target_kind == "postgresql":
            assert await pg.digest(target, "big", ["id"]) == await pg.digest(source, "big", ["id"])
        else:
            with closing(sqlite3.connect(data_dir / "big.db")) as conn:
                got = conn.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM big").fetchone()
            assert got == (ROWS, ROWS, 1, ROWS)


async def test_a_csv_target_folder_deleted_between_runs_gets_every_row_again(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, tmp_path: Path
) -> None:
    await create_big_table(pg_dsn, ROWS)
    out = tmp_path / "out"
    spec = {"source": pg_dsn, "target": f"csv:///{out}", "batchSize": 1000}
    await stop_half_way(store, data_dir, spec)
    for leftover in out.iterdir():  # "start the export over"
        leftover.unlink()
    out.rmdir()

    if await run_again(store, data_dir, spec):
        header, *records = read_csv(out / "big.csv")
        assert len(records) == ROWS
        assert sorted(int(str(r[0])) for r in records) == list(range(1, ROWS + 1))


async def test_a_table_without_a_key_stopped_half_way_resumes_to_exactly_its_rows(
    store: SqliteStateStore, data_dir: Path, new_pg_db: NewDatabase
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, ROWS)
    await pg.execute(source, "ALTER TABLE big DROP CONSTRAINT big_pkey", "ANALYZE big")
    spec = {"source": source, "target": target, "batchSize": 1000}

    await stop_half_way(store, data_dir, spec)
    again = await prepare(store, spec, data_dir)
    async with asyncio.timeout(60):
        await again.run()

    assert again.status == "completed"
    assert await pg.digest(target, "big", ["id"]) == await pg.digest(source, "big", ["id"])
