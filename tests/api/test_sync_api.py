"""Incremental sync over the API, PostgreSQL → PostgreSQL, as a client drives it: a continuous
watermark sync (`POST …/sync {"every": 1}`) follows inserts, updates and deletes, reports its lag
in the summary and over the WebSocket, holds still while paused, catches up on resume, and ends
with a cutover (after which it cannot sync again); a change-capture migration synced pass by pass
and cut over (its replication slot dropped); and the ways a client can ask wrongly."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType

from tests.api.conftest import ENDED
from tests.api.test_websocket import EVENTS
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.api import AUTH, Api

ITEMS = "CREATE TABLE items (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now())"
Rows = list[tuple[object, ...]]


async def rows(dsn: str, table: str = "items") -> Rows:
    if not await pg.fetchval(dsn, "SELECT to_regclass($1) IS NOT NULL", table):
        return []
    return await pg.fetch(dsn, f"SELECT * FROM {table} ORDER BY id")


async def initialize(api: Api, source: str, target: str) -> str:
    body = await api.post("/api/migrations/initialize", {"sourceDB": source, "targetDB": target})
    return str(body["migration"]["id"])


async def planned(api: Api, source: str, target: str, **options: Any) -> str:
    mid = await initialize(api, source, target)
    await api.post(f"/api/migrations/{mid}/plan", options)
    return mid


async def wait_for(api: Api, mid: str, what: str, ok: Callable[[dict[str, Any]], Any], *,
                   source: str | None = None, target: str | None = None, table: str = "items",
                   timeout: float = 30) -> dict[str, Any]:
    """Poll the summary (and, with `source`/`target`, compare the tables) until `ok(summary)` holds
    and the target equals the source; fails when the run ends otherwise or `timeout` passes."""
    summary: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                summary = await api.summary(mid)
                assert summary["status"] not in ENDED or ok(summary), \
                    f"the sync ended {summary['status']} while waiting for {what}: {summary['error']}"
                if ok(summary) and (source is None or target is None
                                    or await rows(target, table) == await rows(source, table)):
                    return summary
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"no {what} within {timeout} s; last summary: status {summary.get('status')}, "
                    f"sync {summary.get('sync')}")


def passes_done(summary: dict[str, Any]) -> list[int]:
    sync = summary.get("sync") or {}
    return [int(h["pass"]) for h in sync.get("history") or []]


def caught_up_after(pass_no: int) -> Callable[[dict[str, Any]], bool]:
    """A pass later than `pass_no` is done, and the lag measured since is 0."""
    def ok(summary: dict[str, Any]) -> bool:
        done = passes_done(summary)
        return bool(done) and max(done) > pass_no and summary["sync"]["lagRows"] == 0
    return ok


@contextlib.asynccontextmanager
async def watching(api: Api) -> AsyncIterator[list[dict[str, Any]]]:
    """Every message of the event stream while the block runs."""
    seen: list[dict[str, Any]] = []
    async with api.client.ws_connect(EVENTS, headers=AUTH) as ws:
        async def collect() -> None:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    seen.append(json.loads(msg.data))

        task = asyncio.create_task(collect())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_continuous_watermark_sync_follows_the_source_pauses_resumes_and_cuts_over(
    api: Api, new_pg_db: NewDatabase
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await pg.execute(source, ITEMS, "INSERT INTO items (id, name, updated_at) SELECT i, 'item ' || i, "
                                    "'2026-01-01'::timestamptz + i * interval '1 second' FROM generate_series(1, 300) i")
    mid = await planned(api, source, target, tables=["items"], batchSize=50,
                        incremental={"items": {"cursor": "updated_at"}}, detectDeletes=True)

    async with watching(api) as events:
        started = await api.post(f"/api/migrations/{mid}/sync", {"every": 1}, status=202)
        assert started["migration"]["id"] == mid and started["migration"]["status"] == "executing"
        first = await wait_for(api, mid, "pass 0 with every row", lambda s: 0 in passes_done(s),
                               source=source, target=target)
        assert first["status"] == "executing"  # continuous: the sync goes on
        assert len(await rows(target)) == 300
        at_change = max(passes_done(first))

        await pg.execute(source, "INSERT INTO items (id, name) VALUES (301, 'new one'), (302, 'new two')",
                         "UPDATE items SET name = 'changed', updated_at = now() WHERE id IN (5, 150)",
                         "DELETE FROM items WHERE id IN (7, 8)")
        caught = await wait_for(api, mid, "a pass with the changes and lag 0", caught_up_after(at_change),
                                source=source, target=target)
    assert caught["status"] == "executing"
    assert caught["sync"]["pass"] >= 1 and caught["sync"]["lagRows"] == 0
    assert len(await rows(target)) == 300 + 2 - 2
    assert sum(h["deleted"] for h in caught["sync"]["history"]) == 2
    sync_events = [m for m in events if m["type"] == "sync"]
    assert sync_events, f"no sync event among {sorted({m['type'] for m in events})}"
    assert all(m["migrationId"] == mid for m in sync_events)
    assert any(isinstance(m["sync"].get("lagRows"), int) for m in sync_events), sync_events[-1]
    assert any(m["sync"]["pass"] >= 1 and m["sync"]["lagRows"] == 0 for m in sync_events)

    # Paused: the source changes, the target does not.
    paused = await api.post(f"/api/migrations/{mid}/pause")
    assert paused["status"] in ("pausing", "paused")
    await wait_for(api, mid, "status paused", lambda s: s["status"] == "paused")
    await asyncio.sleep(0.5)  # a pass that had read everything before the pause may still end
    held = await rows(target)
    await pg.execute(source, "INSERT INTO items (id, name) VALUES (303, 'while paused')",
                     "UPDATE items SET name = 'changed while paused', updated_at = now() WHERE id = 9",
                     "DELETE FROM items WHERE id = 10")
    await asyncio.sleep(2.5)
    assert (await api.summary(mid))["status"] == "paused"
    assert await rows(target) == held, "the target changed while the sync was paused"
    before_resume = max(passes_done(await api.summary(mid)))

    resumed = await api.post(f"/api/migrations/{mid}/resume")
    assert resumed["status"] == "executing"
    await wait_for(api, mid, "the catch-up after resume", caught_up_after(before_resume), source=source, target=target)

    cut = await api.post(f"/api/migrations/{mid}/cutover", {})
    assert cut["migrationId"] == mid and cut["success"] is True
    assert cut["status"] == "completed" and cut["ok"] is True, cut
    assert cut["lagRows"] == 0 and cut["report"]["ok"] is True
    assert cut["slotDropped"] is None  # a watermark sync has no slot
    assert cut["pass"] >= 2
    assert await rows(target) == await rows(source)
    done = await api.summary(mid)
    assert done["status"] == "completed" and done["sync"]["cutOver"] is True

    again = await api.post(f"/api/migrations/{mid}/sync", {}, status=409)
    assert again["success"] is False and again["error"]["code"] == "wrong_state"
    assert "cut over" in again["error"]["message"], again
    assert (await api.summary(mid))["status"] == "completed"


async def test_a_change_capture_sync_through_the_api_copies_every_change_and_cutover_drops_its_slot(
    api: Api, new_pg_db: NewDatabase
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    if await pg.fetchval(source, "SHOW wal_level") != "logical":
        pytest.skip("the test cluster was not started with wal_level=logical")
    await pg.execute(source, "CREATE TABLE t (id int PRIMARY KEY, body text, n numeric(8,2))",
                     "INSERT INTO t SELECT i, 'row ' || i, i FROM generate_series(1, 200) i")
    mid = await planned(api, source, target, tables=["t"], batchSize=64, incremental={"t": {"capture": True}})

    cut: dict[str, Any] | None = None
    try:
        await api.post(f"/api/migrations/{mid}/sync", {}, status=202)
        first = await wait_for(api, mid, "pass 0 completed", lambda s: s["status"] == "completed")
        assert first["sync"]["pass"] == 0
        slot = first["sync"]["slot"]
        assert isinstance(slot, str) and slot
        assert await pg.fetchval(source, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot) == 1
        assert await rows(target, "t") == await rows(source, "t")

        await pg.execute(source, "SET synchronous_commit = on; "
                                 "INSERT INTO t VALUES (201, 'new', 1), (202, 'O''Brien', NULL);"
                                 "UPDATE t SET body = 'changed', n = n + 1 WHERE id <= 5;"
                                 "DELETE FROM t WHERE id IN (10, 11, 201)")
        await api.post(f"/api/migrations/{mid}/sync", {}, status=202)
        second = await wait_for(api, mid, "pass 1 completed",
                                lambda s: s["status"] == "completed" and s["sync"]["pass"] == 1)
        assert second["sync"]["lagRows"] == 0
        assert second["sync"]["history"][-1]["pass"] == 1
        assert await rows(target, "t") == await rows(source, "t")
        assert len(await rows(target, "t")) == 200 + 1 - 2

        cut = await api.post(f"/api/migrations/{mid}/cutover", {})
        assert cut["ok"] is True and cut["status"] == "completed", cut
        assert cut["slotDropped"] == slot
        assert cut["lagRows"] == 0 and cut["report"]["ok"] is True
        assert await pg.fetchval(source, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot) == 0
        assert (await api.summary(mid))["sync"]["slot"] is None
    finally:
        if cut is None:  # a slot left behind would keep the database from being dropped
            await pg.execute(source, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                     "WHERE database = current_database() AND NOT active")


# -- asking wrongly -------------------------------------------------------------------------------

@pytest.fixture
async def dsns(new_pg_db: NewDatabase) -> tuple[str, str]:
    source, target = await new_pg_db(), await new_pg_db()
    await pg.execute(source, ITEMS, "INSERT INTO items (id, name) SELECT i, 'item ' || i FROM generate_series(1, 20) i")
    return source, target


async def test_sync_of_a_migration_planned_without_incremental_is_400_naming_incremental(
    api: Api, dsns: tuple[str, str]
) -> None:
    mid = await planned(api, *dsns, tables=["items"])
    refused = await api.post(f"/api/migrations/{mid}/sync", {"every": 5}, status=400)
    assert refused["success"] is False and refused["error"]["code"] == "invalid_input"
    assert "incremental" in refused["error"]["message"]
    assert (await api.summary(mid))["status"] == "planned"
    assert await rows(dsns[1]) == []


@pytest.mark.parametrize("body", [{"every": 0}, {"every": "10s"}, {"every": True}, {"every": -1},
                                  {"every": 86401}])
async def test_a_bad_every_is_400_naming_every(api: Api, dsns: tuple[str, str], body: dict[str, object]) -> None:
    mid = await planned(api, *dsns, tables=["items"], incremental={"items": {"cursor": "updated_at"}})
    refused = await api.post(f"/api/migrations/{mid}/sync", body, status=400)
    assert refused["success"] is False and refused["error"]["code"] == "invalid_input"
    assert "every" in refused["error"]["message"]
    assert refused["error"]["details"]["field"] == "every"
    assert (await api.summary(mid))["status"] == "planned"


async def test_an_unknown_sync_or_cutover_field_is_400_naming_it(api: Api, dsns: tuple[str, str]) -> None:
    mid = await planned(api, *dsns, tables=["items"], incremental={"items": {"cursor": "updated_at"}})
    refused = await api.post(f"/api/migrations/{mid}/sync", {"interval": 5}, status=400)
    assert refused["error"]["code"] == "invalid_input" and "interval" in refused["error"]["message"]
    assert refused["error"]["details"]["field"] == "interval"
    refused = await api.post(f"/api/migrations/{mid}/cutover", {"force": True}, status=400)
    assert refused["error"]["code"] == "invalid_input" and "force" in refused["error"]["message"]
    assert (await api.summary(mid))["status"] == "planned"


async def test_a_cursor_column_the_table_lacks_is_refused_naming_the_column(
    api: Api, dsns: tuple[str, str]
) -> None:
    mid = await initialize(api, *dsns)
    options = {"tables": ["items"], "incremental": {"items": {"cursor": "modified_at"}}}
    answer = await api.call("POST", f"/api/migrations/{mid}/plan", options, status=None)
    if isinstance(answer, dict) and answer.get("success") is False:  # caught when planning
        assert "modified_at" in answer["error"]["message"], answer
        return
    started = await api.call("POST", f"/api/migrations/{mid}/sync", {}, status=None)
    if started.get("success") is False:  # caught when the sync is asked for
        assert started["error"]["code"] == "invalid_input" and "modified_at" in started["error"]["message"], started
        return
    failed = await wait_for(api, mid, "the sync to fail", lambda s: s["status"] in ENDED)
    assert failed["status"] == "failed", failed
    assert "modified_at" in (failed["error"] or ""), failed["error"]
    assert await rows(dsns[1]) == []


async def test_a_csv_target_cannot_be_synced(api: Api, dsns: tuple[str, str]) -> None:
    mid = await initialize(api, dsns[0], "csv:///out")
    options = {"tables": ["items"], "incremental": {"items": {"cursor": "updated_at"}}}
    answer = await api.call("POST", f"/api/migrations/{mid}/plan", options, status=None)
    if isinstance(answer, dict) and answer.get("success") is False:  # caught when planning
        assert "CSV" in answer["error"]["message"], answer
        return
    started = await api.call("POST", f"/api/migrations/{mid}/sync", {"every": 1}, status=None)
    if started.get("success") is False:
        assert "CSV" in started["error"]["message"], started
        return
    failed = await wait_for(api, mid, "the sync to fail", lambda s: s["status"] in ENDED)
    assert failed["status"] == "failed", failed
    assert "CSV" in (failed["error"] or ""), failed["error"]
