"""The seed guide's labs over the API: initialize → plan → execute → summary → log, against a
real PostgreSQL, ending with exactly the source rows in the target."""

from __future__ import annotations

from collections.abc import Callable

from pymongo import AsyncMongoClient

from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.api import Api
from tests.support.bigtable import create_big_table


async def test_the_seed_flow_migrates_every_row_and_reports_it(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, 12_000, table="users")
    await create_big_table(source, 3_000, table="products")

    init = await api.post("/api/migrations/initialize", {"sourceDB": source, "targetDB": target})
    assert init["message"] == "Migration manager initialized successfully"
    assert init["migration"]["status"] == "initialized"

    plan = (await api.post("/api/migrations/plan", {"tables": ["users", "products"], "batchSize": 5000}))["plan"]
    assert [t["name"] for t in plan["tables"]] == ["users", "products"]
    assert [t["totalRecords"] for t in plan["tables"]] == [12_000, 3_000]
    assert plan["totalRecords"] == 15_000 and plan["order"] == ["users", "products"]
    assert plan["estimatedSeconds"] > 0
    assert {"name": "id", "type": "integer", "nullable": False}.items() <= plan["tables"][0]["columns"][0].items()
    assert "transformations" in plan and "validationRules" in plan

    started = await api.post("/api/migrations/execute", {}, status=202)
    assert started["message"] == "Migration started"

    summary = await api.wait_status("completed")
    assert summary["totalRecords"] == 15_000
    assert summary["migratedCount"] == 15_000 and summary["failedCount"] == 0
    assert summary["progress"] == 100
    assert summary["startTime"].endswith("Z") and summary["endTime"].endswith("Z")
    assert isinstance(summary["duration"], str)
    assert [(t["name"], t["migratedCount"]) for t in summary["tables"]] == [("users", 12_000), ("products", 3_000)]

    log = await api.get("/api/migrations/log")
    assert isinstance(log, list)
    messages = [e["message"] for e in log]
    assert "Batch 2: 5000 records migrated" in messages
    assert any(m.startswith("Validation: all") for m in messages)
    assert all({"timestamp", "level", "message", "table"} <= e.keys() for e in log)

    assert await pg.row_multiset(target, "users") == await pg.row_multiset(source, "users")
    assert await pg.count_rows(target, "products") == 3_000


async def test_log_filters_by_level_table_limit_and_after(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, 2_000, table="a")
    await create_big_table(source, 1_000, table="b")
    await api.start(source, target, tables=["a", "b"], batchSize=500)
    await api.wait_status("completed")

    every = await api.get("/api/migrations/log")
    only_b = await api.get("/api/migrations/log?table=b")
    assert only_b and all(e["table"] == "b" for e in only_b)
    assert len(await api.get("/api/migrations/log?limit=3")) == 3
    after = await api.get(f"/api/migrations/log?after={every[2]['id']}")
    assert after == every[3:]
    assert await api.get("/api/migrations/log?level=error") == []

    deleted = await api.call("DELETE", "/api/migrations/log")
    assert deleted["deleted"] == len(every)
    assert await api.get("/api/migrations/log") == []


async def test_history_lists_migrations_newest_first(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, 100, table="t")
    first = await api.start(source, target, tables=["t"])
    await api.wait_status("completed", migration=first)
    second = (await api.post("/api/migrations/initialize", {"sourceDB": source, "targetDB": target}))["migration"]
    history = (await api.get("/api/migrations"))["migrations"]
    assert [m["id"] for m in history][:2] == [second["id"], first]
    one = await api.get(f"/api/migrations/{first}")
    assert one["migration"]["status"] == "completed" and one["summary"]["migratedCount"] == 100


async def test_the_seed_labs_mongodb_to_mongodb_flow(api: Api, new_mongo_db: Callable[[], str]) -> None:
    """Lab 1–3 as written: two MongoDB databases, initialize → plan → execute → summary."""
    source, target = new_mongo_db(), new_mongo_db()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(source)
    try:
        db = client.get_default_database()
        await db.users.insert_many([{"_id": i, "email": f"u{i}@example.com", "tags": ["a"]} for i in range(7000)])
        await db.products.insert_many([{"name": f"p{i}", "price": i * 1.5} for i in range(1200)])
    finally:
        await client.close()

    init = await api.post("/api/migrations/initialize", {"sourceDB": source, "targetDB": target})
    assert init["message"] == "Migration manager initialized successfully"
    plan = (await api.post("/api/migrations/plan", {"tables": ["users", "products"]}))["plan"]
    assert plan["totalRecords"] == 8200
    await api.post("/api/migrations/execute", {}, status=202)
    summary = await api.wait_status("completed")
    assert (summary["migratedCount"], summary["failedCount"]) == (8200, 0)

    client = AsyncMongoClient(target)
    try:
        db = client.get_default_database()
        assert await db.users.count_documents({}) == 7000
        assert await db.users.find_one({"_id": 6999}) == {"_id": 6999, "email": "u6999@example.com", "tags": ["a"]}
        assert await db.products.count_documents({}) == 1200
    finally:
        await client.close()
