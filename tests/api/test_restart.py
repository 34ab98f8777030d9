"""A migration outlives its service: stopped gracefully or killed with SIGKILL mid-run, it is
`interrupted` after the restart and resumes to exactly the source rows (DESIGN.md §3). A literal
password is never stored, so such a migration resumes only once the URLs are sent again."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from tests.api.conftest import ENDED, ROWS, SPEC
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.api import Api
from tests.support.cli import Cli
from tests.support.served import serving


async def migrated_some(api: Api, mid: str) -> None:
    """Wait until the run has committed some rows and still runs."""
    async with asyncio.timeout(30):
        while True:
            summary = await api.summary(mid)
            assert summary["status"] not in ENDED, f"the run ended before the restart: {summary}"
            if summary["migratedCount"] > 0:
                return
            await asyncio.sleep(0.01)


async def resume_to_the_end(api: Api, mid: str, body: dict[str, str] | None = None) -> dict[str, Any]:
    assert (await api.post(f"/api/migrations/{mid}/resume", body))["status"] == "executing"
    done = await api.wait_status(*ENDED, migration=mid)
    assert done["status"] == "completed", f"{done['status']}: {done['error']}"
    return done


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_a_run_stopped_with_the_service_is_interrupted_and_resumes_after_the_restart(
    store: str, make_api: Callable[..., Any], new_pg_db: NewDatabase, big_source: str
) -> None:
    target = await new_pg_db()
    changes = {"state_url": await new_pg_db()} if store == "postgresql" else {}
    async with make_api(**changes) as api:
        mid = await api.start(big_source, target, **SPEC)
        await migrated_some(api, mid)
    # Leaving the context stopped the service: the batches in flight committed, then the run stopped.

    async with make_api(**changes) as api:
        interrupted = await api.summary(mid)
        assert interrupted["status"] == "interrupted"
        assert 0 < interrupted["migratedCount"] < ROWS
        assert await pg.count_rows(target, "big") == interrupted["migratedCount"]

        done = await resume_to_the_end(api, mid)

    assert done["migratedCount"] == ROWS
    await pg.assert_exact_copy(big_source, target)


def with_password(dsn: str, password: str) -> str:
    """The DSN with a literal password (trust auth accepts any; a DSN that has one keeps it)."""
    parts = urlsplit(dsn)
    if parts.password is not None:
        return dsn
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


async def test_a_literal_password_is_not_stored_so_resume_after_restart_asks_for_the_urls(
    make_api: Callable[..., Any], new_pg_db: NewDatabase, big_source: str, tmp_path: Path
) -> None:
    source, target = with_password(big_source, "pw"), with_password(await new_pg_db(), "pw")
    secret = f":{urlsplit(source).password}@".encode()
    async with make_api() as api:
        mid = await api.start(source, target, **SPEC)
        await migrated_some(api, mid)

    stored = [p for p in tmp_path.glob("state.db*") if p.is_file()]
    assert stored and not [p.name for p in stored if secret in p.read_bytes()], "the password was stored"
    async with make_api() as api:
        assert (await api.summary(mid))["status"] == "interrupted"
        spec = (await api.get(f"/api/migrations/{mid}"))["migration"]["spec"]
        assert ":***@" in spec["source"] and ":***@" in spec["target"]

        refused = await api.post(f"/api/migrations/{mid}/resume", status=409)
        assert refused["error"]["code"] == "wrong_state"
        assert "sourceDB" in refused["error"]["message"] and "again" in refused["error"]["message"]
        assert (await api.summary(mid))["status"] == "interrupted"

        done = await resume_to_the_end(api, mid, {"sourceDB": source, "targetDB": target})

    assert done["migratedCount"] == ROWS
    await pg.assert_exact_copy(big_source, target)


@pytest.mark.slow
async def test_a_run_whose_service_was_killed_is_interrupted_and_a_new_service_resumes_it(
    cli: Cli, new_pg_db: NewDatabase, big_source: str
) -> None:
    target = await new_pg_db()
    async with aiohttp.ClientSession() as http:
        async with serving(cli, http) as served:
            init = await served.call("POST", "/api/migrations/initialize", {"sourceDB": big_source, "targetDB": target})
            mid = init["migration"]["id"]
            await served.call("POST", f"/api/migrations/{mid}/plan", SPEC)
            await served.call("POST", f"/api/migrations/{mid}/execute", {}, status=202)
            await served.wait(mid, lambda s: s["migratedCount"] > 0 or s["status"] in ENDED)
            served.proc.send_signal(signal.SIGKILL)
            assert await served.proc.wait() == -signal.SIGKILL
        assert 0 < await pg.count_rows(target, "big") < ROWS, "the run finished before the kill; use more rows"

        async with serving(cli, http) as served:
            interrupted = await served.summary(mid)
            assert interrupted["status"] == "interrupted"
            assert (await served.call("POST", f"/api/migrations/{mid}/resume", {}))["status"] == "executing"
            done = await served.wait(mid, lambda s: s["status"] in ENDED)
            assert done["status"] == "completed", f"{done['status']}: {done['error']}"
            assert done["migratedCount"] == ROWS

    await pg.assert_exact_copy(big_source, target)
