"""Rollback returns a CSV folder, a SQLite file and a MongoDB database to their exact state before
the run — into new files / tables / collections and into ones that already held data, after a
completed and a cancelled run — and running it again changes nothing. (PostgreSQL targets:
tests/runs/test_rollback.py.)"""

from __future__ import annotations

import datetime as dt
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

from service.runs.migration import Migration, resolve
from service.runs.rollback import roll_back
from service.store.base import StateStore
from tests.support import pg
from tests.support.bigtable import create_big_table
from tests.support.mongodocs import UTC, database, id_order, insert
from tests.support.runs import migrate, run_until_committed, stop

ROWS = 3_000


async def undo(store: StateStore, run: Migration, data_dir: Path) -> list[str]:
    record = await store.get_migration(run.id)
    assert record is not None
    return await roll_back(store, record, run.spec, resolve(run.spec, data_dir).target)


async def assert_rolled_back(store: StateStore, run: Migration) -> None:
    record = await store.get_migration(run.id)
    assert record is not None and record.status == "rolled_back", record


@pytest.fixture
async def source(pg_dsn: str) -> str:
    await create_big_table(pg_dsn, ROWS)
    return pg_dsn


# -- CSV ------------------------------------------------------------------------------------------

def folder_state(folder: Path) -> dict[str, bytes]:
    """Every file of the folder (hidden ones too) and its exact bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if p.name.endswith((".partial", ".before")) or p.name.startswith(".migrator-"))


@pytest.fixture
def out(data_dir: Path) -> Path:
    """The CSV target folder `csv:///out`, already holding a file of someone else's."""
    folder = data_dir / "out"
    folder.mkdir()
    (folder / "other.csv").write_bytes(b"a,b\n1,2\n")
    return folder


async def test_csv_a_new_file_is_removed_and_a_second_rollback_changes_nothing(
    store: StateStore, data_dir: Path, source: str, out: Path
) -> None:
    before = folder_state(out)
    run = await migrate(store, {"source": source, "target": "csv:///out", "batchSize": 500}, data_dir)
    assert run.status == "completed"
    assert (out / "big.csv").read_bytes().count(b"\n") > ROWS

    done = await undo(store, run, data_dir)

    assert folder_state(out) == before
    assert any("removed big.csv" in line for line in done), done
    await assert_rolled_back(store, run)
    await undo(store, run, data_dir)
    assert folder_state(out) == before


async def test_csv_a_file_replaced_by_the_run_gets_its_exact_bytes_back(
    store: StateStore, data_dir: Path, source: str, out: Path
) -> None:
    old = b'id,name\r\n1,"the old one, kept"\r\n2,\xc3\xa9t\xc3\xa9\r\n'  # its own line ends, no final newline:
    (out / "big.csv").write_bytes(old + b"3,last")
    before = folder_state(out)
    run = await migrate(store, {"source": source, "target": "csv:///out", "batchSize": 500, "mode": "replace"},
                        data_dir)
    assert run.status == "completed"
    assert (out / "big.csv").read_bytes().startswith(b"id,name,amount,note\n")

    await undo(store, run, data_dir)

    assert folder_state(out) == before
    assert leftovers(out) == []
    await assert_rolled_back(store, run)
    await undo(store, run, data_dir)
    assert folder_state(out) == before


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "over-an-existing-file"])
async def test_csv_a_cancelled_run_leaves_the_folder_as_before(
    store: StateStore, data_dir: Path, pg_dsn: str, out: Path, existing: bool
) -> None:
    await create_big_table(pg_dsn, 50_000)
    if existing:
        (out / "big.csv").write_bytes(b"id\n42\n")
    before = folder_state(out)
    spec = {"source": pg_dsn, "target": "csv:///out", "batchSize": 200, "mode": "replace"}
    run, task = await run_until_committed(store, spec, data_dir)
    await stop(task, run, before="cancel")
    assert [p.name for p in out.iterdir() if p.name.endswith(".partial")], "the cancelled run left no partial file"

    await undo(store, run, data_dir)

    assert folder_state(out) == before
    await assert_rolled_back(store, run)


# -- SQLite ---------------------------------------------------------------------------------------

SqliteState = tuple[list[tuple[object, ...]], dict[str, list[tuple[object, ...]]]]


