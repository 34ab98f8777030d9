"""Deep verification across kinds: what the run did to the rows (rejects left out, transforms,
casts to the target's types) is what verification expects, so a faithful run verifies OK from a
CSV file, from MongoDB and into SQLite; and a change in the target is named by its key."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pymongo import AsyncMongoClient

from service.runs.spec import MigrationSpec
from service.runs.verification import verify_migration
from service.store.base import StateStore
from tests.support import pg
from tests.support.runs import migrate
from tests.support.users import BAD, SPEC, write_users


async def verify(store: StateStore, run_id: str, spec: dict[str, object], data_dir: Path) -> dict[str, object]:
    from service.runs.migration import resolve

    parsed = MigrationSpec.from_dict(spec)
    endpoints = resolve(parsed, data_dir)
    return await verify_migration(store, run_id, parsed, endpoints.source, endpoints.target, deep=True)


def table(report: dict[str, object], name: str) -> dict[str, object]:
    tables = report["tables"]
    assert isinstance(tables, list)
    return next(t for t in tables if t["name"] == name)


async def test_a_csv_run_with_transforms_and_rejects_verifies_ok_and_then_names_a_changed_row(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    write_users(data_dir / "in")
    spec = {"source": "csv:///in", "target": pg_dsn, **SPEC, "verify": "deep"}
    run = await migrate(store, spec, data_dir)

    report = await store.report(run.id)  # made at the end of the run
    assert report is not None and report["ok"] is True, report
    users = table(report, "users")
    assert (users["sourceCount"], users["rejected"], users["targetCount"], users["checksumMatch"]) == (
        46, len(BAD), 40, True)

    # the CSV has no key, but the transforms keep the key-less table comparable by content only
    await pg.execute(pg_dsn, "UPDATE users SET name = 'Changed' WHERE id = 3")
    again = await verify(store, run.id, spec, data_dir)
    assert again["ok"] is False and table(again, "users")["checksumMatch"] is False


async def test_a_mongodb_run_verifies_ok_and_names_a_deleted_document(
    store: StateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_url)
    try:
        await client.get_default_database().things.insert_many(
            [{"_id": i, "name": f"thing {i}", "tags": ["a", "b"][: i % 3], "size": {"w": i, "h": 2 * i}}
             for i in range(1, 121)])
    finally:
        await client.close()
    spec = {"source": mongo_url, "target": pg_dsn, "batchSize": 50, "verify": "deep"}
    run = await migrate(store, spec, data_dir)
    report = await store.report(run.id)
    assert report is not None and report["ok"] is True, report

    await pg.execute(pg_dsn, 'DELETE FROM things WHERE "_id" = 77')
    again = await verify(store, run.id, spec, data_dir)
    assert table(again, "things")["missing"] == ["77"]


async def test_a_run_into_sqlite_verifies_ok_and_names_an_added_row(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE items (id integer PRIMARY KEY, label text, price numeric(8,2), "
                             "seen timestamptz)",
                     "INSERT INTO items SELECT i, 'item ' || i, i * 0.5, timestamptz '2024-05-01 12:00+00' "
                     "+ i * interval '1 minute' FROM generate_series(1, 500) i")
    db = data_dir / "out.db"
    spec = {"source": pg_dsn, "target": f"sqlite:///{db}", "verify": "deep"}
    run = await migrate(store, spec, data_dir)
    report = await store.report(run.id)
    assert report is not None and report["ok"] is True, report

    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO items (id, label) VALUES (501, 'extra')")
    again = await verify(store, run.id, spec, data_dir)
    assert table(again, "items")["extra"] == ["501"] and table(again, "items")["match"] is False
