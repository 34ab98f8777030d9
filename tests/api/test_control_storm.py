"""Control calls that race: a storm of pause / resume / cancel — over both route forms and the
WebSocket, some of them at the same moment — against a running PostgreSQL → PostgreSQL migration,
and the smaller races inside it. Every answer is a success or a 409, never a server error; one
migration never runs twice at once; a cancel leaves no connection open; once resumed to its end
the target holds exactly the source rows and the service leaves no task behind."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType

from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.api import AUTH, Api
from tests.support.bigtable import create_big_table
from tests.support.proxy import Proxy

ROWS = 50_000
SEED = 20_240_611
CALLS = 1_000
VERBS = ("pause", "resume", "cancel")
WEIGHTS = (45, 45, 10)
OWNED = ("migration:", "settle-pause:", "run-manager")


@pytest.fixture
async def big_source(new_pg_db: NewDatabase) -> str:
    dsn = await new_pg_db()
    await create_big_table(dsn, ROWS)
    return dsn


async def http_call(api: Api, verb: str, path: str) -> tuple[str, int, str]:
    """(verb, HTTP status, error code or status) of one POST."""
    async with api.client.post(path, json={}, headers=AUTH) as resp:
        body = await resp.json()
        answer = body["error"]["code"] if not body["success"] else body.get("status", "ok")
        return verb, resp.status, answer


async def ws_call(ws: ClientWebSocketResponse, verb: str, mid: str) -> tuple[str, int, str]:
    """A WebSocket action, answered (in order) by an `ack` or an `error` among the live events;
    reported as 200 / 409 so that both channels are judged alike."""
    await ws.send_str(orjson.dumps({"action": verb, "migrationId": mid}).decode())
    async with asyncio.timeout(10):
        async for msg in ws:
            assert msg.type is WSMsgType.TEXT, f"the WebSocket closed during the storm: {msg}"
            event = orjson.loads(msg.data)
            if event["type"] == "ack":
                return verb, 200, event["status"]
            if event["type"] == "error":
                code = event["error"]["code"]  # anything but wrong_state (409) would be a service error
                return verb, 409 if code == "wrong_state" else 500, code
    raise AssertionError("the WebSocket closed during the storm")


async def resume_until_completed(api: Api, mid: str, patience: float = 30) -> dict[str, Any]:
    """Resume the run whenever it rests (paused, cancelled, interrupted) until it completes."""
    summary = await api.summary(mid)
    try:
        async with asyncio.timeout(patience):
            while summary["status"] != "completed":
                assert summary["status"] != "failed", f"the run failed: {summary['error']}"
                if summary["status"] in ("paused", "cancelled", "interrupted"):
                    await api.post(f"/api/migrations/{mid}/resume")
                await asyncio.sleep(0.02)
                summary = await api.summary(mid)
    except TimeoutError:
        pytest.fail(f"the run did not complete within {patience:g} s of the storm; it stays {summary['status']} "
                    f"with {summary['migratedCount']} rows migrated")
    return summary


async def connections_left(*dsns: str, patience: float = 3.0) -> tuple[int, ...]:
    """Sessions the service holds on each database (pg_stat_activity, as an operator checks),
    once they are all gone or after `patience` seconds (a closed session takes a moment to leave)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        held = tuple([int(str(await pg.fetchval(
            dsn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                 " AND application_name = 'migrator' AND pid <> pg_backend_pid()"))) for dsn in dsns])
        if not any(held) or loop.time() > deadline:
            return held
        await asyncio.sleep(0.02)


async def log_starts(api: Api, mid: str) -> int:
    """How many times the run started (its log's "Migration started" entries)."""
    return sum(e["message"].startswith("Migration started") for e in await api.get(f"/api/migrations/{mid}/log"))


class SlowSecondConnect(Proxy):
    """A TCP proxy in front of PostgreSQL that, once armed, holds back for `hold` seconds a
    connection arriving right after another one — as a slow network may delay the second of two
    parallel connects. `holding` is set when it does."""

    def __init__(self, host: str, port: int, *, hold: float = 1.0, window: float = 0.02) -> None:
        super().__init__(host, port)
        self.hold, self.window = hold, window
        self.armed = False
        self.holding = asyncio.Event()
        self._last = float("-inf")

    async def __aenter__(self) -> SlowSecondConnect:
        await super().__aenter__()
        return self

    async def _before_connect(self) -> None:
        now = asyncio.get_running_loop().time()
        second, self._last = self.armed and now - self._last < self.window, now
        if second:
            self.holding.set()
            await asyncio.sleep(self.hold)


