"""Pause, resume and cancel over the API (DESIGN.md §3) on a running PostgreSQL → PostgreSQL
migration: a paused run holds the target still, a resumed or cancelled-then-resumed run ends with
exactly the source rows, and the running-migrations limit answers 409 until a slot is free."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from tests.api.conftest import ENDED, ROWS, SPEC
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.api import Api


async def reach(api: Api, mid: str, status: str, timeout: float = 60) -> dict[str, Any]:
    """Wait for `status`; fail at once if the run ends some other way."""
    summary = await api.wait_status(status, *ENDED, migration=mid, timeout=timeout)
    assert summary["status"] == status, f"{summary['status']} (not {status}): {summary['error']}"
    return summary


async def migrated_beyond(api: Api, mid: str, count: int) -> dict[str, Any]:
    """Wait until the run has committed more than `count` rows (and still runs)."""
    async with asyncio.timeout(30):
        while True:
            summary = await api.summary(mid)
            assert summary["status"] not in ENDED, f"the run ended before it could be paused: {summary}"
            if summary["migratedCount"] > count:
                return summary
            await asyncio.sleep(0.01)


async def held_still(api: Api, mid: str, target: str) -> int:
    """Sample the summary and the target over ~0.5 s: nothing may move. The rows held."""
    samples = []
    for _ in range(5):
        summary = await api.summary(mid)
        samples.append((summary["status"], summary["migratedCount"], await pg.count_rows(target, "big")))
        await asyncio.sleep(0.12)
    assert len(set(samples)) == 1, f"the paused run moved: {samples}"
    status, migrated, rows = samples[0]
    assert status == "paused"
    assert rows == migrated, "the target holds rows the summary does not count (or the reverse)"
    assert 0 < rows < ROWS
    return rows


async def test_a_paused_run_holds_the_target_still_and_resumes_to_exactly_the_source_rows(
    api: Api, new_pg_db: NewDatabase, big_source: str
) -> None:
    target = await new_pg_db()
    mid = await api.start(big_source, target, **SPEC)
    await migrated_beyond(api, mid, 0)

    answer = await api.post("/api/migrations/pause")
    assert answer["success"] is True and answer["status"] in ("pausing", "paused")
    await reach(api, mid, "paused")
    await held_still(api, mid, target)

    resumed = await api.post("/api/migrations/resume")
    assert resumed["status"] == "executing"
    done = await reach(api, mid, "completed")

    assert done["migratedCount"] == ROWS and done["failedCount"] == 0
    await pg.assert_exact_copy(big_source, target)


async def test_pausing_and_resuming_several_times_in_one_run_still_copies_every_row_once(
    api: Api, new_pg_db: NewDatabase, big_source: str
) -> None:
    target = await new_pg_db()
    mid = await api.start(big_source, target, **SPEC)
    held = 0
    for _ in range(3):
        await migrated_beyond(api, mid, held)
        assert (await api.post("/api/migrations/pause"))["status"] in ("pausing", "paused")
        await reach(api, mid, "paused")
        rows = await held_still(api, mid, target)
        assert rows > held, "the run made no progress between two pauses"
        held = rows
        assert (await api.post("/api/migrations/resume"))["status"] == "executing"

    done = await reach(api, mid, "completed")
    assert done["migratedCount"] == ROWS
    await pg.assert_exact_copy(big_source, target)


async def test_a_cancelled_run_resumes_from_its_checkpoint_to_exactly_the_source_rows(
    api: Api, new_pg_db: NewDatabase, big_source: str
) -> None:
    target = await new_pg_db()
    mid = await api.start(big_source, target, **SPEC)
    await migrated_beyond(api, mid, 0)

    assert (await api.post("/api/migrations/cancel"))["status"] == "cancelled"
    cancelled = await api.summary(mid)
    assert cancelled["status"] == "cancelled" and cancelled["endTime"] is not None
    rows = await pg.count_rows(target, "big")
    await asyncio.sleep(0.2)
    assert await pg.count_rows(target, "big") == rows, "the target still grows after cancel"
    assert 0 < rows < ROWS

    assert (await api.post("/api/migrations/resume"))["status"] == "executing"
    done = await reach(api, mid, "completed")

    assert done["migratedCount"] == ROWS
    messages = [e["message"] for e in await api.get("/api/migrations/log?table=big")]
    resumed_after = [int(m.group(1)) for m in map(re.compile(r"resuming after (\d+) records").search, messages) if m]
    assert resumed_after and resumed_after[0] >= cancelled["migratedCount"] > 0, messages[:10]
    await pg.assert_exact_copy(big_source, target)


async def test_execute_beyond_the_running_limit_is_refused_until_a_run_finishes(
    make_api: Callable[..., Any], new_pg_db: NewDatabase, big_source: str
) -> None:
    first_target, second_target = await new_pg_db(), await new_pg_db()
    async with make_api(max_running=1) as api:
        second = (await api.post("/api/migrations/initialize",
                                  {"sourceDB": big_source, "targetDB": second_target}))["migration"]["id"]
        await api.post(f"/api/migrations/{second}/plan", SPEC)
        first = await api.start(big_source, first_target, **SPEC)

        refused = await api.post(f"/api/migrations/{second}/execute", status=409)
        assert refused["success"] is False and refused["error"]["code"] == "wrong_state"
        assert "max_running_migrations" in refused["error"]["message"]
        assert (await api.summary(second))["status"] == "planned"

        await reach(api, first, "completed")
        started = await api.post(f"/api/migrations/{second}/execute", status=202)
        assert started["migration"]["id"] == second
        await reach(api, second, "completed")

    await pg.assert_exact_copy(big_source, first_target)
    await pg.assert_exact_copy(big_source, second_target)


async def test_id_routes_pause_and_resume_a_run_that_is_not_the_most_recent(
    api: Api, new_pg_db: NewDatabase, big_source: str
) -> None:
    target, other = await new_pg_db(), await new_pg_db()
    mid = await api.start(big_source, target, **SPEC)
    latest = (await api.post("/api/migrations/initialize",
                             {"sourceDB": big_source, "targetDB": other}))["migration"]["id"]
    await migrated_beyond(api, mid, 0)

    # The current-migration routes act on the newest one, which is not running.
    assert (await api.post("/api/migrations/pause", status=409))["error"]["code"] == "wrong_state"
    paused = await api.post(f"/api/migrations/{mid}/pause")
    assert paused["migrationId"] == mid and paused["status"] in ("pausing", "paused")
    await reach(api, mid, "paused")
    await held_still(api, mid, target)
    assert (await api.summary())["id"] == latest
    assert (await api.summary(latest))["status"] == "initialized"

    assert (await api.post(f"/api/migrations/{mid}/resume"))["status"] == "executing"
    await reach(api, mid, "completed")
    assert (await api.post(f"/api/migrations/{mid}/cancel", status=409))["error"]["code"] == "wrong_state"

    await pg.assert_exact_copy(big_source, target)
    assert await pg.count_rows(other, "big") == 0
    assert (await api.summary(latest))["status"] == "initialized"
