"""open_state_store: which store a MIGRATOR_STATE_URL names, and where a SQLite one lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.errors import ConfigError
from service.store import PostgresStateStore, SqliteStateStore, open_state_store


async def test_a_relative_sqlite_url_with_a_variable_opens_a_file_under_the_base_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATOR_TEST_STATE_DIR", "var")

    store = await open_state_store("sqlite:///${MIGRATOR_TEST_STATE_DIR}/state.db", base=tmp_path)
    await store.close()

    assert isinstance(store, SqliteStateStore)
    assert (tmp_path / "var" / "state.db").is_file()
    assert (tmp_path / "var" / "state.db").stat().st_mode & 0o777 == 0o600


async def test_a_postgres_scheme_url_opens_a_postgresql_store(pg_dsn: str) -> None:
    store = await open_state_store(pg_dsn.replace("postgresql://", "postgres://", 1))
    await store.close()

    assert isinstance(store, PostgresStateStore)


@pytest.mark.parametrize(("url", "says"), [
    ("mysql://db/state", "must be sqlite:///path or postgresql://"),
    ("sqlite://state.db", "must look like sqlite:///var/state.db"),
    ("postgresql://app:${MIGRATOR_TEST_UNSET}@db/state", "MIGRATOR_TEST_UNSET"),
])
async def test_a_state_url_it_cannot_use_is_a_config_error(
    url: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MIGRATOR_TEST_UNSET", raising=False)

    with pytest.raises(ConfigError, match=says):
        await open_state_store(url)
