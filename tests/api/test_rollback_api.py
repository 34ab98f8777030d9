"""Rollback through the API (`POST /api/migrations/rollback`, `POST /api/migrations/{id}/rollback`):
the PostgreSQL target returns to its exact state before the run, the status goes `rolling_back` →
`rolled_back` (in the summary, the migration and on the WebSocket), the log says so; a running or
never-run migration cannot be rolled back (409)."""

from __future__ import annotations

import asyncio

from tests.api.test_websocket import EVENTS, Message, receive, until
from tests.conftest import NewDatabase
from tests.runs.test_rollback import state
from tests.support import pg
from tests.support.api import AUTH, Api
from tests.support.bigtable import create_big_table

ROWS = 3_000


async def databases(new_pg_db: NewDatabase, rows: int = ROWS) -> tuple[str, str]:
    """A source with `big`; a target that already holds a table `keep` with rows and its own `big`
    rows (the run adds to them)."""
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, rows)
    await pg.execute(target, "CREATE TABLE keep (id integer PRIMARY KEY, v text)", "INSERT INTO keep VALUES (1, 'x')",
                     "CREATE TABLE big (id bigint PRIMARY KEY, name text, amount numeric(12,2), note text)",
                     "INSERT INTO big VALUES (-1, 'mine', 1.00, 'before'), (-2, NULL, NULL, NULL)")
    return source, target


async def test_a_completed_run_rolled_back_through_the_api_leaves_the_target_as_before(
    api: Api, new_pg_db: NewDatabase
) -> None:
    source, target = await databases(new_pg_db)
    await create_big_table(source, 500, table="fresh")  # a table the run creates
    before = await state(target)
    mid = await api.start(source, target, batchSize=500)
    await api.wait_status("completed", "failed")
    assert (await api.summary(mid))["status"] == "completed"
    assert await pg.count_rows(target, "big") == ROWS + 2 and await pg.count_rows(target, "fresh") == 500

    answer = await api.post("/api/migrations/rollback", {})

    assert answer == {"success": True, "migrationId": mid, "status": "rolled_back"}
    assert await state(target) == before
    assert (await api.get(f"/api/migrations/{mid}"))["migration"]["status"] == "rolled_back"
    messages = [e["message"] for e in await api.get("/api/migrations/log")]
    assert "Rollback completed" in messages, messages
    assert messages.index("Rollback completed") > max(i for i, m in enumerate(messages) if m.startswith("Rollback:"))
    # The summary, too, in the process that ran the migration (not only after a restart).
    assert (await api.summary())["status"] == "rolled_back"
    assert (await api.summary(mid))["status"] == "rolled_back"
    assert (await api.get(f"/api/migrations/{mid}"))["summary"]["status"] == "rolled_back"


async def test_a_running_migration_cannot_be_rolled_back_until_it_is_cancelled(
    api: Api, new_pg_db: NewDatabase
) -> None:
    source, target = await databases(new_pg_db, 50_000)
    before = await state(target)
    mid = await api.start(source, target, batchSize=200)
    async with asyncio.timeout(30):
        while await pg.count_rows(target, "big") <= 2:
            await asyncio.sleep(0.01)

    refused = await api.post(f"/api/migrations/{mid}/rollback", {}, status=409)

    assert refused["success"] is False and refused["error"]["code"] == "wrong_state"
    assert "cancel it first" in refused["error"]["message"], refused
    assert (await api.summary(mid))["status"] == "executing"
    await api.post(f"/api/migrations/{mid}/cancel")
    await api.wait_status("cancelled", migration=mid)
    assert await pg.count_rows(target, "big") > 2

    assert (await api.post(f"/api/migrations/{mid}/rollback", {}))["status"] == "rolled_back"
    assert await state(target) == before

    again = await api.post(f"/api/migrations/{mid}/rollback", {"targetDB": target})  # changes nothing

    assert again == {"success": True, "migrationId": mid, "status": "rolled_back"}
    assert await state(target) == before
    assert (await api.summary(mid))["status"] == "rolled_back"


async def test_an_initialized_migration_cannot_be_rolled_back(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await databases(new_pg_db, 10)
    before = await state(target)
    init = await api.post("/api/migrations/initialize", {"sourceDB": source, "targetDB": target})
    mid = init["migration"]["id"]

    refused = await api.post("/api/migrations/rollback", {}, status=409)

    assert refused["success"] is False and refused["error"]["code"] == "wrong_state", refused
    assert mid in refused["error"]["message"] and "initialized" in refused["error"]["message"], refused
    assert (await api.summary(mid))["status"] == "initialized"
    assert await state(target) == before


async def test_a_websocket_client_sees_rolling_back_then_rolled_back(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await databases(new_pg_db)
    before = await state(target)
    async with api.client.ws_connect(EVENTS, headers=AUTH) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        mid = await api.start(source, target, batchSize=500)
        await until(ws, "report", migration=mid)
        assert (await api.summary(mid))["status"] == "completed"

        await api.post(f"/api/migrations/{mid}/rollback")
        seen: list[Message] = []
        while not any(m["type"] == "status" and m["status"] == "rolled_back" for m in seen):
            seen += await until(ws, "status", migration=mid, timeout=30)

    statuses = [m["status"] for m in seen if m["type"] == "status"]
    assert statuses == ["rolling_back", "rolled_back"], seen
    assert {m["migrationId"] for m in seen} == {mid}
    logs = [m["entry"]["message"] for m in seen if m["type"] == "log"]
    assert "Rollback completed" in logs, logs
    assert await state(target) == before
