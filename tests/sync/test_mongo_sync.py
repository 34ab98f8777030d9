"""Sync with MongoDB on either side: a date field (or _id) as the cursor of a MongoDB source, upserts
by _id into a MongoDB target, and a collection followed by its change stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.runs.migration import resolve
from service.runs.rollback import roll_back
from service.store.base import StateStore
from tests.support.mongodocs import database
from tests.support.pg import execute, fetch
from tests.sync.support import sync_pass

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_mongodb_source_synced_by_a_date_field_and_deletes_detected(
    store: StateStore, data_dir: Path, mongo_url: str, new_pg_db
) -> None:
    target = await new_pg_db()
    async with database(mongo_url) as db:
        events = db.events
        await events.insert_many([{"_id": i, "kind": f"k{i % 3}", "at": T0 + timedelta(seconds=i)}
                                  for i in range(1, 201)])
        spec = {"source": mongo_url, "target": target, "batchSize": 30,
                "incremental": {"events": {"cursor": "at"}}, "detectDeletes": True}
        await sync_pass(store, spec, data_dir)
        assert len(await fetch(target, "SELECT _id FROM events")) == 200

        later = T0 + timedelta(days=1)
        # Whole documents: the nx-27017 stand-in stores a datetime given to $set as text.
        for key in (5, 150):
            await events.replace_one({"_id": key}, {"kind": "changed", "at": later})
        await events.insert_one({"_id": 201, "kind": "new", "at": later})
        await events.delete_one({"_id": 7})
        second = await sync_pass(store, spec, data_dir)

        rows = await fetch(target, "SELECT _id, kind FROM events ORDER BY _id")
        assert len(rows) == 200 and (5, "changed") in rows and (201, "new") in rows and 7 not in [r[0] for r in rows]
        assert second.sync is not None and second.sync.history[-1]["deleted"] == 1
        assert second.sync.history[-1]["rows"] <= 4  # the three changed documents and the one at the old mark


async def test_a_postgresql_source_synced_into_mongodb_replaces_documents_by_id(
    store: StateStore, data_dir: Path, mongo_url: str, new_pg_db
) -> None:
    source = await new_pg_db()
    await execute(source, "CREATE TABLE people (id int PRIMARY KEY, name text, seen bigint NOT NULL)",
                  "INSERT INTO people SELECT i, 'p' || i, i FROM generate_series(1, 100) i")
    spec = {"source": source, "target": mongo_url, "incremental": {"people": {"cursor": "seen"}}}
    await sync_pass(store, spec, data_dir)
    await execute(source, "UPDATE people SET name = 'renamed', seen = 1000 WHERE id = 10",
                  "INSERT INTO people VALUES (101, 'new', 1001)")
    await sync_pass(store, spec, data_dir)
    async with database(mongo_url) as db:
        docs = sorted(await db.people.find({}, {"name": 1}).to_list(), key=lambda d: d["_id"])
    assert len(docs) == 101
    assert docs[9] == {"_id": 10, "name": "renamed"} and docs[100] == {"_id": 101, "name": "new"}


async def test_a_mongodb_collection_followed_by_its_change_stream(  # (the stand-in has basic change streams)
    store: StateStore, data_dir: Path, mongo_url: str, new_pg_db
) -> None:
    target = await new_pg_db()
    async with database(mongo_url) as db:
        orders = db.orders
        await orders.insert_many([{"_id": i, "status": "new", "total": i * 2} for i in range(1, 101)])
        spec = {"source": mongo_url, "target": target, "incremental": {"orders": {"capture": True}}}
        await sync_pass(store, spec, data_dir)
        await orders.update_one({"_id": 5}, {"$set": {"status": "paid"}})
        await orders.insert_one({"_id": 101, "status": "new", "total": 202})
        await orders.delete_many({"_id": {"$in": [7, 8]}})
        await orders.replace_one({"_id": 9}, {"status": "replaced", "total": 0})
        second = await sync_pass(store, spec, data_dir)
        expected = sorted([(d["_id"], d["status"], d["total"]) async for d in orders.find({})])
    assert await fetch(target, "SELECT _id, status, total FROM orders ORDER BY _id") == expected
    assert second.sync is not None and second.sync.history[-1]["deleted"] == 2


async def test_deletes_reach_a_mongodb_target_and_a_rollback_restores_the_documents_it_had(
    store: StateStore, data_dir: Path, mongo_url: str, new_pg_db
) -> None:
    source = await new_pg_db()
    await execute(source, "CREATE TABLE people (id int PRIMARY KEY, name text, seen bigint NOT NULL)",
                  "INSERT INTO people SELECT i, 'p' || i, i FROM generate_series(1, 20) i")
    async with database(mongo_url) as db:
        people = db.people
        await people.insert_many([{"_id": 3, "name": "the target's own 3", "seen": 0},
                                  {"_id": 99, "name": "only in the target", "seen": 0}])
        before = sorted(await people.find({}).to_list(), key=lambda d: d["_id"])
        spec = {"source": source, "target": mongo_url, "incremental": {"people": {"cursor": "seen"}},
                "detectDeletes": {"softDelete": "gone"}}
        await sync_pass(store, spec, data_dir)
        await execute(source, "DELETE FROM people WHERE id IN (4, 5)")
        last = await sync_pass(store, spec, data_dir)
        flagged = sorted([d["_id"] async for d in people.find({"gone": True})])
        assert flagged == [4, 5, 99] and await people.count_documents({"gone": False}) == 18

        record = await store.get_migration(last.id)
        assert record is not None
        endpoints = resolve(last.spec, data_dir)
        await roll_back(store, record, last.spec, endpoints.target, source=endpoints.source)
        assert sorted(await people.find({}).to_list(), key=lambda d: d["_id"]) == before
