"""What only the PostgreSQL state store does: stay inside its own schema, set itself up once when
several services start together, and say clearly (password masked) when it cannot connect."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg
import pytest

from service.core.errors import ConfigError
from service.store import MigrationRecord, open_state_store
from tests.conftest import NewDatabase
from tests.support.pgcluster import free_port

SECRET = "s3cr3t-Pa55"


async def test_the_state_lives_in_schema_migrator_state_beside_a_user_table_of_the_same_name(
    pg_dsn: str,
) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE migrations (name text); INSERT INTO migrations VALUES ('mine')")
        store = await open_state_store(pg_dsn)
        try:
            await store.create_migration(MigrationRecord(
                id="m1", fingerprint="fp", spec={}, source="csv:///in", target=pg_dsn, status="initialized",
                created_at="2026-11-25T10:00:00.000Z"))
        finally:
            await store.close()

        assert [tuple(r) for r in await conn.fetch("SELECT * FROM public.migrations")] == [("mine",)]
        assert await conn.fetchval("SELECT id FROM migrator_state.migrations") == "m1"
    finally:
        await conn.close()


async def test_services_opening_one_fresh_state_database_together_all_succeed(new_pg_db: NewDatabase) -> None:
    url = await new_pg_db()

    stores = await asyncio.gather(*(open_state_store(url) for _ in range(4)))

    try:
        assert [await s.list_migrations() for s in stores] == [[]] * 4
    finally:
        for s in stores:
            await s.close()


@pytest.mark.parametrize("written", [f"postgresql://app:{SECRET}@127.0.0.1:{{port}}/state",
                                     "postgres://app:${MIGRATOR_TEST_STATE_PASSWORD}@127.0.0.1:{port}/state"])
async def test_an_unreachable_state_database_is_a_config_error_naming_it_without_the_password(
    written: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATOR_TEST_STATE_PASSWORD", SECRET)
    port = free_port()

    with pytest.raises(ConfigError) as caught:
        await open_state_store(written.replace("{port}", str(port)))

    message = caught.value.message
    assert f"app:***@127.0.0.1:{port}/state" in message and "state store" in message
    assert SECRET not in message and SECRET not in repr(caught.value)


async def test_a_state_database_the_server_refuses_is_a_config_error_without_the_password(pg_dsn: str) -> None:
    server = urlsplit(pg_dsn)
    url = f"postgresql://nobody_here:{SECRET}@{server.hostname}:{server.port}/no_such_database"

    with pytest.raises(ConfigError) as caught:
        await open_state_store(url)

    assert f"nobody_here:***@{server.hostname}:{server.port}/no_such_database" in caught.value.message
    assert SECRET not in caught.value.message
