"""A real multi-table schema (foreign keys, a self-reference, a cycle) through plan, execute and
verify: the plan's order is right, the migration succeeds with the keys rebuilt, verification
says OK — and after one value is changed, one row deleted and one added in the target, it names
each of them and no other table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.api import AUTH, Api
from tests.support.cli import Cli
from tests.support.shop import COUNTS, TABLES, create_shop

CHILDREN_FIRST = ["order_items", "employees", "orders", "departments", "products", "users"]


@pytest.fixture
async def shop(new_pg_db: NewDatabase) -> tuple[str, str]:
    source, target = await new_pg_db(), await new_pg_db()
    await create_shop(source)
    return source, target


async def test_the_plan_orders_parents_first_and_explains_the_self_reference_and_the_cycle(
    api: Api, shop: tuple[str, str]
) -> None:
    source, target = shop
    await api.post("/api/migrations/initialize", {"sourceDB": source, "targetDB": target})
    plan = (await api.post("/api/migrations/plan", {"tables": CHILDREN_FIRST}))["plan"]

    order = plan["order"]
    assert sorted(order) == sorted(TABLES)
    for child, parent in (("orders", "users"), ("order_items", "orders"), ("order_items", "products")):
        assert order.index(parent) < order.index(child), order
    tables = {t["name"]: t for t in plan["tables"]}
    assert sorted(tables["order_items"]["dependsOn"]) == ["orders", "products"]
    assert tables["employees"]["dependsOn"] == ["departments"]  # itself left out
    notes = " ".join(plan["orderNotes"])
    assert "employees.manager_id → employees: a self-reference" in notes
    assert "cycle" in notes and "departments" in notes and "employees" in notes
    assert {t: tables[t]["totalRecords"] for t in TABLES} == COUNTS
    assert plan["totalRecords"] == sum(COUNTS.values())
    assert {c["name"]: c["type"] for c in tables["products"]["targetColumns"]} == {
        "id": "integer", "sku": "text", "price": "numeric(10,2)", "tags": "jsonb"}
    assert "2 foreign key(s)" in tables["order_items"]["create"] and tables["order_items"]["targetExists"] is False
    assert plan["estimate"]["method"] == "probe" and plan["estimate"]["table"] == "order_items"
    assert plan["estimatedSeconds"] > 0


async def migrate_shop(api: Api, source: str, target: str, **spec: Any) -> dict[str, Any]:
    await api.start(source, target, tables=CHILDREN_FIRST, batchSize=250, **spec)
    return await api.wait_status("completed", "failed", timeout=120)


async def test_the_migration_rebuilds_keys_and_indexes_and_verifies_ok(api: Api, shop: tuple[str, str]) -> None:
    source, target = shop
    summary = await migrate_shop(api, source, target, parallelTables=2, verify="deep")

    assert summary["status"] == "completed", summary
    assert summary["estimatedSeconds"] > 0 and summary["estimateRatio"] > 0
    for table, n in COUNTS.items():
        assert await pg.count_rows(target, table) == n
    keys = await pg.fetch(target, "SELECT conrelid::regclass::text, conname, convalidated FROM pg_constraint "
                                  "WHERE contype = 'f' ORDER BY 1, 2")
    assert keys == [("departments", "departments_head_fkey", True), ("employees", "employees_department_id_fkey", True),
                    ("employees", "employees_manager_id_fkey", True), ("order_items", "order_items_order_id_fkey", True),
                    ("order_items", "order_items_product_id_fkey", True), ("orders", "orders_user_id_fkey", True)]
    assert await pg.fetchval(target, "SELECT indexdef FROM pg_indexes WHERE indexname = 'users_email_key'") == (
        "CREATE UNIQUE INDEX users_email_key ON public.users USING btree (email)")
    report = (await api.get("/api/migrations/report"))["report"]
    assert report["ok"] is True and report["deep"] is True, report
    assert {t["name"]: (t["targetCount"], t["match"], t["checksumMatch"]) for t in report["tables"]} == {
        t: (n, True, True) for t, n in COUNTS.items()}


async def test_verify_names_the_changed_the_deleted_and_the_added_row_and_no_other_table(
    api: Api, shop: tuple[str, str]
) -> None:
    source, target = shop
    assert (await migrate_shop(api, source, target))["status"] == "completed"
    await pg.execute(target, "UPDATE products SET price = 99.99 WHERE id = 17",
                     "DELETE FROM order_items WHERE order_id = 500 AND product_id = 1 + (500 * 7 + 1) % 80",
                     "INSERT INTO users VALUES (301, 'new@example.com', 'New')")

    report = (await api.post("/api/migrations/verify", {"deep": True}))["report"]

    assert report["ok"] is False
    by_name = {t["name"]: t for t in report["tables"]}
    bad = {name for name, t in by_name.items() if not t["ok"]}
    assert bad == {"products", "order_items", "users"}
    assert (by_name["products"]["different"], by_name["products"]["missing"], by_name["products"]["extra"]) == (
        ["17"], [], [])
    assert by_name["products"]["match"] is True and by_name["products"]["checksumMatch"] is False
    assert by_name["order_items"]["missing"] == [f"500,{1 + (500 * 7 + 1) % 80}"]
    assert by_name["order_items"]["targetCount"] == 2999 and by_name["order_items"]["match"] is False
    assert by_name["users"]["extra"] == ["301"] and by_name["users"]["missingCount"] == 0
    markdown = await api.get("/api/migrations/report?format=md")
    assert "NOT OK" in markdown and "different (1): 17" in markdown and "extra (1): 301" in markdown


async def test_counts_only_verification_and_integrity_find_orphans_and_duplicate_keys(
    api: Api, shop: tuple[str, str]
) -> None:
    source, target = shop
    assert (await migrate_shop(api, source, target))["status"] == "completed"
    await pg.execute(target, "ALTER TABLE orders DROP CONSTRAINT orders_user_id_fkey",
                     "DELETE FROM users WHERE id = 7",  # users 7 had orders 6, 306, 606, 906
                     "ALTER TABLE employees DROP CONSTRAINT employees_pkey CASCADE",
                     "INSERT INTO employees VALUES (5, 'Twin', 1, 1)")

    report = (await api.post("/api/migrations/verify", {}))["report"]

    by_name = {t["name"]: t for t in report["tables"]}
    assert "checksumMatch" not in by_name["users"]  # counts only
    assert by_name["users"]["match"] is False
    orphans = {o["foreignKey"]: o for o in by_name["orders"]["orphans"]}
    assert (orphans["orders_user_id_fkey"]["count"], orphans["orders_user_id_fkey"]["values"]) == (4, ["7", "7", "7",
                                                                                                       "7"])
    assert by_name["employees"]["duplicateKeys"] == {"count": 1, "keys": ["5"]}
    assert not by_name["orders"]["ok"] and by_name["products"]["ok"]


async def test_the_end_of_run_report_comes_over_the_websocket(api: Api, shop: tuple[str, str]) -> None:
    source, target = shop
    async with api.client.ws_connect("/api/migrations/events", headers=AUTH) as ws:
        summary = await migrate_shop(api, source, target)
        assert summary["status"] == "completed"
        while True:
            message = await ws.receive_json(timeout=30)
            if message["type"] == "report":
                break
    assert message["report"]["ok"] is True and len(message["report"]["tables"]) == len(TABLES)


async def test_the_cli_plans_and_verifies(cli: Cli, shop: tuple[str, str], tmp_path: Path) -> None:
    source, target = shop
    spec = tmp_path / "shop.yaml"
    spec.write_text(f"source: {source}\ntarget: {target}\ntables: [{', '.join(CHILDREN_FIRST)}]\nverify: false\n")

    planned = await cli.run("plan", str(spec))
    assert planned.returncode == 0, planned.stderr
    assert "cycle" in planned.stdout and "rows/s" in planned.stdout
    assert (await cli.run("run", str(spec), "--quiet")).returncode == 0

    checked = await cli.run("verify", str(spec), "--deep")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "**OK**" in checked.stdout
    await pg.execute(target, "DELETE FROM order_items WHERE order_id = 3")
    failed = await cli.run("verify", str(spec))
    assert failed.returncode == 1 and "order_items" in failed.stdout
