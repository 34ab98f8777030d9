"""The service app per test: its own state store and data folder, token TOKEN."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service.api.app import create_app
from service.core.settings import Settings
from tests.conftest import NewDatabase
from tests.support.api import TOKEN, Api
from tests.support.bigtable import create_big_table


@pytest.fixture
def settings(state_url: str, data_dir: Path) -> Settings:
    return Settings(state_url=state_url, data_dir=data_dir, api_token=TOKEN, timeout=5.0)


@pytest.fixture
async def app(settings: Settings) -> web.Application:
    return create_app(settings, token=TOKEN)


@pytest.fixture
async def api(app: web.Application) -> AsyncIterator[Api]:
    async with TestClient(TestServer(app)) as client:
        yield Api(client)


@pytest.fixture
def make_api(settings: Settings) -> Callable[..., Any]:
    """Start another app (e.g. after a "restart") on the same state store: `async with make_api() as api`."""

    @contextlib.asynccontextmanager
    async def start(**changes: Any) -> AsyncIterator[Api]:
        app = create_app(dataclasses.replace(settings, **changes), token=TOKEN)
        async with TestClient(TestServer(app)) as client:
            yield Api(client)

    return start


ROWS = 50_000  # rows of `big_source`'s table `big`: long enough to pause a run with SPEC mid-way
SPEC = {"tables": ["big"], "batchSize": 500}
ENDED = ("completed", "failed", "cancelled", "interrupted", "rolled_back")


@pytest.fixture
async def big_source(new_pg_db: NewDatabase) -> str:
    dsn = await new_pg_db()
    await create_big_table(dsn, ROWS)
    return dsn