def sqlite_state(path: Path) -> SqliteState:
    """The schema (every table, index, trigger, view but the migrator's own) and every row of
    every user table, sorted."""
    with closing(sqlite3.connect(path)) as conn:
        schema = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name NOT LIKE "
                              "'\\_migrator\\_%' ESCAPE '\\' ORDER BY type, name").fetchall()
        tables = [name for kind, name, _, _ in schema if kind == "table" and not name.startswith("sqlite_")]
        rows = {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
    return schema, rows


def sqlite_ledger(path: Path, migration_id: str) -> list[tuple[object, ...]]:
    """What the target's migrator tables still hold of the migration."""
    with closing(sqlite3.connect(path)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name LIKE '\\_migrator\\_%' ESCAPE '\\'")]
        return [(t, *r) for t in tables
                for r in conn.execute(f'SELECT * FROM "{t}" WHERE migration_id = ?', (migration_id,))]


def sqlite_execute(path: Path, *statements: str) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        for sql in statements:
            conn.execute(sql)


async def test_sqlite_a_new_table_is_dropped_and_a_second_rollback_changes_nothing(
    store: StateStore, data_dir: Path, source: str, tmp_path: Path
) -> None:
    db = tmp_path / "to.db"
    sqlite_execute(db, "CREATE TABLE keep (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO keep VALUES (1, 'x')")
    before = sqlite_state(db)
    run = await migrate(store, {"source": source, "target": f"sqlite:///{db}", "batchSize": 500}, data_dir)
    assert run.status == "completed" and run.tables["big"].written == ROWS

    done = await undo(store, run, data_dir)

    assert sqlite_state(db) == before
    assert any("dropped table big" in line for line in done), done
    assert sqlite_ledger(db, run.id) == []
    await assert_rolled_back(store, run)
    assert await undo(store, run, data_dir) == []
    assert sqlite_state(db) == before


EXISTING_SQLITE_TABLES = {
    # The table's own rows have ids below and above the source's 1…ROWS, none equal.
    "rowid-table": "CREATE TABLE big (id INTEGER, name TEXT, amount TEXT, note TEXT)",
    "integer-primary-key": "CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT, amount TEXT, note TEXT)",
    "without-rowid": "CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT, amount TEXT, note TEXT) WITHOUT ROWID",
}


@pytest.mark.parametrize("ddl", EXISTING_SQLITE_TABLES.values(), ids=EXISTING_SQLITE_TABLES.keys())
async def test_sqlite_rows_inserted_into_a_table_that_held_rows_are_deleted_and_its_own_rows_stay(
    store: StateStore, data_dir: Path, source: str, tmp_path: Path, ddl: str
) -> None:
    db = tmp_path / "to.db"
    sqlite_execute(db, ddl, "INSERT INTO big VALUES (-2, 'mine', '2.00', NULL), (0, 'zero', '0', ''),"
                            f" ({ROWS + 1000}, 'mine too', '9.50', 'after the source ids')")
    before = sqlite_state(db)
    run = await migrate(store, {"source": source, "target": f"sqlite:///{db}", "batchSize": 500}, data_dir)
    assert run.status == "completed" and run.tables["big"].written == ROWS
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (ROWS + 3,)

    await undo(store, run, data_dir)

    assert sqlite_state(db) == before
    assert sqlite_ledger(db, run.id) == []
    await assert_rolled_back(store, run)
    await undo(store, run, data_dir)
    assert sqlite_state(db) == before


# -- MongoDB --------------------------------------------------------------------------------------

MongoState = dict[str, list[str]]


async def mongo_state(url: str) -> MongoState:
    """Every collection but the migrator's own, each document in canonical Extended JSON (field
    order and BSON types included), sorted by `_id`."""
    async with database(url) as db:
        names = sorted(n for n in await db.list_collection_names()
                       if not n.startswith(("_migrator_", "system.")))
        found = {n: [d async for d in db[n].find({})] for n in names}
    return {n: [json_util.dumps(d, json_options=CANONICAL_JSON_OPTIONS)
                for d in sorted(docs, key=lambda d: id_order(d["_id"]))] for n, docs in found.items()}


async def mongo_leftovers(url: str, migration_id: str) -> tuple[int, list[str]]:
    """Before-images of the migration left in `_migrator_before`, and its ledger entries."""
    async with database(url) as db:
        images = await db["_migrator_before"].count_documents({"m": migration_id})
        ledger = [str(e["_id"]) async for e in db["_migrator_checkpoints"].find({})
                  if str(e["_id"]).startswith(f"{migration_id}/")]
    return int(images), ledger


async def create_mongo_source(dsn: str, rows: int) -> None:
    """A table of the types the nx-27017 stand-in holds (no numeric: no Decimal128 there)."""
    await pg.execute(dsn, "CREATE TABLE big (id bigint PRIMARY KEY, name text, qty integer, note text, "
                             "at timestamptz)",
                     "INSERT INTO big SELECT g, 'name ' || md5(g::text), g % 97 - 40, CASE WHEN g % 10 = 0 THEN "
                     "NULL ELSE E'note \"' || g || E'\",\\n' END, timestamptz '2024-01-01 00:00:00+00' + "
                     f"g * interval '1 minute 1.5 second' FROM generate_series(1, {rows}) g")


@pytest.fixture
async def mongo_source(pg_dsn: str) -> str:
    await create_mongo_source(pg_dsn, ROWS)
    return pg_dsn


@pytest.fixture
async def mongo_target(mongo_url: str) -> str:
    """A database with a collection of someone else's, untouched by the runs."""
    await insert(mongo_url, "other", [{"_id": i, "v": f"other {i}"} for i in range(5)])
    return mongo_url


async def test_mongo_a_new_collection_is_dropped_and_a_second_rollback_changes_nothing(
    store: StateStore, data_dir: Path, mongo_source: str, mongo_target: str
) -> None:
    source = mongo_source
    before = await mongo_state(mongo_target)
    run = await migrate(store, {"source": source, "target": mongo_target, "batchSize": 500}, data_dir)
    assert run.status == "completed" and run.tables["big"].written == ROWS

    done = await undo(store, run, data_dir)

    assert await mongo_state(mongo_target) == before
    assert any("dropped collection big" in line for line in done), done
    assert await mongo_leftovers(mongo_target, run.id) == (0, [])
    await assert_rolled_back(store, run)
    assert await undo(store, run, data_dir) == []
    assert await mongo_state(mongo_target) == before


def held(i: int) -> dict[str, object]:
    """A document the collection held before the run: other fields, types and order than the
    run's own documents for the same `_id`."""
    return {"_id": i, "extra": {"keep": [i, "x", None]}, "name": f"held {i}", "amount": i * 100,
            "at": dt.datetime(2020, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=i)}


@pytest.mark.parametrize("mode", ["upsert", "replace", "insert"])
async def test_mongo_documents_of_a_collection_that_held_documents_are_restored_exactly(
    store: StateStore, data_dir: Path, mongo_source: str, mongo_target: str, mode: str
) -> None:
    source = mongo_source
    # Some `_id`s the run writes too (1…40, every tenth of 100…3000), some it does not (-5…-1,
    # ROWS + 1…ROWS + 10).
    shared = [*range(1, 41), *range(100, ROWS + 1, 100)]
    await insert(mongo_target, "big", [held(i) for i in [*range(-5, 0), *shared, *range(ROWS + 1, ROWS + 11)]])
    before = await mongo_state(mongo_target)
    run = await migrate(store, {"source": source, "target": mongo_target, "batchSize": 500, "mode": mode},
                        data_dir)
    assert run.status == "completed"
    if mode == "insert":  # the shared `_id`s are rejects: the documents there are kept
        assert (run.tables["big"].written, run.tables["big"].failed) == (ROWS - len(shared), len(shared))
    else:
        assert run.tables["big"].written == ROWS
    assert await mongo_state(mongo_target) != before

    await undo(store, run, data_dir)

    after = await mongo_state(mongo_target)
    assert len(after["big"]) == len(before["big"])
    assert after == before
    assert await mongo_leftovers(mongo_target, run.id) == (0, [])
    await assert_rolled_back(store, run)
    await undo(store, run, data_dir)
    assert await mongo_state(mongo_target) == before


async def test_mongo_a_cancelled_upsert_run_is_undone(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_target: str
) -> None:
    await create_mongo_source(pg_dsn, 20_000)
    await insert(mongo_target, "big", [held(i) for i in [-1, 1, 2, 150, 30_000]])
    before = await mongo_state(mongo_target)
    spec = {"source": pg_dsn, "target": mongo_target, "batchSize": 100, "mode": "upsert"}
    run, task = await run_until_committed(store, spec, data_dir)
    await stop(task, run, before="cancel")
    assert await mongo_state(mongo_target) != before

    await undo(store, run, data_dir)

    assert await mongo_state(mongo_target) == before
    assert await mongo_leftovers(mongo_target, run.id) == (0, [])
