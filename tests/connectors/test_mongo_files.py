"""CSV <-> MongoDB and SQLite <-> MongoDB: every row becomes a document and every document a row
with equal values; CSV rows (no key) get stable ObjectIds; nested fields become JSON text."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import Counter
from pathlib import Path

from bson import ObjectId

from service.store import SqliteStateStore
from tests.support.csvtext import read_csv, write_csv
from tests.support.mongodocs import (
    PERSON_FIELDS,
    Document,
    cancel_after_first_commit,
    fetch_all,
    from_extended_json,
    insert,
    people,
    with_nulls,
)
from tests.support.runs import migrate

UTC = dt.UTC
BATCH = 250
JSON_FIELDS = ("address", "prefs", "tags", "orders")
CSV_HEADER = ("sku", "name", "price", "qty", "added", "note")


def csv_rows(n: int) -> list[tuple[object, ...]]:
    """Rows of items.csv: text with quotes and commas, floats, integers, UTC-less timestamps (read as
    UTC), and a note that is NULL (empty field), an empty string (`""`) or text."""
    return [(f"SKU-{i:05d}", f'item "{i}", large' if i % 4 == 0 else f"item {i}", i * 0.25, i % 1000,
             f"2024-03-01 12:{i // 60 % 60:02d}:{i % 60:02d}", None if i % 3 == 0 else "" if i % 3 == 1 else f"n{i}")
            for i in range(1, n + 1)]


def as_document(row: tuple[object, ...]) -> Document:
    sku, name, price, qty, added, note = row
    return {"sku": sku, "name": name, "price": price, "qty": qty,
            "added": dt.datetime.fromisoformat(str(added)).replace(tzinfo=UTC), "note": note}


async def test_a_csv_file_becomes_a_collection_of_every_row_under_distinct_object_ids(
    store: SqliteStateStore, data_dir: Path, mongo_url: str
) -> None:
    rows = csv_rows(2000)
    write_csv(data_dir / "items.csv", CSV_HEADER, rows)

    migration = await migrate(store, {"source": "csv:///items.csv", "target": mongo_url, "batchSize": BATCH},
                              data_dir)

    assert migration.status == "completed"
    assert await store.rejects(migration.id) == []
    docs = await fetch_all(mongo_url, "items")
    assert sorted(({k: v for k, v in d.items() if k != "_id"} for d in docs), key=lambda d: d["sku"]) == [
        as_document(r) for r in rows]
    assert all(isinstance(d["_id"], ObjectId) for d in docs)
    assert len({d["_id"] for d in docs}) == 2000


async def test_a_cancelled_csv_import_resumes_with_the_same_ids_and_no_duplicates(
    store: SqliteStateStore, data_dir: Path, mongo_url: str
) -> None:
    rows = csv_rows(6000)
    write_csv(data_dir / "items.csv", CSV_HEADER, rows)
    spec = {"source": "csv:///items.csv", "target": mongo_url, "batchSize": BATCH}
    cancelled = await cancel_after_first_commit(store, data_dir, spec)
    before = {d["_id"]: d for d in await fetch_all(mongo_url, "items")}
    assert 0 < len(before) < 6000

    again = await migrate(store, spec, data_dir)

    assert again.id == cancelled.id and again.status == "completed"
    docs = await fetch_all(mongo_url, "items")
    assert Counter(d["sku"] for d in docs) == Counter(str(r[0]) for r in rows)
    assert all(before[d["_id"]] == d for d in docs if d["_id"] in before)


def parsed(column: str, text: str | None) -> object:
    """A CSV/SQLite field of a people export back as the value it stands for."""
    if text is None:
        return None
    if column in JSON_FIELDS:
        return from_extended_json(text)
    if column in ("age", "visits"):
        return int(text)
    if column == "score":
        return float(text)
    if column == "active":
        return {"true": True, "false": False, "1": True, "0": False}[str(text)]
    if column == "joined":
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return text


def expected_record(doc: Document) -> Document:
    return {**with_nulls(doc), "_id": str(doc["_id"])}


async def test_a_collection_exported_to_csv_has_a_line_per_document_with_nested_fields_as_json(
    store: SqliteStateStore, data_dir: Path, mongo_url: str
) -> None:
    docs = people(1000)
    await insert(mongo_url, "people", docs)

    migration = await migrate(store, {"source": mongo_url, "target": "csv:///export", "batchSize": BATCH}, data_dir)

    assert migration.status == "completed"
    assert [p.name for p in (data_dir / "export").iterdir() if not p.name.startswith(".migrator-")] == ["people.csv"]
    header, *records = read_csv(data_dir / "export" / "people.csv")
    assert sorted(str(h) for h in header) == sorted(PERSON_FIELDS)
    got = [{str(h): parsed(str(h), v) for h, v in zip(header, r)} for r in records]
    assert sorted(got, key=lambda d: str(d["_id"])) == [expected_record(d) for d in docs]


async def test_a_sqlite_table_becomes_a_collection_keyed_by_its_primary_key(
    store: SqliteStateStore, data_dir: Path, mongo_url: str
) -> None:
    rows = [(i, f'product "{i}", ü' if i % 5 == 0 else f"product {i}", i * 0.125, i % 17,
             f"2024-01-01 10:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}", i % 2, bytes([i % 256, 0, 255]),
             None if i % 3 == 0 else "" if i % 3 == 1 else f"note {i}") for i in range(1, 1501)]
    with sqlite3.connect(data_dir / "shop.db") as db:
        db.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, qty INTEGER,"
                   " added TIMESTAMP, ok BOOLEAN, raw BLOB, note TEXT)")
        db.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.close()

    migration = await migrate(store, {"source": "sqlite:///shop.db", "target": mongo_url, "batchSize": BATCH},
                              data_dir)

    assert migration.status == "completed"
    assert await store.rejects(migration.id) == []
    assert await fetch_all(mongo_url, "products") == [
        {"_id": i, "name": name, "price": price, "qty": qty,
         "added": dt.datetime.fromisoformat(str(added)).replace(tzinfo=UTC), "ok": bool(ok), "raw": raw, "note": note}
        for i, name, price, qty, added, ok, raw, note in rows]


async def test_a_collection_into_sqlite_has_a_row_per_document_with_nested_fields_as_json_text(
    store: SqliteStateStore, data_dir: Path, mongo_url: str
) -> None:
    docs = people(1000)
    await insert(mongo_url, "people", docs)

    migration = await migrate(store, {"source": mongo_url, "target": "sqlite:///out.db", "batchSize": BATCH},
                              data_dir)

    assert migration.status == "completed"
    with sqlite3.connect(data_dir / "out.db") as db:
        cursor = db.execute("SELECT * FROM people ORDER BY _id")
        names = [c[0] for c in cursor.description]
        got = [{n: parsed(n, v if not isinstance(v, int | float) else str(v)) for n, v in zip(names, r)}
               for r in cursor.fetchall()]
    db.close()
    assert got == [expected_record(d) for d in docs]
