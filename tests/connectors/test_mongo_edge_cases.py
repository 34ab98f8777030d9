"""MongoDB edge cases (the review fixes of c3e7031): replayed batches of microsecond dates, plain
and embedded; keyless `_id`s stable across batch sizes; a CSV `_id` column kept; onError stop and
skip_batch on refused documents; values BSON cannot hold; fields the sample did not see; a nested
majority under mixedTypes: reject; mongo.keys and mongo.objectIds; PostgreSQL arrays of
timestamptz, jsonb, uuid and numeric.

A crash mid-batch — the documents written, their checkpoint not — is made on purpose: the run
reaches MongoDB through a proxy that withholds the server's reply to one write, and the run is
cancelled once the server has done that write. (A plain cancel after a commit lands between
batches and leaves nothing to replay.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import struct
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from bson import Decimal128

from service.core.errors import InvalidInput
from service.runs.migration import Migration
from service.store.base import StateStore
from tests.support import pg
from tests.support.csvtext import write_csv
from tests.support.mongodocs import (
    Document,
    count,
    fetch_all,
    from_extended_json,
    insert,
    oid,
    real_mongo,
    rows,
)
from tests.support.proxy import Proxy, pipe
from tests.support.runs import migrate, prepare, stop

UTC = dt.UTC
MICROSECONDS = "timestamptz '2024-01-01 10:00:00.123456+00'"  # 123.456 ms: stored as 123 ms


def in_milliseconds(v: dt.datetime) -> dt.datetime:
    """A date as BSON holds it: truncated to the millisecond."""
    return v.replace(microsecond=v.microsecond // 1000 * 1000)


class WithholdingProxy(Proxy):
    """`async with WithholdingProxy(mongo_url, "insert", "orders", nth=2) as proxy:` — a TCP proxy
    to the URL's server (connect to `proxy.url`) that withholds the server's reply to the `nth`
    `command` on `collection`, counted over every connection: the server has done the write, the
    driver never hears of it. `withheld` is set once that reply has reached the proxy."""

    def __init__(self, url: str, command: str, collection: str, nth: int) -> None:
        self._parts = urlsplit(url)
        super().__init__(self._parts.hostname or "127.0.0.1", self._parts.port or 27017)
        name = collection.encode() + b"\x00"
        # The command's first BSON element: type string, the command's name, the collection's.
        self._pattern = b"\x02" + command.encode() + b"\x00" + struct.pack("<i", len(name)) + name
        self._nth = nth
        self._seen = 0
        self.withheld = asyncio.Event()
        self.url = ""

    async def __aenter__(self) -> WithholdingProxy:
        await super().__aenter__()
        self.url = urlunsplit(self._parts._replace(netloc=f"127.0.0.1:{self.port}", query="directConnection=true"))
        return self

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        hold = asyncio.Event()  # this connection's replies are withheld from now on
        tail = b""

        def to_server(data: bytes) -> bool:
            nonlocal tail
            window, start = tail + data, 0
            while (at := window.find(self._pattern, start)) >= 0:
                if at + len(self._pattern) > len(tail):  # not already counted with the last chunk
                    self._seen += 1
                    if self._seen == self._nth:
                        hold.set()  # before the command goes on: its reply cannot slip through
                start = at + 1
            tail = window[-len(self._pattern):]
            return True

        def to_client(data: bytes) -> bool:
            if hold.is_set():
                self.withheld.set()
            return not hold.is_set()

        await asyncio.gather(pipe(reader, up_writer, to_server), pipe(up_reader, writer, to_client),
                             return_exceptions=True)


async def crash_mid_batch(store: StateStore, data_dir: Path, spec: Mapping[str, object],
                          proxy: WithholdingProxy) -> Migration:
    """Run `spec` (its target `proxy.url`) until the server has done the write whose reply the
    proxy withholds, then cancel the run as Ctrl-C does: that batch's documents are in the target,
    its checkpoint is not. Fails the test if the run ends before, or does not stop."""
    migration = await prepare(store, spec, data_dir)
    task = asyncio.create_task(migration.run())
    withheld = asyncio.create_task(proxy.withheld.wait())
    try:
        await asyncio.wait([task, withheld], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    finally:
        withheld.cancel()
        await asyncio.gather(withheld, return_exceptions=True)
        task.cancel()
    await stop(task, migration, before="the withheld write")
    assert proxy.withheld.is_set(), "the proxy never withheld a reply: the run was cancelled by the timeout"
    return migration


def needs_a_proxyable_url(url: str) -> None:
    if urlsplit(url).port is None:
        pytest.skip("needs a MongoDB URL with an explicit host:port to proxy")


# -- 1. a replayed batch of microsecond dates -------------------------------------------------------
async def test_a_replayed_batch_of_microsecond_dates_is_recognised_and_every_row_is_stored_once_in_ms(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    needs_a_proxyable_url(mongo_url)
    await pg.execute(pg_dsn, "CREATE TABLE readings (id int PRIMARY KEY, at timestamptz)",
                     f"INSERT INTO readings SELECT g, {MICROSECONDS} + g * interval '1 second'"
                     " FROM generate_series(1, 1000) g")
    async with WithholdingProxy(mongo_url, "insert", "readings", nth=2) as proxy:
        spec = {"source": pg_dsn, "target": proxy.url, "batchSize": 250}
        crashed = await crash_mid_batch(store, data_dir, spec, proxy)
        assert await count(mongo_url, "readings") == 500  # batch 2 written, its checkpoint not

        again = await migrate(store, spec, data_dir)

    assert again.id == crashed.id and again.status == "completed"
    assert any("resuming after 250 records" in e.message for e in await store.logs(again.id))  # batch 2 replayed
    assert await store.rejects(again.id) == []
    source = await rows(pg_dsn, "SELECT id, at FROM readings ORDER BY id")
    assert {r["at"].microsecond % 1000 for r in source} == {456}
    assert await fetch_all(mongo_url, "readings") == [{"_id": r["id"], "at": in_milliseconds(r["at"])}
                                                      for r in source]
    assert again.tables["readings"].written == 1000


# -- 2. a replayed batch of embedded rows ---------------------------------------------------------
async def test_a_replayed_batch_of_embedded_rows_with_microsecond_dates_adds_no_row_twice(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    needs_a_proxyable_url(mongo_url)
    await pg.execute(pg_dsn, "CREATE TABLE orders (id int PRIMARY KEY, customer text)",
                     "CREATE TABLE order_items (id int PRIMARY KEY, order_id int, sku text, at timestamptz)",
                     "INSERT INTO orders SELECT g, 'c' || g FROM generate_series(1, 50) g",
                     f"INSERT INTO order_items SELECT g, g % 50 + 1, 's' || g, {MICROSECONDS} + g * interval '1 minute'"
                     " FROM generate_series(1, 400) g")
    embed = {"order_items": {"into": "orders", "foreignKey": "order_id", "as": "items"}}
    # The embedded rows are written by replacing their parents: the 2nd `update` of orders is the
    # child table's 2nd batch, after its 1st was checkpointed.
    async with WithholdingProxy(mongo_url, "update", "orders", nth=2) as proxy:
        spec = {"source": pg_dsn, "target": proxy.url, "batchSize": 50, "mongo": {"embed": embed}}
        crashed = await crash_mid_batch(store, data_dir, spec, proxy)
        assert sum(len(d.get("items", [])) for d in await fetch_all(mongo_url, "orders")) == 100

        again = await migrate(store, spec, data_dir)

    assert again.id == crashed.id and again.status == "completed"
    assert any("resuming after 50 records" in e.message
               for e in await store.logs(again.id) if e.table == "order_items")
    assert await store.rejects(again.id) == []
    items = await rows(pg_dsn, "SELECT * FROM order_items ORDER BY id")
    assert {i["at"].microsecond % 1000 for i in items} == {456}
    assert await fetch_all(mongo_url, "orders") == [
        {"_id": o["id"], "customer": o["customer"],
         "items": [{"id": i["id"], "sku": i["sku"], "at": in_milliseconds(i["at"])}
                   for i in items if i["order_id"] == o["id"]]}
        for o in await rows(pg_dsn, "SELECT * FROM orders ORDER BY id")]


# -- 3. keyless ids across batch sizes ------------------------------------------------------------
async def test_a_keyless_csv_import_resumed_with_another_batch_size_holds_each_line_once(
    store: StateStore, data_dir: Path, mongo_url: str
) -> None:
    needs_a_proxyable_url(mongo_url)
    (data_dir / "export").mkdir()
    lines = [(i, f"word {i % 7}") for i in range(1, 1001)]
    write_csv(data_dir / "export" / "lines.csv", ("n", "word"), lines)
    async with WithholdingProxy(mongo_url, "insert", "lines", nth=2) as proxy:
        spec = {"source": "csv:///export", "target": proxy.url, "batchSize": 250}
        crashed = await crash_mid_batch(store, data_dir, spec, proxy)
        before = {d["_id"]: d for d in await fetch_all(mongo_url, "lines")}
        assert len(before) == 500  # lines 251-500 written, their checkpoint not

        # batchSize is not part of the migration's identity: the same migration resumes.
        again = await migrate(store, {**spec, "batchSize": 100}, data_dir)

    assert again.id == crashed.id and again.status == "completed"
    assert await store.rejects(again.id) == []
    docs = await fetch_all(mongo_url, "lines")
    assert sorted((d["n"], d["word"]) for d in docs) == lines
    assert all(before[d["_id"]] == d for d in docs if d["_id"] in before)


# -- 4. a CSV `_id` column ------------------------------------------------------------------------
async def test_a_csv_id_column_becomes_the_documents_ids(
    store: StateStore, data_dir: Path, mongo_url: str
) -> None:
    users = [(f"user-{i:04d}", f"name {i}") for i in range(1, 301)]
    write_csv(data_dir / "users.csv", ("_id", "name"), users)

    run = await migrate(store, {"source": "csv:///users.csv", "target": mongo_url, "batchSize": 100}, data_dir)

    assert run.status == "completed"
    assert await store.rejects(run.id) == []
    assert await fetch_all(mongo_url, "users") == [{"_id": i, "name": n} for i, n in users]


# -- 5. onError with documents the target refuses -------------------------------------------------
ITEMS = ("CREATE TABLE items (id int PRIMARY KEY, name text)",
         "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g")
HELD = {"_id": 250, "name": "already here"}  # the target holds this _id before the run


async def test_on_error_stop_fails_the_run_naming_the_row_the_target_refused(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    await pg.execute(pg_dsn, *ITEMS)
    await insert(mongo_url, "items", [HELD])
    run = await prepare(store, {"source": pg_dsn, "target": mongo_url, "batchSize": 100, "onError": "stop"},
                        data_dir)

    with pytest.raises(InvalidInput) as raised:
        await run.run()

    assert run.status == "failed"
    for message in (raised.value.message, str(run.error)):
        assert "of items was refused" in message and "duplicate key" in message and "_id 250" in message, message
    docs = await fetch_all(mongo_url, "items")
    assert HELD in docs
    assert all(d["_id"] <= 300 for d in docs), "batches after the refused one were written"


async def test_on_error_skip_batch_rejects_the_whole_batch_of_a_refused_document_and_loads_the_others(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    await pg.execute(pg_dsn, *ITEMS)
    await insert(mongo_url, "items", [HELD])

    run = await migrate(store, {"source": pg_dsn, "target": mongo_url, "batchSize": 100, "onError": "skip_batch"},
                        data_dir)

    assert run.status == "completed"
    rejects = await store.rejects(run.id)
    assert sorted((r.row, r.key, r.rule) for r in rejects) == [
        (i, str(i), "duplicate_key" if i == 250 else "skip_batch") for i in range(201, 301)]
    assert await fetch_all(mongo_url, "items") == [
        HELD if i == 250 else {"_id": i, "name": f"item {i}"} for i in range(1, 1001) if not 201 <= i <= 300 or i == 250]
    assert (run.tables["items"].written, run.tables["items"].failed) == (900, 100)


# -- 6. a value BSON cannot hold ------------------------------------------------------------------
FORTY_DIGITS = "1234567890123456789012345678901234567890"


async def test_a_numeric_of_40_digits_is_a_reject_naming_the_column_and_the_other_rows_load(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    # The other rows' amounts are NULL: the stand-in refuses every Decimal128, a real server not.
    await pg.execute(pg_dsn, "CREATE TABLE amounts (id int PRIMARY KEY, amount numeric, label text)",
                     "INSERT INTO amounts SELECT g * 10, NULL, 'a' || g FROM generate_series(1, 10) g",
                     f"UPDATE amounts SET amount = {FORTY_DIGITS} WHERE id = 50")

    run = await migrate(store, {"source": pg_dsn, "target": mongo_url, "batchSize": 4}, data_dir)

    assert run.status == "completed"
    [reject] = await store.rejects(run.id)
    assert (reject.column, reject.value, reject.rule) == ("amount", FORTY_DIGITS, "type")
    assert "Decimal128" in reject.message and "34 digits" in reject.message, reject.message
    assert await fetch_all(mongo_url, "amounts") == [{"_id": g * 10, "amount": None, "label": f"a{g}"}
                                                     for g in range(1, 11) if g != 5]
    # `row` is the place in the read order (not the key's order): the key is what names the row.
    assert reject.key == "50"


# -- 7. a field the sample did not see ------------------------------------------------------------
async def test_a_field_missing_from_the_sample_becomes_a_column_or_a_reject_naming_it_never_dropped(
    store: StateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    docs: list[Document] = [{"_id": oid(i), "n": i, "name": f"n{i}"} for i in range(2000)]
    docs[1500]["surprise"] = "boo"  # one document in 2000: a sample of 5 ($sample, random) rarely sees it
    await insert(mongo_url, "things", docs)

    run = await migrate(store, {"source": mongo_url, "target": pg_dsn, "batchSize": 250,
                                "mongo": {"sampleSize": 5}}, data_dir)

    assert run.status == "completed"
    rejects = await store.rejects(run.id)
    found = await rows(pg_dsn, "SELECT * FROM things ORDER BY _id")
    if "surprise" in await pg.column_types(pg_dsn, "things"):  # the sample saw it
        assert rejects == []
        assert found == [{**d, "_id": str(d["_id"]), "surprise": d.get("surprise")} for d in docs]
    else:
        assert [(r.key, r.column, r.rule) for r in rejects] == [(str(oid(1500)), "surprise", "unknown_field")]
        assert "surprise" in rejects[0].message
        assert found == [{**d, "_id": str(d["_id"])} for d in docs if "surprise" not in d]


# -- 8. mixedTypes: reject with a nested majority -------------------------------------------------
async def test_with_mixed_types_reject_and_mostly_objects_the_scalar_rows_are_rejects_and_objects_load_as_jsonb(
    store: StateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    docs = [{"_id": oid(i), "meta": {"k": i, "tags": ["a", i]} if i % 10 else f"n/a {i}"} for i in range(1000)]
    await insert(mongo_url, "events", docs)

    run = await migrate(store, {"source": mongo_url, "target": pg_dsn, "batchSize": 250,
                                "mongo": {"mixedTypes": "reject"}}, data_dir)

    assert run.status == "completed"
    rejects = await store.rejects(run.id)
    assert sorted(r.key or "" for r in rejects) == sorted(str(d["_id"]) for d in docs if isinstance(d["meta"], str))
    assert all(r.column == "meta" and "meta" in r.message for r in rejects), rejects[:3]
    assert (await pg.column_types(pg_dsn, "events"))["meta"] == "jsonb"
    found = await rows(pg_dsn, "SELECT _id, meta FROM events ORDER BY _id")
    assert [(r["_id"], from_extended_json(r["meta"])) for r in found] == [
        (str(d["_id"]), d["meta"]) for d in docs if isinstance(d["meta"], dict)]


# -- 9. mongo.keys --------------------------------------------------------------------------------
async def test_with_mongo_keys_upsert_matches_existing_documents_by_email_not_by_id(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE people (id int PRIMARY KEY, email text, name text)",
                     "INSERT INTO people SELECT g, 'p' || g || '@example.com', 'name ' || g"
                     " FROM generate_series(1, 300) g")
    spec = {"source": pg_dsn, "target": mongo_url, "batchSize": 100, "mode": "upsert",
            "mongo": {"keys": {"people": ["email"]}}}
    first = await migrate(store, spec, data_dir)
    # The same people again under new ids, renamed.
    await pg.execute(pg_dsn, "DELETE FROM people",
                     "INSERT INTO people SELECT g + 1000, 'p' || g || '@example.com', 'renamed ' || g"
                     " FROM generate_series(1, 300) g")

    second = await migrate(store, spec, data_dir)

    assert (first.status, second.status) == ("completed", "completed")
    assert await store.rejects(first.id) == [] and await store.rejects(second.id) == []
    assert await fetch_all(mongo_url, "people") == [
        {"_id": g, "email": f"p{g}@example.com", "name": f"renamed {g}"} for g in range(1, 301)]


# -- 10. mongo.objectIds --------------------------------------------------------------------------
OBJECT_ID_SQL = "'65a1b2c3' || lpad(to_hex(g), 16, '0')"  # oid(g) as 24 hex digits


async def test_mongo_object_ids_stores_the_declared_text_column_as_object_ids(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE orders (id int PRIMARY KEY, customer_id text, total int)",
                     f"INSERT INTO orders SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE {OBJECT_ID_SQL} END, g"
                     " FROM generate_series(1, 300) g")

    run = await migrate(store, {"source": pg_dsn, "target": mongo_url, "batchSize": 100,
                                "mongo": {"objectIds": {"orders": ["customer_id"]}}}, data_dir)

    assert run.status == "completed"
    assert await store.rejects(run.id) == []
    assert await fetch_all(mongo_url, "orders") == [
        {"_id": g, "customer_id": None if g % 10 == 0 else oid(g), "total": g} for g in range(1, 301)]


async def test_mongo_object_ids_rejects_a_row_whose_value_is_not_24_hex_digits_naming_the_column(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE orders (id int PRIMARY KEY, customer_id text, total int)",
                     f"INSERT INTO orders SELECT g, {OBJECT_ID_SQL}, g FROM generate_series(1, 300) g",
                     "UPDATE orders SET customer_id = 'cust-42' WHERE id = 42")

    run = await migrate(store, {"source": pg_dsn, "target": mongo_url, "batchSize": 100,
                                "mongo": {"objectIds": {"orders": ["customer_id"]}}}, data_dir)

    assert run.status == "completed"
    [reject] = await store.rejects(run.id)
    assert (reject.column, reject.value, reject.rule) == ("customer_id", "cust-42", "type")
    assert "customer_id" in reject.message and "ObjectId" in reject.message, reject.message
    assert await fetch_all(mongo_url, "orders") == [
        {"_id": g, "customer_id": oid(g), "total": g} for g in range(1, 301) if g != 42]
    assert reject.key == "42"  # the row's key names it (its `row` is its place in the read order)


# -- 11. PostgreSQL arrays ------------------------------------------------------------------------
async def migrate_array(store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str, pg_type: str,
                        values: list[str]) -> tuple[list[Document], list[Document]]:
    """Table `arrays (id, a <pg_type>)` holding `values` (SQL literals) migrated: the source rows
    (as asyncpg reads them) and the documents."""
    await pg.execute(pg_dsn, f"CREATE TABLE arrays (id int PRIMARY KEY, a {pg_type})",
                     "INSERT INTO arrays VALUES " + ", ".join(f"({i}, {v})" for i, v in enumerate(values, 1)))
    run = await migrate(store, {"source": pg_dsn, "target": mongo_url, "batchSize": 100}, data_dir)
    assert run.status == "completed"
    assert await store.rejects(run.id) == []
    return await rows(pg_dsn, "SELECT id, a FROM arrays ORDER BY id"), await fetch_all(mongo_url, "arrays")


def as_documents(source: list[Document], element: Any) -> list[Document]:
    return [{"_id": r["id"], "a": None if r["a"] is None else [None if v is None else element(v) for v in r["a"]]}
            for r in source]


async def test_a_timestamptz_array_becomes_an_array_of_utc_dates(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    source, docs = await migrate_array(store, data_dir, pg_dsn, mongo_url, "timestamptz[]", [
        "ARRAY['2024-01-01 10:00:00.123+00', NULL, '2024-06-30 23:59:59.999+02']::timestamptz[]",
        "ARRAY['1999-12-31 23:59:59+00']::timestamptz[]", "'{}'", "NULL"])

    assert docs == as_documents(source, lambda v: v)
    assert docs[0]["a"] == [dt.datetime(2024, 1, 1, 10, 0, 0, 123000, UTC), None,
                            dt.datetime(2024, 6, 30, 21, 59, 59, 999000, UTC)]


async def test_a_jsonb_array_becomes_an_array_of_nested_values(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    source, docs = await migrate_array(store, data_dir, pg_dsn, mongo_url, "jsonb[]", [
        """ARRAY['{"a": 1, "b": {"c": [1, "x,}", null, true]}}'::jsonb, '[1, 2]', '"text \\"quoted\\""', NULL]""",
        """ARRAY['{"name": "Zoë", "n": 2.5}']::jsonb[]""", "'{}'", "NULL"])

    assert docs == as_documents(source, json.loads)
    assert docs[0]["a"] == [{"a": 1, "b": {"c": [1, "x,}", None, True]}}, [1, 2], 'text "quoted"', None]


@real_mongo  # the stand-in loses binary subtypes: UUIDs come back as bytes
async def test_a_uuid_array_becomes_an_array_of_uuids(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    source, docs = await migrate_array(store, data_dir, pg_dsn, mongo_url, "uuid[]", [
        "ARRAY['0f8fad5b-d9cb-469f-a165-70867728950e', NULL, '7c9e6679-7425-40de-944b-e07fc1f90ae7']::uuid[]",
        "'{}'", "NULL"])

    assert docs == as_documents(source, lambda v: v)
    assert docs[0]["a"] == [uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"), None,
                            uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")]


@real_mongo  # the stand-in refuses Decimal128
async def test_a_numeric_array_becomes_an_array_of_exact_decimal128(
    store: StateStore, data_dir: Path, pg_dsn: str, mongo_url: str
) -> None:
    source, docs = await migrate_array(store, data_dir, pg_dsn, mongo_url, "numeric[]", [
        "ARRAY[1.50, -0.001, NULL, 12345678901234567890.123]::numeric[]", "'{}'", "NULL"])

    assert docs == as_documents(source, lambda v: Decimal128(v))
    assert docs[0]["a"] == [Decimal128(Decimal("1.50")), Decimal128(Decimal("-0.001")), None,
                            Decimal128(Decimal("12345678901234567890.123"))]
