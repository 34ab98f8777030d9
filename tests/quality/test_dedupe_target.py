"""Duplicate detection against the rows already in the target (`dedupe.<table>.againstTarget`):
a row whose key the target holds already is rejected as a duplicate; the target's rows stay."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from service.core.errors import InvalidSpec
from service.store.base import StateStore
from tests.support import pg
from tests.support.runs import migrate

CSV = "id,email\n10,a@x.org\n11,c@x.org\n12,d@x.org\n13,c@x.org\n14,B@x.org\n"


@pytest.fixture
def source(data_dir: Path) -> str:
    (data_dir / "in").mkdir()
    (data_dir / "in" / "users.csv").write_text(CSV)
    return "csv:///in"


def spec(source: str, target: str, *, against: bool = True, **more: object) -> dict[str, object]:
    return {"source": source, "target": target, "batchSize": 2,
            "dedupe": {"users": {"key": ["email"], "againstTarget": against, **more}}}


async def test_a_row_whose_key_is_already_in_the_target_is_a_duplicate(
    store: StateStore, data_dir: Path, pg_dsn: str, source: str
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE users (id integer, email text)",
                     "INSERT INTO users VALUES (1, 'a@x.org'), (2, 'b@x.org')")

    run = await migrate(store, spec(source, pg_dsn), data_dir)

    assert run.status == "completed"
    rejects = sorted(await store.rejects(run.id), key=lambda r: r.row or 0)
    assert [(r.row, r.rule, r.value) for r in rejects] == [(1, "duplicate", "a@x.org"), (4, "duplicate", "c@x.org")]
    assert await pg.fetch(pg_dsn, "SELECT id, email FROM users ORDER BY id") == [
        (1, "a@x.org"), (2, "b@x.org"), (11, "c@x.org"), (12, "d@x.org"), (14, "B@x.org")]  # keys are exact text
    assert (run.tables["users"].written, run.tables["users"].failed) == (3, 2)


async def test_without_against_target_only_the_migrated_rows_are_compared(
    store: StateStore, data_dir: Path, pg_dsn: str, source: str
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE users (id integer, email text)", "INSERT INTO users VALUES (1, 'a@x.org')")

    run = await migrate(store, spec(source, pg_dsn, against=False), data_dir)

    assert [r.row for r in await store.rejects(run.id)] == [4]
    assert await pg.count_rows(pg_dsn, "users") == 5


async def test_loading_the_same_file_again_loads_nothing_and_rejects_every_row(
    store: StateStore, data_dir: Path, pg_dsn: str, source: str
) -> None:
    first = await migrate(store, spec(source, pg_dsn), data_dir)
    assert await pg.count_rows(pg_dsn, "users") == 4

    again = await migrate(store, spec(source, pg_dsn, keep="first") | {"batchSize": 3}, data_dir)

    assert again.id != first.id and again.status == "completed"
    assert (again.tables["users"].written, again.tables["users"].failed) == (0, 5)
    assert await pg.count_rows(pg_dsn, "users") == 4


async def test_fix_suffixes_a_key_that_the_target_holds(
    store: StateStore, data_dir: Path, pg_dsn: str, source: str
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE users (id integer, email text)",
                     "INSERT INTO users VALUES (1, 'a@x.org'), (2, 'a@x.org-2')")

    run = await migrate(store, spec(source, pg_dsn, keep="fix"), data_dir)

    assert await store.rejects(run.id) == []
    assert await pg.fetch(pg_dsn, "SELECT email FROM users WHERE id IN (10, 13) ORDER BY id") == [
        ("a@x.org-3",), ("c@x.org-2",)]  # -2 is taken in the target


async def test_against_an_sqlite_target(store: StateStore, data_dir: Path, source: str) -> None:
    db = data_dir / "target.db"
    with sqlite3.connect(db) as c:
        c.executescript("CREATE TABLE users (id INTEGER, email TEXT); INSERT INTO users VALUES (1, 'd@x.org');")

    run = await migrate(store, spec(source, f"sqlite:///{db}"), data_dir)

    assert sorted(r.row for r in await store.rejects(run.id)) == [3, 4]
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM users").fetchone() == (4,)


async def test_against_a_mongodb_target(store: StateStore, data_dir: Path, mongo_url: str, source: str) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_url)
    try:
        users = client.get_default_database().users
        await users.insert_many([{"_id": 1, "email": "c@x.org"}])

        run = await migrate(store, spec(source, mongo_url), data_dir)

        assert sorted(r.row for r in await store.rejects(run.id)) == [2, 4]
        assert await users.count_documents({}) == 4
    finally:
        await client.close()


def test_against_target_must_be_a_boolean() -> None:
    from service.quality.dedupe import compile_dedupe

    with pytest.raises(InvalidSpec, match="againstTarget must be true or false"):
        compile_dedupe("users", {"key": "email", "againstTarget": "yes"})
