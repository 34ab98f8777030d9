"""The live event stream `GET /api/migrations/events` (DESIGN.md §4), watched the way a dashboard
watches it: a snapshot on connect, then plan/status/progress/log/report events of real PostgreSQL →
PostgreSQL runs, actions sent back over the socket, and clients that are many, filtered or slow."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from aiohttp import ClientWebSocketResponse, WSMsgType

from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.api import AUTH, TOKEN, Api
from tests.support.bigtable import create_big_table

EVENTS = "/api/migrations/events"
Message = dict[str, Any]


async def receive(ws: ClientWebSocketResponse, timeout: float = 30.0) -> Message:
    """The next JSON message; fails if the socket closes or stays silent for `timeout` seconds."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type is WSMsgType.TEXT, f"expected a text message, got {msg.type!r} {msg.data!r} {msg.extra!r}"
    data: Message = json.loads(msg.data)
    return data


async def until(ws: ClientWebSocketResponse, kind: str, *, migration: str | None = None,
                timeout: float = 60.0) -> list[Message]:
    """Every message up to and including the first of type `kind` (of `migration`, when given)."""
    seen: list[Message] = []
    async with asyncio.timeout(timeout):
        while True:
            seen.append(await receive(ws, timeout))
            if seen[-1]["type"] == kind and (migration is None or seen[-1]["migrationId"] == migration):
                return seen


async def until_all(ws: ClientWebSocketResponse, *kinds: str, timeout: float = 60.0) -> list[Message]:
    """Every message until one of each type in `kinds` has arrived (in any order)."""
    seen: list[Message] = []
    async with asyncio.timeout(timeout):
        while not set(kinds) <= {m["type"] for m in seen}:
            seen.append(await receive(ws, timeout))
    return seen


async def two_databases(new_pg_db: NewDatabase, rows: int, table: str = "big") -> tuple[str, str]:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, rows, table=table)
    return source, target


async def initialize(api: Api, source: str, target: str) -> str:
    body = await api.post("/api/migrations/initialize", {"sourceDB": source, "targetDB": target})
    return str(body["migration"]["id"])


async def test_the_first_message_is_a_snapshot_of_the_current_migration_or_null(
        api: Api, new_pg_db: NewDatabase) -> None:
    async with api.client.ws_connect(f"{EVENTS}?token={TOKEN}") as ws:
        first = await receive(ws)
    assert first["type"] == "snapshot" and first["summary"] is None
    assert "timestamp" in first

    source, target = await two_databases(new_pg_db, 1_000)
    mid = await initialize(api, source, target)
    await api.post(f"/api/migrations/{mid}/plan", {"tables": ["big"]})
    async with api.client.ws_connect(EVENTS, headers=AUTH) as ws:
        first = await receive(ws)
    assert first["type"] == "snapshot" and first["migrationId"] == mid
    assert first["summary"]["id"] == mid and first["summary"]["status"] == "planned"
    assert first["summary"]["totalRecords"] == 1_000 and first["summary"]["migratedCount"] == 0


