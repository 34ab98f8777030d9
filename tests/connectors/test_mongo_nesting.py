"""Nested MongoDB data as related tables: arrays of objects become child tables (`nested:
tables`), and child rows become arrays inside their parents (`embed`, PG→Mongo)."""

from __future__ import annotations

from pathlib import Path

from pymongo import AsyncMongoClient

from service.store.base import StateStore
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.runs import migrate

ORDERS = 300


def order(i: int) -> dict[str, object]:
    return {"_id": i, "customer": f"c{i}", "items": [{"sku": f"s{i}-{j}", "qty": j} for j in range(i % 4)]}


async def test_arrays_of_objects_become_a_child_table_keyed_by_parent_and_position(
    store: StateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_url)
    try:
        await client.get_default_database().orders.insert_many([order(i) for i in range(1, ORDERS + 1)])
    finally:
        await client.close()

    run = await migrate(store, {"source": mongo_url, "target": pg_dsn, "batchSize": 40,
                                "mongo": {"nestedFields": {"items": "tables"}}}, data_dir)

    assert run.status == "completed"
    assert list(run.tables) == ["orders", "orders_items"]  # the parent first
    assert await pg.column_types(pg_dsn, "orders") == {"_id": "bigint", "customer": "text"}
    rows = await pg.fetch(pg_dsn, "SELECT orders_id, position, sku, qty FROM orders_items ORDER BY 1, 2")
    expected = [(i, j, f"s{i}-{j}", j) for i in range(1, ORDERS + 1) for j in range(i % 4)]
    assert rows == expected
    assert await pg.primary_key(pg_dsn, "orders_items") == ["orders_id", "position"]


async def test_child_rows_are_embedded_in_their_parent_documents_and_orphans_rejected(
    store: StateStore, data_dir: Path, new_pg_db: NewDatabase, mongo_url: str
) -> None:
    source = await new_pg_db()
    await pg.execute(
        source,
        "CREATE TABLE orders (id int PRIMARY KEY, customer text)",
        "CREATE TABLE order_items (id int PRIMARY KEY, order_id int, sku text)",
        "INSERT INTO orders SELECT g, 'c' || g FROM generate_series(1, 200) g",
        # order 0 does not exist: those lines are orphans
        "INSERT INTO order_items SELECT g, g % 201, 's' || g FROM generate_series(1, 600) g",
    )
    spec = {"source": source, "target": mongo_url, "batchSize": 50,
            "mongo": {"embed": {"order_items": {"into": "orders", "foreignKey": "order_id", "as": "items"}}}}

    run = await migrate(store, spec, data_dir)

    assert run.status == "completed"
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_url)
    try:
        db = client.get_default_database()
        assert "order_items" not in await db.list_collection_names()
        seven = await db.orders.find_one({"_id": 7})
    finally:
        await client.close()
    assert seven == {"_id": 7, "customer": "c7", "items": [{"id": 7, "sku": "s7"}, {"id": 208, "sku": "s208"},
                                                           {"id": 409, "sku": "s409"}]}
    rejects = await store.rejects(run.id)
    assert sorted(int(str(r.key)) for r in rejects) == [201, 402]
    assert {r.rule for r in rejects} == {"no_parent"}
    assert run.tables["order_items"].written == 598