async def test_a_storm_of_control_calls_never_errors_and_ends_with_exactly_the_source_rows(
    make_api: Callable[..., Any], new_pg_db: NewDatabase, big_source: str
) -> None:
    rng = random.Random(SEED)
    target = await new_pg_db()
    before = set(asyncio.all_tasks())  # (another test's leftovers are not this test's to judge)
    answers: Counter[tuple[str, int, str]] = Counter()
    async with make_api() as api:
        mid = await api.start(big_source, target, tables=["big"], batchSize=500)
        await api.wait_status("executing", migration=mid)
        async with api.client.ws_connect(f"/api/migrations/events?migration={mid}", headers=AUTH) as ws:
            sent = 0
            while sent < CALLS:
                if rng.random() < 0.1:  # a WebSocket action, alone: its answer arrives in order
                    answers[await ws_call(ws, rng.choices(VERBS, WEIGHTS)[0], mid)] += 1
                    sent += 1
                    continue
                burst = [(rng.choices(VERBS, WEIGHTS)[0], rng.random() < 0.5)
                         for _ in range(min(rng.randint(1, 4), CALLS - sent))]
                done = await asyncio.gather(*(
                    http_call(api, verb, f"/api/migrations/{mid}/{verb}" if by_id else f"/api/migrations/{verb}")
                    for verb, by_id in burst))
                answers.update(done)
                sent += len(burst)

            bad = {a: n for a, n in answers.items() if a[1] not in (200, 409)}
            assert not bad, f"answers other than 200/409: {bad}"
            assert all(code == "wrong_state" for _, status, code in answers if status == 409), answers
            for verb in VERBS:  # the storm met a live run, not only refusals
                assert any(v == verb and status == 200 for v, status, _ in answers), answers

            summary = await resume_until_completed(api, mid)

        assert summary["migratedCount"] == ROWS
        assert await pg.count_rows(target, "big") == summary["migratedCount"]
        assert (await api.summary(mid))["status"] == "completed"

    await pg.assert_exact_copy(big_source, target)
    left = sorted(t.get_name() for t in asyncio.all_tasks() - before if t.get_name().startswith(OWNED))
    assert left == [], f"tasks outlived the app: {left}"


async def test_simultaneous_resumes_of_a_cancelled_run_run_it_once_to_exactly_the_source_rows(
    api: Api, new_pg_db: NewDatabase, big_source: str
) -> None:
    target = await new_pg_db()
    mid = await api.start(big_source, target, tables=["big"], batchSize=500)
    async with asyncio.timeout(30):
        while (await api.summary(mid))["migratedCount"] == 0:
            await asyncio.sleep(0.01)
    await asyncio.gather(*(api.summary(mid) for _ in range(6)))  # six open connections: the resumes arrive together
    assert (await api.post(f"/api/migrations/{mid}/cancel"))["status"] == "cancelled"

    answers = await asyncio.gather(*(http_call(api, "resume", f"/api/migrations/{mid}/resume") for _ in range(6)))

    assert {status for _, status, _ in answers} <= {200, 409}, answers
    done = await api.wait_status("completed", "failed", "cancelled", migration=mid)
    assert (starts := await log_starts(api, mid)) == 2, f"one execute and one resume, yet {starts} starts"
    assert done["status"] == "completed", f"{done['status']}: {done['error']}"
    await pg.assert_exact_copy(big_source, target)


async def test_simultaneous_executes_start_one_run(api: Api, new_pg_db: NewDatabase, big_source: str) -> None:
    target = await new_pg_db()
    mid = (await api.post("/api/migrations/initialize", {"sourceDB": big_source, "targetDB": target}))["migration"]["id"]
    await api.post(f"/api/migrations/{mid}/plan", {"tables": ["big"], "batchSize": 500})
    await asyncio.gather(*(api.summary(mid) for _ in range(6)))  # six open connections: the calls arrive together

    answers = await asyncio.gather(*(http_call(api, "execute", f"/api/migrations/{mid}/execute") for _ in range(6)))

    assert sorted(status for _, status, _ in answers) == [202] + [409] * 5, answers
    done = await api.wait_status("completed", "failed", "cancelled", migration=mid)
    assert (starts := await log_starts(api, mid)) == 1, f"one run asked for, yet {starts} starts"
    assert done["status"] == "completed", f"{done['status']}: {done['error']}"
    await pg.assert_exact_copy(big_source, target)


async def test_a_cancel_while_the_source_readers_connect_leaves_no_connection_open(
    api: Api, new_pg_db: NewDatabase, big_source: str
) -> None:
    target = await new_pg_db()
    parts = urlsplit(big_source)
    assert parts.hostname and parts.port
    async with SlowSecondConnect(parts.hostname, parts.port) as proxy:
        via = urlunsplit(parts._replace(netloc=f"{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}"))
        mid = (await api.post("/api/migrations/initialize", {"sourceDB": via, "targetDB": target}))["migration"]["id"]
        await api.post(f"/api/migrations/{mid}/plan", {"tables": ["big"], "batchSize": 500})
        proxy.armed = True
        await api.post(f"/api/migrations/{mid}/execute", status=202)
        async with asyncio.timeout(10):
            await proxy.holding.wait()  # the run opens its parallel readers: one is held back…
            while (await connections_left(big_source, patience=0))[0] < 2:
                await asyncio.sleep(0.005)  # …while the other (beside the run's first session) is open

        assert (await api.post(f"/api/migrations/{mid}/cancel"))["status"] == "cancelled"
        held = await connections_left(big_source, target)

    assert held == (0, 0), f"(source, target) sessions still open after the cancel: {held}"
    assert (await api.summary(mid))["status"] == "cancelled"


async def test_simultaneous_executes_of_two_migrations_respect_the_running_limit(
    make_api: Callable[..., Any], new_pg_db: NewDatabase, big_source: str
) -> None:
    targets = [await new_pg_db(), await new_pg_db()]
    async with make_api(max_running=1) as api:
        mids = []
        for target in targets:
            init = await api.post("/api/migrations/initialize", {"sourceDB": big_source, "targetDB": target})
            mids.append(init["migration"]["id"])
            await api.post(f"/api/migrations/{mids[-1]}/plan", {"tables": ["big"], "batchSize": 500})
        await asyncio.gather(*(api.summary(mid) for mid in mids))  # two open connections: the calls arrive together

        answers = await asyncio.gather(*(http_call(api, "execute", f"/api/migrations/{mid}/execute") for mid in mids))

        assert sorted(status for _, status, _ in answers) == [202, 409], answers
        refused = mids[[status for _, status, _ in answers].index(409)]
        assert (await api.summary(refused))["status"] == "planned"
