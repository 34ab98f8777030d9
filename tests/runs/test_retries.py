"""Transient failures are retried from the last checkpoint and the copy stays exact; a dead
connection is noticed within the spec's timeout; retries are bounded; terminal failures and
`retryFailed: false` fail at once, naming the cause. A TCP proxy between the run and PostgreSQL
cuts or stalls the connections mid-run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from service.core.errors import EndpointError, MigratorError, RetriesExhausted
from service.store.base import StateStore
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.bigtable import create_big_table
from tests.support.proxy import ClosingProxy, CuttingProxy, StallingProxy
from tests.support.runs import prepare

ROWS = 60_000


def through(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}"))


def address(dsn: str) -> tuple[str, int]:
    parts = urlsplit(dsn)
    return parts.hostname or "127.0.0.1", parts.port or 5432


@pytest.fixture
async def dbs(new_pg_db: NewDatabase) -> tuple[str, str]:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, ROWS)
    return source, target


async def when_loading(target: str, rows: int = 1) -> None:
    """Once the target's table has at least `rows` rows."""
    while True:
        if await pg.fetchval(target, "SELECT to_regclass('big') IS NOT NULL") and (
                await pg.count_rows(target, "big") >= rows):
            return
        await asyncio.sleep(0.01)


async def logs(store: StateStore, migration_id: str) -> list[str]:
    return [e.message for e in await store.logs(migration_id, limit=10_000)]


@pytest.mark.parametrize("side", ["source", "target"])
async def test_connections_cut_twice_mid_run_are_retried_and_the_copy_is_exact(
    store: StateStore, data_dir: Path, dbs: tuple[str, str], side: str
) -> None:
    source, target = dbs
    async with CuttingProxy(*address(source if side == "source" else target)) as proxy:
        ends = ({"source": through(source, proxy.port), "target": target} if side == "source"
                else {"source": source, "target": through(target, proxy.port)})
        run = await prepare(store, {**ends, "batchSize": 1000, "retryFailed": {"attempts": 5, "backoff": 0.05}},
                            data_dir)
        task = asyncio.create_task(run.run())
        for share in (0.2, 0.5):
            await when_loading(target, int(ROWS * share))
            proxy.cut()
        await asyncio.wait_for(task, 60)

    assert run.status == "completed"
    await pg.assert_exact_copy(source, target)
    retried = [m for m in await logs(store, run.id) if "retrying from the last checkpoint" in m]
    assert len(retried) >= 2, retried
    assert run.tables["big"].written == ROWS and run.tables["big"].failed == 0


async def test_a_stalled_connection_is_noticed_within_the_timeout_and_the_run_completes(
    store: StateStore, data_dir: Path, dbs: tuple[str, str]
) -> None:
    source, target = dbs
    async with StallingProxy(*address(target)) as proxy:
        run = await prepare(store, {"source": source, "target": through(target, proxy.port), "batchSize": 1000,
                                    "timeout": 1.5, "retryFailed": {"attempts": 3, "backoff": 0.05}}, data_dir)
        task = asyncio.create_task(run.run())
        await when_loading(target, ROWS // 3)
        stalled_at = time.monotonic()
        proxy.stall()  # the writers' connections hang; new ones work
        await asyncio.wait_for(task, 60)
        took = time.monotonic() - stalled_at

    assert run.status == "completed"
    await pg.assert_exact_copy(source, target)
    assert any("TimeoutError" in m and "retrying" in m for m in await logs(store, run.id))
    assert took < 30, f"the stall took {took:.1f} s to get over"


async def test_retries_are_bounded_and_the_failure_names_the_cause(
    store: StateStore, data_dir: Path, dbs: tuple[str, str]
) -> None:
    source, target = dbs
    async with ClosingProxy(*address(target)) as proxy:
        run = await prepare(store, {"source": source, "target": through(target, proxy.port), "batchSize": 1000,
                                    "timeout": 2, "retryFailed": {"attempts": 2, "backoff": 0.05}}, data_dir)
        task = asyncio.create_task(run.run())
        await when_loading(target, 1000)
        proxy.close_for_good()
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match="still failing after 2 retries"):
            await asyncio.wait_for(task, 60)
        took = time.monotonic() - started

    assert run.status == "failed"
    assert took < 20
    assert len([m for m in await logs(store, run.id) if "retrying" in m]) == 2
    record = await store.get_migration(run.id)
    assert record is not None and record.error and "big" in record.error


async def test_with_retry_failed_false_the_first_cut_fails_the_run(
    store: StateStore, data_dir: Path, dbs: tuple[str, str]
) -> None:
    source, target = dbs
    async with CuttingProxy(*address(target)) as proxy:
        run = await prepare(store, {"source": source, "target": through(target, proxy.port), "batchSize": 1000,
                                    "retryFailed": False}, data_dir)
        task = asyncio.create_task(run.run())
        await when_loading(target, 5000)
        proxy.cut()
        with pytest.raises(MigratorError) as failed:
            await asyncio.wait_for(task, 30)
        assert "connection" in failed.value.message.lower()

    assert run.status == "failed"
    assert not [m for m in await logs(store, run.id) if "retrying" in m]
    loaded = await pg.count_rows(target, "big")
    assert 0 < loaded < ROWS  # what was committed stays: a resume goes on from there


async def test_a_terminal_error_is_not_retried(store: StateStore, data_dir: Path, dbs: tuple[str, str]) -> None:
    source, target = dbs
    await pg.execute(target, "DROP ROLE IF EXISTS reader_only", "CREATE ROLE reader_only LOGIN",
                     "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    parts = urlsplit(target)
    limited = urlunsplit(parts._replace(netloc=f"reader_only@{parts.hostname}:{parts.port}"))
    run = await prepare(store, {"source": source, "target": limited, "retryFailed": {"attempts": 5, "backoff": 1}},
                        data_dir)
    started = time.monotonic()
    with pytest.raises(EndpointError, match="permission denied"):
        await run.run()

    assert time.monotonic() - started < 5  # no backoff waited
    assert not [m for m in await logs(store, run.id) if "retrying" in m]
