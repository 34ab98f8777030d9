"""A flood of 1,000 control requests — pause, resume, cancel, execute, plan, summary, over both
route forms, 50 at a time — against a running PostgreSQL → PostgreSQL migration. Every answer is
a success or a 409 with the documented error body, never a server error; the service answers
`/health` within a second throughout; and once resumed to its end the target holds exactly the
source rows. (tests/api/test_control_storm.py has the storm of small bursts and WebSocket actions.)"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from tests.api.conftest import ROWS
from tests.api.test_control_storm import resume_until_completed
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.api import AUTH, Api

SEED = 20_261_125
REQUESTS = 1_000
WAVE = 50
HEALTH_LIMIT = 1.0  # seconds
# (verb, HTTP method, weight)
VERBS = (("pause", "POST", 24), ("resume", "POST", 24), ("cancel", "POST", 4), ("execute", "POST", 8),
         ("plan", "POST", 8), ("plan", "GET", 8), ("summary", "GET", 24))
ALWAYS_200 = {("GET", "plan"), ("GET", "summary")}  # reads: never refused while the migration exists


async def control(api: Api, method: str, path: str) -> tuple[str, int, dict[str, Any] | str]:
    """(method path, status, JSON body or the text when it is not JSON) of one request."""
    kwargs: dict[str, Any] = {"headers": AUTH}
    if method == "POST":
        kwargs["json"] = {"tables": ["big"], "batchSize": 100} if path.endswith("/plan") else {}
    async with api.client.request(method, path, **kwargs) as resp:
        text = await resp.text()
        try:
            body: dict[str, Any] | str = await resp.json(content_type=None)
        except ValueError:
            body = text
        return f"{method} {path}", resp.status, body


def problems_of(answer: tuple[str, int, dict[str, Any] | str]) -> list[str]:
    """What is wrong with one answer (nothing for a success or a documented 409)."""
    request, status, body = answer
    if status not in (200, 202, 409):
        return [f"{request} -> {status}: {body}"]
    if not isinstance(body, dict):
        return [f"{request} -> {status} is not a JSON object: {body!r}"]
    if status == 409:
        error = body.get("error")
        if (body.get("success") is not False or not isinstance(error, dict) or not isinstance(error.get("code"), str)
                or not isinstance(error.get("message"), str) or not error["message"]):
            return [f"{request} -> 409 without the error body {{success: false, error: {{code, message}}}}: {body}"]
        return []
    if body.get("success") is not True:
        return [f"{request} -> {status} without success: true: {body}"]
    return []


async def watch_health(url: str, stop: asyncio.Event, delays: list[float]) -> None:
    """GET /health on a connection of its own every 50 ms until `stop`; each answer's delay."""
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            started = time.monotonic()
            try:
                async with asyncio.timeout(5), session.get(url) as resp:
                    assert resp.status == 200, f"/health -> {resp.status}"
                    await resp.read()
            except TimeoutError:
                pass  # counted as 5 s below
            delays.append(time.monotonic() - started)
            await asyncio.sleep(0.05)


async def test_a_flood_of_1000_control_requests_gets_no_server_error_and_ends_with_exactly_the_source_rows(
    api: Api, new_pg_db: NewDatabase, big_source: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="service")
    rng = random.Random(SEED)
    target = await new_pg_db()
    mid = await api.start(big_source, target, tables=["big"], batchSize=100)
    await api.wait_status("executing", migration=mid)
    verbs, weights = [(v, m) for v, m, _ in VERBS], [w for _, _, w in VERBS]

    stop, delays = asyncio.Event(), []
    health = asyncio.create_task(watch_health(str(api.client.make_url("/health")), stop, delays))
    answers: list[tuple[str, int, dict[str, Any] | str]] = []
    statuses_seen: set[str] = set()
    try:
        await asyncio.sleep(0.2)  # a first probe before the flood
        for _ in range(REQUESTS // WAVE):
            wave = []
            for verb, method in rng.choices(verbs, weights, k=WAVE):
                prefix = f"/api/migrations/{mid}" if rng.random() < 0.5 else "/api/migrations"
                wave.append(control(api, method, f"{prefix}/{verb}"))
            answers += await asyncio.gather(*wave)
            statuses_seen.add((await api.summary(mid))["status"])
    finally:
        stop.set()
        await health

    assert len(answers) == REQUESTS
    problems = [p for a in answers for p in problems_of(a)]
    assert not problems, f"{len(problems)} bad answer(s) of {REQUESTS}:\n" + "\n".join(problems[:20])
    for request, status, _ in answers:
        method, path = request.split(" ")
        if (method, path.rsplit("/", 1)[1]) in ALWAYS_200:
            assert status == 200, f"{request} -> {status}"
    tally = Counter((r.split(" ")[0], r.rsplit("/", 1)[1], s) for r, s, _ in answers)
    print(sorted(tally.items()), sorted(statuses_seen), f"/health max {max(delays, default=0):.3f} s")
    for verb in ("pause", "resume", "cancel"):  # the flood met a live run, not only refusals
        assert tally["POST", verb, 200] > 0, f"no {verb} succeeded: {sorted(tally.items())}"
    assert statuses_seen & {"executing", "pausing", "paused", "cancelled"}, statuses_seen

    assert len(delays) >= 5, f"only {len(delays)} /health probes during the flood"
    slow = [round(d, 3) for d in delays if d > HEALTH_LIMIT]
    assert not slow, f"/health took over {HEALTH_LIMIT:g} s during the flood: {slow} (of {len(delays)} probes)"
    # The service's own errors (asyncpg may report a connection future it lost while a cancelled
    # read was being torn down: driver noise, not the service's answer to anyone).
    unexpected = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("service")]
    assert not unexpected, f"the service logged errors during the flood: {unexpected[:5]}"

    summary = await resume_until_completed(api, mid)
    assert (summary["migratedCount"], summary["failedCount"], summary["readCount"]) == (ROWS, 0, ROWS), summary
    assert (await api.summary(mid))["status"] == "completed"
    await pg.assert_exact_copy(big_source, target)
