"""MongoDB documents for tests, and reading/writing them the way a user checks a migration: with a
driver client of the test's own (aware UTC dates, standard UUIDs), closed after each call.

    docs = people(2000)                      # ObjectId _id, scalars, int64, dates, nested, arrays, gaps
    await insert(url, "people", docs)
    assert await fetch_all(url, "people") == docs     # both in _id order
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from bson import ObjectId, json_util
from bson.json_util import CANONICAL_JSON_OPTIONS, JSONOptions
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from service.runs.migration import Migration
from service.store.base import StateStore
from tests.support.runs import run_until_committed, stop

Document = dict[str, Any]
Test = Callable[..., Any]
UTC = dt.UTC
EPOCH = dt.datetime(2024, 1, 1, tzinfo=UTC)
_EXTENDED = JSONOptions(tz_aware=True, tzinfo=UTC)

# Every field `person` may write, in the order a relational table lists them.
PERSON_FIELDS = ("_id", "name", "age", "visits", "score", "active", "joined", "email", "nickname", "address",
                 "prefs", "tags", "orders")


def real_mongo(test: Test) -> Test:
    """Marks a test that needs what the nx-27017 stand-in lacks (Decimal128, binary subtypes,
    transactions): it runs only when TEST_MONGO_URL names a real server."""
    skip = pytest.mark.skipif(not os.environ.get("TEST_MONGO_URL"), reason="needs a real MongoDB (TEST_MONGO_URL)")
    marked: Test = pytest.mark.real_mongo(skip(test))
    return marked


def oid(i: int) -> ObjectId:
    """The i-th ObjectId of a test collection: ascending with i, the same in every run."""
    return ObjectId(f"65a1b2c3{i:016x}")


def person(i: int) -> Document:
    """A document of every shape a migration must carry: ObjectId `_id`, text (quotes, commas,
    non-ASCII), int32, int64, double, bool, a date with milliseconds, null, a nested object (absent
    from some documents), a second nested object, an array of strings, an array of objects holding
    dates (empty in some), and fields present in only some documents."""
    doc: Document = {
        "_id": oid(i),
        "name": f'Zoë "{i}", née Łódź' if i % 4 == 0 else f"person {i}",
        "age": 18 + i % 70,
        "visits": 3_000_000_000 + i,  # int64
        "score": i / 8 + 0.1,
        "active": i % 2 == 0,
        "joined": EPOCH + dt.timedelta(milliseconds=i * 86_400_123),
        "email": None if i % 5 == 0 else f"p{i}@example.com",
        "address": {"city": f"City {i % 13}", "zip": f"{10000 + i}"},
        "prefs": {"lang": ("en", "de", "fr")[i % 3], "news": i % 3 == 0},
        "tags": [f"t{i % 5}", f"t{i % 7}"],
        "orders": [{"sku": f"SKU-{i}-{j}", "qty": j + 1, "at": EPOCH + dt.timedelta(days=i, milliseconds=j)}
                   for j in range(i % 3)],
    }
    if i % 3 == 0:
        doc["nickname"] = f"nick {i}"
    if i % 7 == 0:
        del doc["score"]
    if i % 11 == 0:
        del doc["address"]
    return doc


def people(n: int, start: int = 0) -> list[Document]:
    return [person(i) for i in range(start, start + n)]


def with_nulls(doc: Document, fields: Iterable[str] = PERSON_FIELDS) -> Document:
    """`doc` as it comes back through a relational table: every missing field is null."""
    return {f: doc.get(f) for f in fields}


def from_extended_json(text: str) -> Any:
    """A JSON column's text read as MongoDB Extended JSON ({"$date": …} → an aware datetime …)."""
    return json_util.loads(text, json_options=_EXTENDED)


def id_text(value: object) -> str:
    """A canonical, order-independent text of an `_id` (sub-documents compare by content)."""
    return json_util.dumps(value, json_options=CANONICAL_JSON_OPTIONS, sort_keys=True)


@asynccontextmanager
async def database(url: str) -> AsyncIterator[AsyncDatabase[Document]]:
    """The URL's database through a client of its own, closed on exit."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(url, tz_aware=True, uuidRepresentation="standard",
                                                          serverSelectionTimeoutMS=10_000)
    try:
        yield client.get_default_database()
    finally:
        await client.close()


async def insert(url: str, collection: str, docs: Sequence[Document], chunk: int = 1000) -> None:
    async with database(url) as db:
        for i in range(0, len(docs), chunk):
            await db[collection].insert_many([dict(d) for d in docs[i:i + chunk]])


async def fetch_all(url: str, collection: str) -> list[Document]:
    """Every document of `collection`, in `_id` order (sorted here: the stand-in sorts only some
    queries by `_id`)."""
    async with database(url) as db:
        docs = [d async for d in db[collection].find({})]
    return sorted(docs, key=lambda d: id_order(d["_id"]))


def id_order(value: object) -> tuple[int, Any]:
    """A sort key of `_id`s: ObjectIds by their hex, numbers by value, text, then the rest."""
    if isinstance(value, ObjectId):
        return (0, str(value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, id_text(value))


async def count(url: str, collection: str) -> int:
    async with database(url) as db:
        return int(await db[collection].count_documents({}))


async def rows(dsn: str, sql: str, *args: object) -> list[Document]:
    """A PostgreSQL query's rows as documents (column → value, as asyncpg decodes them)."""
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def cancel_after_first_commit(store: StateStore, data_dir: Path, spec: Mapping[str, object]) -> Migration:
    """Start the migration of `spec`, cancel its task as soon as a batch is committed (as Ctrl-C
    does) and return it once the run has stopped. Fails the test — instead of hanging it — when
    the run does not stop within STOP_SECONDS of the cancel, or ended before it."""
    migration, task = await run_until_committed(store, spec, data_dir)
    await stop(task, migration, before="it could be cancelled; use more rows")
    return migration
