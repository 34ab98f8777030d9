"""MongoDB -> MongoDB: documents copied unchanged (raw BSON when no rule applies), the source's
indexes recreated on a new collection, and modes insert / upsert / replace against documents the
target already holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pymongo.errors import DuplicateKeyError

from service.store import SqliteStateStore
from tests.support.mongodocs import Document, database, fetch_all, insert, oid, people, real_mongo, with_nulls
from tests.support.runs import migrate

BATCH = 250
N = 3000
HELD = range(100, 150)  # _ids the target holds before the run


@pytest.fixture
async def source_url(new_mongo_db: Callable[[], str]) -> str:
    url = new_mongo_db()
    await insert(url, "people", people(N))
    return url


async def copy(store: SqliteStateStore, data_dir: Path, source: str, target: str, **options: object) -> str:
    """Run the migration; returns its id."""
    migration = await migrate(store, {"source": source, "target": target, "batchSize": BATCH, **options}, data_dir)
    assert migration.status == "completed"
    return migration.id


async def test_documents_are_copied_unchanged_by_raw_bson_pass_through(
    store: SqliteStateStore, data_dir: Path, source_url: str, mongo_url: str
) -> None:
    migration_id = await copy(store, data_dir, source_url, mongo_url)

    assert await fetch_all(mongo_url, "people") == people(N)
    assert any("bson pass-through" in e.message for e in await store.logs(migration_id))
    assert await store.rejects(migration_id) == []


async def test_the_new_collection_gets_the_sources_indexes_and_enforces_the_unique_one(
    store: SqliteStateStore, data_dir: Path, source_url: str, mongo_url: str
) -> None:
    async with database(source_url) as db:
        await db.people.create_index("visits", unique=True)
        await db.people.create_index("address.city")

    await copy(store, data_dir, source_url, mongo_url)

    async with database(mongo_url) as db:
        indexes = {tuple(ix["key"].items()): bool(ix.get("unique")) async for ix in await db.people.list_indexes()}
        assert {k: u for k, u in indexes.items() if k != (("_id", 1),)} == {
            (("visits", 1),): True, (("address.city", 1),): False}
        with pytest.raises(DuplicateKeyError):
            await db.people.insert_one({"name": "a copy", "visits": people(1)[0]["visits"]})


@pytest.mark.parametrize("entry", [
    {"rules": {"people": {"name": {"type": "string"}}}},
    {"transforms": {"people": [{"trim": ["name"]}]}},
], ids=["rules", "transforms"])
async def test_with_a_rule_or_transform_the_documents_go_through_rows_with_missing_fields_as_null(
    store: SqliteStateStore, data_dir: Path, source_url: str, mongo_url: str, entry: dict[str, object]
) -> None:
    migration_id = await copy(store, data_dir, source_url, mongo_url, **entry)

    assert not any("pass-through" in e.message for e in await store.logs(migration_id))
    assert await fetch_all(mongo_url, "people") == [with_nulls(d) for d in people(N)]
    assert await store.rejects(migration_id) == []


async def hold(url: str) -> list[Document]:
    """Put documents with some of the source's `_id`s (and other content) into the target."""
    held = [{"_id": oid(i), "name": f"old {i}", "legacy": True} for i in HELD]
    await insert(url, "people", held)
    return held


async def test_insert_mode_rejects_the_documents_whose_id_the_target_holds_and_inserts_the_rest(
    store: SqliteStateStore, data_dir: Path, source_url: str, mongo_url: str
) -> None:
    held = await hold(mongo_url)

    migration_id = await copy(store, data_dir, source_url, mongo_url, mode="insert")

    rejects = await store.rejects(migration_id)
    assert sorted(r.key or "" for r in rejects) == sorted(str(oid(i)) for i in HELD)
    assert all(r.rule == "duplicate_key" and r.key and r.key in r.message for r in rejects), rejects[:2]
    expected = {d["_id"]: d for d in people(N)} | {d["_id"]: d for d in held}
    assert await fetch_all(mongo_url, "people") == sorted(expected.values(), key=lambda d: str(d["_id"]))


async def test_upsert_mode_updates_the_documents_the_target_holds_keeping_their_other_fields(
    store: SqliteStateStore, data_dir: Path, source_url: str, mongo_url: str
) -> None:
    # Checked on fields the stand-in stores faithfully: its `$set` of an existing document turns
    # a top-level date into text and a bool into 1, and a new document upserted by an ObjectId
    # filter gets a text `_id` (the exact-content test below needs a real server).
    await hold(mongo_url)

    migration_id = await copy(store, data_dir, source_url, mongo_url, mode="upsert")

    assert await store.rejects(migration_id) == []
    async with database(mongo_url) as db:
        assert await db.people.count_documents({}) == N
        updated = [d async for d in db.people.find({"legacy": True})]
    source = {d["_id"]: d for d in people(N)}
    assert sorted((d["_id"], d["name"], d["age"], d["tags"]) for d in updated) == [
        (oid(i), source[oid(i)]["name"], source[oid(i)]["age"], source[oid(i)]["tags"]) for i in HELD]


@real_mongo
async def test_upsert_mode_gives_the_source_documents_plus_the_fields_only_the_target_had(
    store: SqliteStateStore, data_dir: Path, source_url: str, mongo_url: str
) -> None:
    await hold(mongo_url)

    migration_id = await copy(store, data_dir, source_url, mongo_url, mode="upsert")

    assert await store.rejects(migration_id) == []
    assert await fetch_all(mongo_url, "people") == [
        {**d, "legacy": True} if i in HELD else d for i, d in enumerate(people(N))]


async def test_replace_mode_replaces_the_documents_the_target_holds_whole(
    store: SqliteStateStore, data_dir: Path, source_url: str, mongo_url: str
) -> None:
    await hold(mongo_url)

    migration_id = await copy(store, data_dir, source_url, mongo_url, mode="replace")

    assert await store.rejects(migration_id) == []
    assert await fetch_all(mongo_url, "people") == people(N)
