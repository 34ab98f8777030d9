"""Bad rows: a value that does not fit the target column is not loaded and is reported, naming the
row, the column and the value; the other rows of the same batch are loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.store import SqliteStateStore
from tests.support import pg
from tests.support.runs import migrate

CSV = "id,name,age\n1,Ann,30\n2,Bob,41\n3,Cy,\n4,Di,27\n5,Ed,abc\n6,Flo,52\n7,Gus,19\n"
GOOD = [(1, "Ann", 30), (2, "Bob", 41), (3, "Cy", None), (4, "Di", 27), (6, "Flo", 52), (7, "Gus", 19)]


@pytest.fixture
async def target_dsn(pg_dsn: str, data_dir: Path) -> str:
    (data_dir / "people.csv").write_text(CSV)
    await pg.execute(pg_dsn, "CREATE TABLE people (id integer, name text, age integer)")
    return pg_dsn


@pytest.mark.parametrize("batch_size", [1000, 2])
async def test_a_non_numeric_value_for_an_integer_column_is_rejected_naming_row_column_and_value(
    store: SqliteStateStore, data_dir: Path, target_dsn: str, batch_size: int
) -> None:
    migration = await migrate(store, {"source": "csv:///people.csv", "target": target_dsn,
                                      "batchSize": batch_size}, data_dir)

    assert migration.status == "completed"
    rejects = await store.rejects(migration.id)
    assert [(r.table, r.row, r.column, r.value) for r in rejects] == [("people", 5, "age", "abc")]
    assert migration.tables["people"].failed == 1


@pytest.mark.parametrize("batch_size", [1000, 2])
async def test_the_rows_around_a_rejected_row_are_loaded(
    store: SqliteStateStore, data_dir: Path, target_dsn: str, batch_size: int
) -> None:
    migration = await migrate(store, {"source": "csv:///people.csv", "target": target_dsn,
                                      "batchSize": batch_size}, data_dir)

    assert await pg.fetch(target_dsn, "SELECT id, name, age FROM people ORDER BY id") == GOOD
    assert migration.tables["people"].written == len(GOOD)


async def test_a_missing_value_for_a_not_null_column_is_rejected_and_the_rest_loaded(
    store: SqliteStateStore, data_dir: Path, target_dsn: str
) -> None:
    await pg.execute(target_dsn, "ALTER TABLE people ALTER age SET NOT NULL")
    (data_dir / "people.csv").write_text("id,name,age\n1,Ann,30\n2,Bob,\n3,Cy,27\n")

    migration = await migrate(store, {"source": "csv:///people.csv", "target": target_dsn}, data_dir)

    rejects = await store.rejects(migration.id)
    assert [(r.row, r.column, r.value) for r in rejects] == [(2, "age", None)]
    assert await pg.fetch(target_dsn, "SELECT id, name, age FROM people ORDER BY id") == [(1, "Ann", 30),
                                                                                          (3, "Cy", 27)]


async def test_one_bad_value_does_not_reject_the_good_rows_of_its_batch(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str
) -> None:
    # t/f is how PostgreSQL itself writes booleans to CSV.
    await pg.execute(pg_dsn, "CREATE TABLE flags (id integer, ok boolean, age integer)")
    (data_dir / "flags.csv").write_text("id,ok,age\n1,t,30\n2,f,abc\n3,t,41\n4,f,\n")

    migration = await migrate(store, {"source": "csv:///flags.csv", "target": pg_dsn}, data_dir)

    rejects = await store.rejects(migration.id)
    assert [(r.row, r.column, r.value) for r in rejects] == [(2, "age", "abc")]
    assert await pg.fetch(pg_dsn, "SELECT id, ok, age FROM flags ORDER BY id") == [(1, True, 30), (3, True, 41),
                                                                                  (4, False, None)]


async def test_a_value_the_target_database_refuses_is_rejected_and_the_rest_loaded(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str
) -> None:
    # onError: reject (the default) — the row goes to the rejects and the run goes on.
    await pg.execute(pg_dsn, "CREATE TABLE tokens (id integer, token uuid, code varchar(3))")
    (data_dir / "tokens.csv").write_text(
        "id,token,code\n"
        "1,00000000-0000-0000-0000-000000000001,abc\n"
        "2,not-a-uuid,def\n"
        "3,00000000-0000-0000-0000-000000000003,toolong\n"
        "4,00000000-0000-0000-0000-000000000004,ghi\n")

    migration = await migrate(store, {"source": "csv:///tokens.csv", "target": pg_dsn}, data_dir)

    assert migration.status == "completed"
    assert sorted((r.row, r.column, r.value) for r in await store.rejects(migration.id)) == [
        (2, "token", "not-a-uuid"), (3, "code", "toolong")]
    assert await pg.fetch(pg_dsn, "SELECT id, code FROM tokens ORDER BY id") == [(1, "abc"), (4, "ghi")]
    progress = migration.tables["tokens"]
    assert (progress.written, progress.failed) == (2, 2)
