"""A run the target refuses: it says `failed` with the reason, and once the target is fixed, running
the same spec again resumes it to exactly the source rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.core.errors import MigratorError
from service.store import SqliteStateStore
from tests.runs.conftest import BIG_ROWS
from tests.support import pg
from tests.support.runs import prepare


@pytest.fixture
async def strict_target(pg_dsn: str) -> str:
    """A target whose `big` refuses amounts of 20000 and more (row 16000 onwards)."""
    await pg.execute(pg_dsn, "CREATE TABLE big (id bigint PRIMARY KEY, name text,"
                             " amount numeric(12,2) CONSTRAINT amount_cap CHECK (amount < 20000), note text)")
    return pg_dsn


async def test_a_batch_the_target_refuses_fails_the_run_with_the_reason(
    store: SqliteStateStore, data_dir: Path, big_source: str, strict_target: str
) -> None:
    # onError: stop — by default the refused rows would be rejects and the rest loaded
    migration = await prepare(store, {"source": big_source, "target": strict_target, "batchSize": 1000,
                                      "onError": "stop"}, data_dir)

    with pytest.raises(MigratorError) as raised:
        async with asyncio.timeout(60):
            await migration.run()

    assert "amount_cap" in raised.value.message
    assert migration.status == "failed"
    record = await store.get_migration(migration.id)
    assert record is not None and record.status == "failed" and record.error and "amount_cap" in record.error
    assert 0 < await pg.count_rows(strict_target, "big") < BIG_ROWS


async def test_a_failed_run_resumes_to_exactly_the_source_rows_once_the_target_is_fixed(
    store: SqliteStateStore, data_dir: Path, big_source: str, strict_target: str
) -> None:
    spec = {"source": big_source, "target": strict_target, "batchSize": 1000, "onError": "stop"}
    failed = await prepare(store, spec, data_dir)
    with pytest.raises(MigratorError):
        await failed.run()
    await pg.execute(strict_target, "ALTER TABLE big DROP CONSTRAINT amount_cap")

    again = await prepare(store, spec, data_dir)
    async with asyncio.timeout(60):
        await again.run()

    assert again.id == failed.id
    assert again.status == "completed"
    assert await pg.digest(strict_target, "big", ["id"]) == await pg.digest(big_source, "big", ["id"])
