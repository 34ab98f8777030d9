"""PostgreSQL -> MongoDB: the key becomes `_id`, every column its BSON counterpart (README "MongoDB
types"), a keyless table gets stable ObjectIds; cancelled runs resume without duplicates, and
PG -> Mongo -> PG gives the table's values back."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from bson import Decimal128, ObjectId

from service.core.errors import EndpointError
from service.store import SqliteStateStore
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.mongodocs import (
    Document,
    cancel_after_first_commit,
    count,
    fetch_all,
    from_extended_json,
    real_mongo,
    rows,
)
from tests.support.runs import migrate

UTC = dt.UTC
BATCH = 250
MISSING = "<missing>"
on_the_stand_in = pytest.mark.skipif(bool(os.environ.get("TEST_MONGO_URL")), reason="nx-27017 stand-in behaviour")

ITEMS = r"""
CREATE TABLE items (
  id bigint PRIMARY KEY,
  name text,
  qty integer,
  big bigint,
  ratio double precision,
  ok boolean,
  at timestamptz,
  day date,
  doc jsonb,
  ints integer[],
  words text[],
  blob bytea
);
INSERT INTO items
SELECT g, CASE WHEN g % 4 = 0 THEN E'Zoë "' || g || E'",\nnew line' ELSE 'item ' || g END, g % 1000 - 500,
       g * 3000000000, g / 3.0, g % 2 = 0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour 1.234 second', date '2024-02-27' + g,
       jsonb_build_object('n', g, 'nested', jsonb_build_object('list', jsonb_build_array(1, 'x', null, true)),
                          'q', '"quoted"'),
       ARRAY[g, -g, NULL], ARRAY['a', 'b,c', 'é "' || g || '"'], decode(md5(g::text), 'hex')
FROM generate_series(1, 1000) g;
-- every tenth row holds NULL in every column but the key
UPDATE items SET name = NULL, qty = NULL, big = NULL, ratio = NULL, ok = NULL, at = NULL, day = NULL,
                 doc = NULL, ints = NULL, words = NULL, blob = NULL WHERE id % 10 = 0;
