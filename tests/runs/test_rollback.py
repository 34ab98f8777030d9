"""Rollback returns a PostgreSQL target to its exact state before the run — after a completed,
a failed and a cancelled run, into new tables and into tables that already held rows — and
running it again changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.errors import EndpointError, RejectLimit, WrongState
from service.runs.migration import Migration, resolve
from service.runs.rollback import roll_back
from service.store.base import StateStore
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.bigtable import create_big_table
from tests.support.runs import migrate, prepare, run_until_committed, stop

State = dict[str, list[tuple[object, ...]]]


async def state(dsn: str) -> State:
    """Every user table of the database and its rows (sorted): what a rollback must restore."""
    tables = [r[0] for r in await pg.fetch(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                                "AND tablename NOT LIKE '\\_migrator\\_%' ORDER BY 1")]
    return {t: sorted(await pg.fetch(dsn, f'SELECT * FROM "{t}"'), key=repr) for t in tables}


async def undo(store: StateStore, run: Migration, data_dir: Path) -> list[str]:
    record = await store.get_migration(run.id)
    assert record is not None
    return await roll_back(store, record, run.spec, resolve(run.spec, data_dir).target)


@pytest.fixture
async def dbs(new_pg_db: NewDatabase) -> tuple[str, str]:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, 20_000)
    await pg.execute(target, "CREATE TABLE keep (id integer PRIMARY KEY, v text)", "INSERT INTO keep VALUES (1, 'x')")
    return source, target


async def test_a_completed_run_into_new_tables_is_undone_and_a_second_rollback_changes_nothing(
    store: StateStore, data_dir: Path, dbs: tuple[str, str]
) -> None:
    source, target = dbs
    before = await state(target)
    run = await migrate(store, {"source": source, "target": target, "batchSize": 3000}, data_dir)
    assert run.status == "completed" and await pg.count_rows(target, "big") == 20_000

    done = await undo(store, run, data_dir)

    assert await state(target) == before
    assert any("dropped table big" in line for line in done)
    record = await store.get_migration(run.id)
    assert record is not None and record.status == "rolled_back"
    assert await undo(store, run, data_dir) == []  # again: nothing left to do
    assert await state(target) == before


async def test_rows_inserted_into_a_table_that_held_rows_are_deleted_and_its_own_rows_stay(
    store: StateStore, data_dir: Path, dbs: tuple[str, str]
) -> None:
    source, target = dbs
    await pg.execute(target, "CREATE TABLE big (id bigint PRIMARY KEY, name text, amount numeric(12,2), note text)",
                     "INSERT INTO big VALUES (-1, 'mine', 1.00, 'before'), (-2, 'mine too', 2.00, NULL)")
    # Two values the target refuses: their batches are written by bisection, in savepoints.
    await pg.execute(source, "UPDATE big SET name = repeat('x', 300) WHERE id IN (10, 11111)")
    await pg.execute(target, "ALTER TABLE big ADD CONSTRAINT short_name CHECK (length(name) < 200)")
    before = await state(target)
    run = await migrate(store, {"source": source, "target": target, "batchSize": 2500}, data_dir)
    assert run.status == "completed" and run.tables["big"].failed == 2

    done = await undo(store, run, data_dir)

    assert await state(target) == before
    assert any("deleted" in line and "big" in line for line in done), done


async def test_a_failed_run_is_undone(store: StateStore, data_dir: Path, dbs: tuple[str, str]) -> None:
    source, target = dbs
    await pg.execute(source, "UPDATE big SET name = NULL WHERE id % 100 = 0")
    await pg.execute(target, "CREATE TABLE big (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), "
                             "note text)", "INSERT INTO big VALUES (0, 'zero', 0, NULL)")
    before = await state(target)
    run = await prepare(store, {"source": source, "target": target, "batchSize": 1000, "maxErrors": 50}, data_dir)
    with pytest.raises(RejectLimit):
        await run.run()
    assert 1 < await pg.count_rows(target, "big") < 20_000

    await undo(store, run, data_dir)

    assert await state(target) == before


async def test_a_cancelled_run_is_undone_and_a_running_one_cannot_be(
    store: StateStore, data_dir: Path, dbs: tuple[str, str]
) -> None:
    source, target = dbs
    before = await state(target)
    run, task = await run_until_committed(store, {"source": source, "target": target, "batchSize": 500}, data_dir)
    record = await store.get_migration(run.id)
    assert record is not None
    with pytest.raises(WrongState, match="cancel it first"):
        await roll_back(store, record, run.spec, resolve(run.spec, data_dir).target)
    await stop(task, run, before="cancel")
    assert await pg.count_rows(target, "big") > 0

    await undo(store, run, data_dir)

    assert await state(target) == before


async def test_a_table_rewritten_since_the_run_is_not_rolled_back_at_all(
    store: StateStore, data_dir: Path, dbs: tuple[str, str]
) -> None:
    source, target = dbs
    await pg.execute(target, "CREATE TABLE big (id bigint PRIMARY KEY, name text, amount numeric(12,2), note text)",
                     "INSERT INTO big VALUES (-1, 'mine', 1.00, 'before')")
    run = await migrate(store, {"source": source, "target": target, "batchSize": 5000}, data_dir)
    # A restore in one transaction: every row, and the run's marks, now carry one transaction id.
    await pg.execute(target, """BEGIN;
        CREATE TEMP TABLE b AS SELECT * FROM big; CREATE TEMP TABLE w AS SELECT * FROM _migrator_writes;
        DELETE FROM big; INSERT INTO big SELECT * FROM b; DELETE FROM _migrator_writes;
        INSERT INTO _migrator_writes SELECT * FROM w; COMMIT""")
    before = await state(target)

    with pytest.raises(EndpointError, match="rollback refused, nothing was changed"):
        await undo(store, run, data_dir)

    assert await state(target) == before  # the pre-existing row is still there
    record = await store.get_migration(run.id)
    assert record is not None and record.status == "rolling_back"