async def test_a_run_is_streamed_as_plan_status_progress_log_and_report(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await two_databases(new_pg_db, 3_000)
    mid = await initialize(api, source, target)
    async with api.client.ws_connect(EVENTS, headers=AUTH) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        await api.post(f"/api/migrations/{mid}/plan", {"tables": ["big"], "batchSize": 500})
        await api.post(f"/api/migrations/{mid}/execute", status=202)
        seen = await until(ws, "report")

    assert all({"type", "migrationId", "timestamp"} <= m.keys() for m in seen), seen
    assert {m["migrationId"] for m in seen} == {mid}
    kinds = [m["type"] for m in seen]
    statuses = [(i, m["status"]) for i, m in enumerate(seen) if m["type"] == "status"]
    plan_at = kinds.index("plan")
    executing_at = next(i for i, s in statuses if s == "executing")
    completed_at = next(i for i, s in statuses if s == "completed")
    assert plan_at < executing_at < completed_at < len(seen) - 1
    assert seen[plan_at]["plan"]["totalRecords"] == 3_000

    progress = [m for m in seen if m["type"] == "progress"]
    assert progress, kinds
    counts = [m["migratedCount"] for m in progress]
    assert counts == sorted(counts), counts
    last_progress_at = max(i for i, m in enumerate(seen) if m["type"] == "progress")
    assert last_progress_at <= completed_at + 1
    assert progress[-1]["migratedCount"] == 3_000 and progress[-1]["totalRecords"] == 3_000

    logs = [m["entry"]["message"] for m in seen if m["type"] == "log"]
    assert "Batch 1: 500 records migrated" in logs

    report = seen[-1]
    assert report["type"] == "report"
    assert report["summary"]["status"] == "completed" and report["summary"]["migratedCount"] == 3_000
    assert await pg.count_rows(target, "big") == 3_000


async def test_progress_is_sent_at_most_a_few_times_a_second(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await two_databases(new_pg_db, 20_000)
    mid = await initialize(api, source, target)
    async with api.client.ws_connect(EVENTS, headers=AUTH) as ws:
        await api.post(f"/api/migrations/{mid}/plan", {"tables": ["big"], "batchSize": 50})
        started = time.monotonic()
        await api.post(f"/api/migrations/{mid}/execute", status=202)
        seen = await until(ws, "report")
        elapsed = time.monotonic() - started

    log = await api.get(f"/api/migrations/{mid}/log")
    batches = sum(1 for e in log if e["message"].startswith("Batch "))
    progress = sum(1 for m in seen if m["type"] == "progress")
    allowed = 5 * elapsed + 2
    assert batches == 400
    assert batches > allowed, f"the run ({elapsed:.1f} s) was too slow for this check to mean anything"
    assert 0 < progress <= allowed, f"{progress} progress messages in {elapsed:.2f} s"


async def test_the_migration_query_delivers_only_that_migrations_events(api: Api, new_pg_db: NewDatabase) -> None:
    first_source, first_target = await two_databases(new_pg_db, 2_000)
    second_source, second_target = await two_databases(new_pg_db, 2_000)
    first = await initialize(api, first_source, first_target)
    second = await initialize(api, second_source, second_target)
    async with (api.client.ws_connect(f"{EVENTS}?migration={first}", headers=AUTH) as ws_first,
                api.client.ws_connect(f"{EVENTS}?migration={second}", headers=AUTH) as ws_second,
                api.client.ws_connect(EVENTS, headers=AUTH) as ws_all):
        for mid in (first, second):
            await api.post(f"/api/migrations/{mid}/plan", {"tables": ["big"], "batchSize": 250})
            await api.post(f"/api/migrations/{mid}/execute", status=202)
        only_first = await until(ws_first, "report")
        only_second = await until(ws_second, "report")
        everything = await until(ws_all, "report", migration=first)
        if not any(m["type"] == "report" and m["migrationId"] == second for m in everything):
            everything += await until(ws_all, "report", migration=second)

    assert only_first[0]["type"] == "snapshot" and only_first[0]["summary"]["id"] == first
    assert only_second[0]["type"] == "snapshot" and only_second[0]["summary"]["id"] == second
    assert {m["migrationId"] for m in only_first} == {first}
    assert {m["migrationId"] for m in only_second} == {second}
    assert {m["migrationId"] for m in everything if m["type"] == "status"} == {first, second}
    assert only_first[-1]["summary"]["migratedCount"] == only_second[-1]["summary"]["migratedCount"] == 2_000


async def test_pause_and_resume_sent_over_the_socket_pause_and_finish_the_run(
        api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await two_databases(new_pg_db, 60_000)
    async with api.client.ws_connect(EVENTS, headers=AUTH) as ws:
        await receive(ws)
        mid = await api.start(source, target, tables=["big"], batchSize=500)
        await until(ws, "progress")
        await ws.send_json({"action": "pause"})
        ack = (await until(ws, "ack"))[-1]
        assert ack["action"] == "pause"
        assert ack["status"] in ("pausing", "paused")
        paused = await api.wait_status("paused", migration=mid)
        assert paused["migratedCount"] < 60_000, "the run ended before the pause could take effect"
        await asyncio.sleep(0.3)  # not synchronisation: a paused run must stay where it is meanwhile
        assert (await api.summary(mid))["migratedCount"] == paused["migratedCount"]

        await ws.send_json({"action": "resume"})
        seen = await until_all(ws, "ack", "report")
    ack = next(m for m in seen if m["type"] == "ack")
    assert ack["action"] == "resume" and ack["status"] == "executing"
    assert seen[-1]["summary"]["status"] == "completed" and seen[-1]["summary"]["migratedCount"] == 60_000
    assert (await api.wait_status("completed", "failed", migration=mid))["status"] == "completed"
    assert await pg.row_multiset(target, "big") == await pg.row_multiset(source, "big")


async def test_cancel_sent_over_the_socket_cancels_the_run(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await two_databases(new_pg_db, 60_000)
    async with api.client.ws_connect(EVENTS, headers=AUTH) as ws:
        await receive(ws)
        mid = await api.start(source, target, tables=["big"], batchSize=500)
        await until(ws, "progress")
        await ws.send_json({"action": "cancel"})
        seen = await until_all(ws, "ack", "report")
    ack = next(m for m in seen if m["type"] == "ack")
    assert ack["action"] == "cancel" and ack["status"] == "cancelled"
    assert any(m["type"] == "status" and m["status"] == "cancelled" for m in seen)
    summary = await api.wait_status("cancelled", "completed", migration=mid)
    assert summary["status"] == "cancelled" and summary["migratedCount"] < 60_000


async def test_a_bad_client_message_gets_an_error_and_the_socket_stays_usable(
        api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await two_databases(new_pg_db, 100)
    mid = await initialize(api, source, target)
    async with api.client.ws_connect(EVENTS, headers=AUTH) as ws:
        await receive(ws)
        await ws.send_json({"action": "explode"})
        error = (await until(ws, "error"))[-1]
        assert "pause" in error["error"]["message"] and "timestamp" in error
        await ws.send_str("not json at all")
        assert (await until(ws, "error"))[-1]["error"]["code"]
        assert not ws.closed

        await ws.send_json({"action": "cancel"})
        ack = (await until(ws, "ack"))[-1]
    assert ack["action"] == "cancel" and ack["status"] == "cancelled"
    assert (await api.summary(mid))["status"] == "cancelled"


async def test_an_ack_names_the_migration_the_action_was_applied_to(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await two_databases(new_pg_db, 100)
    mid = await initialize(api, source, target)
    async with api.client.ws_connect(EVENTS, headers=AUTH) as ws:  # no ?migration=: acts on the current one
        await receive(ws)
        await ws.send_json({"action": "cancel"})
        ack = (await until(ws, "ack"))[-1]
    assert ack["status"] == "cancelled" and "timestamp" in ack
    assert ack["migrationId"] == mid


async def test_a_client_that_never_reads_does_not_hold_up_the_run_or_other_clients(
        api: Api, new_pg_db: NewDatabase) -> None:
    # Half the rows cannot be converted to the target's bigint: every batch logs its rejects with
    # their (4 KB) values, some 10 MB of events — far more than the socket buffers of a client that
    # never reads can absorb.
    source, target = await new_pg_db(), await new_pg_db()
    await pg.execute(source, "CREATE TABLE t (id bigint PRIMARY KEY, payload text)",
                     "INSERT INTO t SELECT g, CASE WHEN g % 2 = 0 THEN g::text ELSE repeat('x', 4000) || g END"
                     " FROM generate_series(1, 3000) g")
    await pg.execute(target, "CREATE TABLE t (id bigint PRIMARY KEY, payload bigint)")
    async with (api.client.ws_connect(EVENTS, headers=AUTH) as stalled,
                api.client.ws_connect(EVENTS, headers=AUTH) as reader):
        mid = await api.start(source, target, tables=["t"], batchSize=50)
        reading = asyncio.ensure_future(until(reader, "report", timeout=30))
        try:
            summary = await api.wait_status("completed", "failed", "cancelled", timeout=30)
            seen = await reading
        finally:
            reading.cancel()
        assert summary["status"] == "completed"
        assert (summary["migratedCount"], summary["failedCount"]) == (1_500, 1_500)
        assert sum(len(json.dumps(m)) for m in seen) > 5_000_000, "too few events to stall a client"
        assert seen[-1]["migrationId"] == mid and seen[-1]["summary"]["migratedCount"] == 1_500

        # The stalled client was kept (its progress coalesced) or dropped; either way it never blocked the run.
        async with asyncio.timeout(15):
            while True:
                msg = await stalled.receive()
                if msg.type is not WSMsgType.TEXT:
                    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), msg
                    break
                if json.loads(msg.data)["type"] == "report":
                    break
    assert await pg.count_rows(target, "t") == 1_500


async def test_fifty_clients_all_receive_the_report(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await two_databases(new_pg_db, 3_000)
    sockets = [await api.client.ws_connect(EVENTS, headers=AUTH) for _ in range(50)]
    try:
        mid = await api.start(source, target, tables=["big"], batchSize=500)
        reports = await asyncio.gather(*(until(ws, "report") for ws in sockets))
    finally:
        for ws in sockets:
            await ws.close()
    assert all(r[-1]["migrationId"] == mid for r in reports)
    assert [r[-1]["summary"]["migratedCount"] for r in reports] == [3_000] * 50


async def test_a_websocket_message_over_64_kib_closes_that_socket_only(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await two_databases(new_pg_db, 100)
    await initialize(api, source, target)
    async with api.client.ws_connect(EVENTS, headers=AUTH) as other, \
            api.client.ws_connect(EVENTS, headers=AUTH) as ws:
        await receive(ws)
        await receive(other)
        await ws.send_str("x" * (64 * 1024 + 1))
        closed = await ws.receive(timeout=10)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        await other.send_json({"action": "cancel"})  # the service and its other clients go on
        assert (await until(other, "ack"))[-1]["status"] == "cancelled"
    assert (await api.get("/health"))["status"] == "ok"