"""


def midnight_utc(v: dt.date) -> dt.datetime:
    return dt.datetime(v.year, v.month, v.day, tzinfo=UTC)


# column -> the BSON value its PostgreSQL value becomes (README "MongoDB types")
COLUMNS: dict[str, Callable[[object], object]] = {
    "name": lambda v: v,
    "qty": lambda v: v,
    "big": lambda v: v,
    "ratio": lambda v: v,
    "ok": lambda v: v,
    "at": lambda v: v,  # timestamptz -> UTC datetime (the source has whole milliseconds)
    "day": lambda v: midnight_utc(v),  # type: ignore[arg-type]
    "doc": lambda v: json.loads(v),  # type: ignore[arg-type]
    "ints": lambda v: list(v),  # type: ignore[call-overload]
    "words": lambda v: list(v),  # type: ignore[call-overload]
    "blob": lambda v: bytes(v),  # type: ignore[call-overload]
}


@pytest.fixture
async def source_dsn(pg_dsn: str) -> str:
    await pg.execute(pg_dsn, ITEMS)
    return pg_dsn


async def migrate_table(store: SqliteStateStore, data_dir: Path, source: str, target: str, table: str,
                        **options: object) -> list[Document]:
    migration = await migrate(store, {"source": source, "target": target, "tables": [table], "batchSize": BATCH,
                                      **options}, data_dir)
    assert migration.status == "completed"
    assert await store.rejects(migration.id) == []
    return await fetch_all(target, table)


async def test_a_single_column_key_becomes_id_and_is_not_repeated(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, mongo_url: str
) -> None:
    docs = await migrate_table(store, data_dir, source_dsn, mongo_url, "items")

    assert [d["_id"] for d in docs] == list(range(1, 1001))
    assert all(set(d) == {"_id", *COLUMNS} for d in docs), docs[0]


@pytest.mark.parametrize("column", list(COLUMNS))
async def test_each_column_arrives_as_its_bson_counterpart(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, mongo_url: str, column: str
) -> None:
    docs = await migrate_table(store, data_dir, source_dsn, mongo_url, "items")

    source = await rows(source_dsn, f"SELECT id, {column} AS v FROM items WHERE {column} IS NOT NULL ORDER BY id")
    assert len(source) == 900
    convert = COLUMNS[column]
    assert {d["_id"]: d.get(column, MISSING) for d in docs if d["_id"] % 10} == {
        r["id"]: convert(r["v"]) for r in source}


async def test_null_columns_arrive_as_null_fields(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, mongo_url: str
) -> None:
    docs = await migrate_table(store, data_dir, source_dsn, mongo_url, "items")

    nulls = [d for d in docs if d["_id"] % 10 == 0]
    assert len(nulls) == 100
    assert all(d == {"_id": d["_id"], **dict.fromkeys(COLUMNS)} for d in nulls), nulls[0]


async def test_a_composite_key_becomes_an_id_sub_document_of_its_columns(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE lines (order_id integer, line_no smallint, sku text NOT NULL, qty integer,"
                             " PRIMARY KEY (order_id, line_no))",
                     "INSERT INTO lines SELECT g / 5, (g % 5)::smallint, 'SKU-' || g, g % 17"
                     " FROM generate_series(1000, 1, -1) g")

    docs = await migrate_table(store, data_dir, pg_dsn, mongo_url, "lines")

    source = await rows(pg_dsn, "SELECT * FROM lines ORDER BY order_id, line_no")
    expected = {(r["order_id"], r["line_no"]): {"_id": {"order_id": r["order_id"], "line_no": r["line_no"]},
                                                  "sku": r["sku"], "qty": r["qty"]} for r in source}
    assert {(d["_id"]["order_id"], d["_id"]["line_no"]): d for d in docs} == expected
    assert len(docs) == 1000


PRICES = [(1, Decimal("1234567890.12")), (2, Decimal("-0.01")), (3, Decimal("0.00")), (4, None),
          (5, Decimal("9999999999.99")), (6, Decimal("0.10"))]


async def numeric_table(dsn: str) -> None:
    await pg.execute(dsn, "CREATE TABLE prices (id int PRIMARY KEY, price numeric(12,2), label text)",
                     "INSERT INTO prices VALUES " + ", ".join(
                         f"({i}, {'NULL' if p is None else p}, 'p{i}')" for i, p in PRICES))


@real_mongo
async def test_numeric_becomes_an_exact_decimal128(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    await numeric_table(pg_dsn)

    docs = await migrate_table(store, data_dir, pg_dsn, mongo_url, "prices")

    assert [(d["_id"], d["price"]) for d in docs] == [
        (i, None if price is None else Decimal128(price)) for i, price in PRICES]


@on_the_stand_in
async def test_numeric_rows_are_rejects_naming_decimal128_on_the_stand_in_which_lacks_it(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    # nx-27017 refuses Decimal128 documents: the rows go to the rejects with the server's reason;
    # the value is never written as a float or a string instead.
    await numeric_table(pg_dsn)

    migration = await migrate(store, {"source": pg_dsn, "target": mongo_url, "batchSize": BATCH}, data_dir)

    assert migration.status == "completed"
    rejects = await store.rejects(migration.id)
    assert sorted(r.key or "" for r in rejects) == sorted(str(i) for i, p in PRICES if p is not None)
    assert all("Decimal128" in r.message for r in rejects), rejects
    assert await fetch_all(mongo_url, "prices") == [{"_id": 4, "price": None, "label": "p4"}]


KEYLESS = r"""
CREATE TABLE events (kind text, n integer, payload jsonb);
INSERT INTO events SELECT 'kind ' || (g % 7), g, jsonb_build_object('g', g) FROM generate_series(1, 4000) g;
INSERT INTO events SELECT * FROM events WHERE n <= 50;  -- rows that are exact duplicates
"""


def event_rows(docs: list[Document]) -> Counter[tuple[object, ...]]:
    return Counter((d["kind"], d["n"], json.dumps(d["payload"], sort_keys=True)) for d in docs)


async def source_events(dsn: str) -> Counter[tuple[object, ...]]:
    return event_rows([{**r, "payload": json.loads(r["payload"])} for r in await rows(dsn, "SELECT * FROM events")])


async def test_a_keyless_table_arrives_with_every_row_under_distinct_object_ids(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    await pg.execute(pg_dsn, KEYLESS)

    docs = await migrate_table(store, data_dir, pg_dsn, mongo_url, "events")

    assert event_rows(docs) == await source_events(pg_dsn)
    assert len(docs) == 4050
    assert all(isinstance(d["_id"], ObjectId) for d in docs)


async def test_a_cancelled_keyless_run_resumes_without_duplicates_keeping_the_ids_it_wrote(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    await pg.execute(pg_dsn, KEYLESS)
    spec = {"source": pg_dsn, "target": mongo_url, "batchSize": BATCH}
    cancelled = await cancel_after_first_commit(store, data_dir, spec)
    before = {d["_id"]: d for d in await fetch_all(mongo_url, "events")}
    assert 0 < len(before) < 4050

    again = await migrate(store, spec, data_dir)

    assert again.id == cancelled.id and again.status == "completed"
    assert any("resuming after" in e.message for e in await store.logs(again.id))
    docs = await fetch_all(mongo_url, "events")
    assert event_rows(docs) == await source_events(pg_dsn)
    assert all(before[i] == d for d in docs if (i := d["_id"]) in before)
    assert before.keys() <= {d["_id"] for d in docs}


async def test_a_cancelled_run_resumes_to_exactly_the_rows(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE orders (id int PRIMARY KEY, customer text, total double precision,"
                             " placed timestamptz)",
                     "INSERT INTO orders SELECT g, 'c' || (g % 97), g * 1.5, timestamptz '2024-05-01 00:00:00+00'"
                     " + g * interval '1 minute' FROM generate_series(1, 5000) g")
    spec = {"source": pg_dsn, "target": mongo_url, "batchSize": BATCH}
    cancelled = await cancel_after_first_commit(store, data_dir, spec)
    assert 0 < await count(mongo_url, "orders") < 5000

    again = await migrate(store, spec, data_dir)

    assert again.id == cancelled.id and again.status == "completed"
    assert any("resuming after" in e.message for e in await store.logs(again.id))
    assert await fetch_all(mongo_url, "orders") == [
        {"_id": r["id"], "customer": r["customer"], "total": r["total"], "placed": r["placed"]}
        for r in await rows(pg_dsn, "SELECT * FROM orders ORDER BY id")]
    assert await store.rejects(again.id) == []


@pytest.fixture
async def pg_dsn_back(new_pg_db: NewDatabase) -> str:
    return await new_pg_db()


async def test_postgres_to_mongo_to_postgres_gives_every_value_back(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, mongo_url: str, pg_dsn_back: str
) -> None:
    there = await migrate(store, {"source": source_dsn, "target": mongo_url, "tables": ["items"],
                                  "batchSize": BATCH}, data_dir)
    back = await migrate(store, {"source": mongo_url, "target": pg_dsn_back, "batchSize": BATCH}, data_dir)

    assert (there.status, back.status) == ("completed", "completed")
    source = await rows(source_dsn, "SELECT * FROM items ORDER BY id")
    expected = [{"_id": r["id"], **{c: None if r[c] is None else COLUMNS[c](r[c]) for c in COLUMNS}} for r in source]
    found = await rows(pg_dsn_back, "SELECT * FROM items ORDER BY _id")
    json_columns = {c for c, t in (await pg.column_types(pg_dsn_back, "items")).items() if t == "jsonb"}
    assert [{k: from_extended_json(v) if k in json_columns and v is not None else v for k, v in r.items()}
            for r in found] == expected


async def test_an_unreachable_mongodb_target_fails_quickly_naming_the_host(
    store: SqliteStateStore, data_dir: Path, source_dsn: str
) -> None:
    began = time.monotonic()

    with pytest.raises(EndpointError) as raised:
        await migrate(store, {"source": source_dsn, "target": "mongodb://127.0.0.1:1/x", "timeout": 2}, data_dir)

    assert time.monotonic() - began < 6
    assert "127.0.0.1:1" in raised.value.message
