"""MongoDB -> PostgreSQL: every document becomes a row with equal values in typed columns; nested
data as jsonb or flattened; mixed-type fields widened or rejected as declared; a cancelled run
resumes to exactly the documents; Mongo -> PG -> Mongo gives the documents back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from service.core.errors import EndpointError, InvalidInput, UnknownTable
from service.plan.planner import make_plan
from service.runs.migration import resolve
from service.runs.spec import MigrationSpec
from service.store import SqliteStateStore
from tests.support import pg
from tests.support.mongodocs import (
    Document,
    cancel_after_first_commit,
    fetch_all,
    from_extended_json,
    insert,
    oid,
    people,
    rows,
    with_nulls,
)
from tests.support.runs import migrate

BATCH = 250
JSON_COLUMNS = ("address", "prefs", "tags", "orders")


def expected_row(doc: Document) -> Document:
    """The row a person document becomes (README "MongoDB types"): `_id` as 24 hex digits, a
    missing field NULL, nested values as they are (compared after reading the jsonb back)."""
    return {**with_nulls(doc), "_id": str(doc["_id"])}


def as_documents(found: list[Document]) -> list[Document]:
    """Rows with their jsonb columns read back as (Extended) JSON."""
    return [{k: from_extended_json(v) if k in JSON_COLUMNS and v is not None else v for k, v in r.items()}
            for r in found]


async def migrate_people(store: SqliteStateStore, data_dir: Path, source: str, target: str,
                         **options: object) -> list[Document]:
    migration = await migrate(store, {"source": source, "target": target, "tables": ["people"],
                                      "batchSize": BATCH, **options}, data_dir)
    assert migration.status == "completed"
    assert await store.rejects(migration.id) == []
    return await rows(target, "SELECT * FROM people ORDER BY _id")


async def test_every_document_becomes_a_row_with_equal_values(
    store: SqliteStateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    docs = people(3000)
    await insert(mongo_url, "people", docs)

    found = await migrate_people(store, data_dir, mongo_url, pg_dsn)

    assert as_documents(found) == [expected_row(d) for d in docs]


async def test_the_table_gets_typed_columns_nullable_where_fields_are_missing_and_id_as_key(
    store: SqliteStateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    await insert(mongo_url, "people", people(3000))

    await migrate_people(store, data_dir, mongo_url, pg_dsn)

    assert await pg.column_types(pg_dsn, "people") == {
        "_id": "text", "name": "text", "age": "bigint", "visits": "bigint", "score": "double precision",
        "active": "boolean", "joined": "timestamp with time zone", "email": "text", "nickname": "text",
        "address": "jsonb", "prefs": "jsonb", "tags": "jsonb", "orders": "jsonb",
    }
    nullable = await pg.fetch(pg_dsn, "SELECT attname::text FROM pg_attribute WHERE attrelid = 'people'::regclass"
                                      " AND attnum > 0 AND NOT attnotnull ORDER BY attname")
    assert nullable == [("address",), ("email",), ("nickname",), ("score",)]
    assert await pg.primary_key(pg_dsn, "people") == ["_id"]


async def test_dates_arrive_in_utc_with_their_milliseconds(
    store: SqliteStateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    docs = people(500)
    await insert(mongo_url, "people", docs)

    await migrate_people(store, data_dir, mongo_url, pg_dsn)

    got = await pg.fetch(pg_dsn, "SELECT to_char(joined AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"
                                 " FROM people ORDER BY _id")
    assert got == [(d["joined"].strftime("%Y-%m-%d %H:%M:%S.") + f"{d['joined'].microsecond // 1000:03d}",)
                   for d in docs]
    assert len({d["joined"].microsecond for d in docs}) > 100  # the milliseconds really vary


def readings(n: int) -> list[Document]:
    """`value` is an integer in 9 documents of 10 and a string in the others."""
    return [{"_id": oid(i), "sensor": f"s{i % 4}", "value": i * 1000 if i % 10 else f"n/a {i}"} for i in range(n)]


async def test_a_field_of_ints_and_strings_becomes_a_jsonb_column_holding_each_value(
    store: SqliteStateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    docs = readings(1000)
    await insert(mongo_url, "readings", docs)

    migration = await migrate(store, {"source": mongo_url, "target": pg_dsn, "batchSize": BATCH}, data_dir)

    assert migration.status == "completed"
    assert await store.rejects(migration.id) == []
    assert (await pg.column_types(pg_dsn, "readings"))["value"] == "jsonb"
    found = await rows(pg_dsn, "SELECT _id, value FROM readings ORDER BY _id")
    assert [(r["_id"], from_extended_json(r["value"])) for r in found] == [(str(d["_id"]), d["value"]) for d in docs]


async def test_the_plan_notes_a_mixed_type_field_and_the_policy_applied(
    mongo_url: str, pg_dsn: str, data_dir: Path
) -> None:
    await insert(mongo_url, "readings", readings(1000))
    spec = MigrationSpec.from_dict({"source": mongo_url, "target": pg_dsn})
    endpoints = resolve(spec, data_dir)

    plan = await make_plan(spec, endpoints.source, endpoints.target)

    tables = plan["tables"]
    assert isinstance(tables, list) and len(tables) == 1
    [note] = [n for n in tables[0]["notes"] if "value" in n]
    assert "mixed" in note and "widen" in note


async def test_the_run_log_reports_the_type_mapping_of_a_mixed_type_field(
    store: SqliteStateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    await insert(mongo_url, "readings", readings(1000))

    migration = await migrate(store, {"source": mongo_url, "target": pg_dsn, "batchSize": BATCH}, data_dir)

    notes = [e.message for e in await store.logs(migration.id) if e.message.startswith("Type mapping")]
    assert any("readings.value" in n and "mixed" in n for n in notes), notes


async def test_with_mixed_types_reject_the_minority_rows_are_rejects_naming_the_field(
    store: SqliteStateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    docs = readings(1000)
    await insert(mongo_url, "readings", docs)

    migration = await migrate(store, {"source": mongo_url, "target": pg_dsn, "batchSize": BATCH,
                                      "mongo": {"mixedTypes": "reject"}}, data_dir)

    assert migration.status == "completed"
    strings = [d for d in docs if isinstance(d["value"], str)]
    rejects = await store.rejects(migration.id)
    assert sorted(r.key or "" for r in rejects) == sorted(str(d["_id"]) for d in strings)
    assert all(r.column == "value" and "value" in r.message for r in rejects), rejects[:3]
    assert (await pg.column_types(pg_dsn, "readings"))["value"] == "bigint"
    assert await pg.fetch(pg_dsn, "SELECT _id, sensor, value FROM readings ORDER BY _id") == [
        (str(d["_id"]), d["sensor"], d["value"]) for d in docs if isinstance(d["value"], int)]
    assert (migration.tables["readings"].written, migration.tables["readings"].failed) == (900, 100)


async def test_nested_flatten_makes_parent_child_columns(
    store: SqliteStateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    docs = people(600)
    await insert(mongo_url, "people", docs)

    found = await migrate_people(store, data_dir, mongo_url, pg_dsn, mongo={"nested": "flatten"})

    types = await pg.column_types(pg_dsn, "people")
    assert {c: types.get(c) for c in ("address", "prefs", "address_city", "address_zip", "prefs_lang", "prefs_news",
                                       "tags", "orders")} == {
        "address": None, "prefs": None, "address_city": "text", "address_zip": "text", "prefs_lang": "text",
        "prefs_news": "boolean", "tags": "jsonb", "orders": "jsonb"}
    assert [(r["_id"], r["address_city"], r["address_zip"], r["prefs_lang"], r["prefs_news"]) for r in found] == [
        (str(d["_id"]), d.get("address", {}).get("city"), d.get("address", {}).get("zip"), d["prefs"]["lang"],
         d["prefs"]["news"]) for d in docs]


async def test_nested_fields_flattens_only_the_named_field(
    store: SqliteStateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    docs = people(600)
    await insert(mongo_url, "people", docs)

    found = await migrate_people(store, data_dir, mongo_url, pg_dsn, mongo={"nestedFields": {"address": "flatten"}})

    types = await pg.column_types(pg_dsn, "people")
    assert {c: types.get(c) for c in ("address", "address_city", "address_zip", "prefs")} == {
        "address": None, "address_city": "text", "address_zip": "text", "prefs": "jsonb"}
    assert [(r["address_city"], r["address_zip"], from_extended_json(r["prefs"])) for r in found] == [
        (d.get("address", {}).get("city"), d.get("address", {}).get("zip"), d["prefs"]) for d in docs]


async def test_a_cancelled_run_resumes_to_exactly_the_documents(
    store: SqliteStateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    docs = people(4000)
    await insert(mongo_url, "people", docs)
    spec = {"source": mongo_url, "target": pg_dsn, "batchSize": BATCH}
    cancelled = await cancel_after_first_commit(store, data_dir, spec)
    assert cancelled.status == "cancelled"
    assert 0 < await pg.count_rows(pg_dsn, "people") < len(docs)

    again = await migrate(store, spec, data_dir)

    assert again.id == cancelled.id and again.status == "completed"
    assert any("resuming after" in e.message for e in await store.logs(again.id))
    found = await rows(pg_dsn, "SELECT * FROM people ORDER BY _id")
    assert as_documents(found) == [expected_row(d) for d in docs]
    assert again.tables["people"].written == len(docs)


async def test_mongo_to_postgres_to_mongo_gives_the_documents_back_with_missing_fields_as_null(
    store: SqliteStateStore, data_dir: Path, mongo_url: str, pg_dsn: str, new_mongo_db: Callable[[], str]
) -> None:
    docs = people(1500)
    await insert(mongo_url, "people", docs)
    back_url = new_mongo_db()

    there = await migrate(store, {"source": mongo_url, "target": pg_dsn, "batchSize": BATCH}, data_dir)
    back = await migrate(store, {"source": pg_dsn, "target": back_url, "batchSize": BATCH}, data_dir)

    assert (there.status, back.status) == ("completed", "completed")
    assert await fetch_all(back_url, "people") == [with_nulls(d) for d in docs]


async def test_an_unknown_collection_is_refused_naming_it(
    store: SqliteStateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    await insert(mongo_url, "people", people(10))

    with pytest.raises(UnknownTable) as raised:
        await migrate(store, {"source": mongo_url, "target": pg_dsn, "tables": ["nobody"]}, data_dir)

    assert isinstance(raised.value, InvalidInput)
    assert "nobody" in raised.value.message
    assert await pg.count_rows(pg_dsn, "nobody") == 0


async def test_an_unreachable_mongodb_source_fails_quickly_naming_the_host(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str
) -> None:
    began = time.monotonic()

    with pytest.raises(EndpointError) as raised:
        await migrate(store, {"source": "mongodb://127.0.0.1:1/x", "target": pg_dsn, "timeout": 2}, data_dir)

    assert time.monotonic() - began < 6
    assert "127.0.0.1:1" in raised.value.message
