"""Session-wide PostgreSQL server, a fresh database per test, and a state store per test.

PostgreSQL is `TEST_PG_DSN` when set (an existing server: databases are created in it), else a
throw-away cluster started once for the session (tests/support/pgcluster.py).
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from service.store import StateStore, open_state_store
from tests.support.cli import Cli
from tests.support.mongo import MongoServer
from tests.support.pgcluster import Cluster

NewDatabase = Callable[[], Awaitable[str]]


class PgServer:
    """A PostgreSQL server the tests may create databases in."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn

    def dsn_for(self, db: str) -> str:
        return urlunsplit(urlsplit(self.admin_dsn)._replace(path=f"/{db}"))


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """Collect garbage after each test, so that a file or connection a test leaked (a ResourceWarning,
    an error under filterwarnings=error) is reported by that test and not by a later one."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    existing = os.environ.get("TEST_PG_DSN")
    if existing:
        yield PgServer(existing)
        return
    cluster = Cluster().start()
    try:
        yield PgServer(cluster.dsn)
    finally:
        cluster.stop()


@pytest.fixture
async def new_pg_db(pg_server: PgServer) -> AsyncIterator[NewDatabase]:
    """A factory of fresh, empty databases (`test_<uuid>`), dropped after the test."""
    made: list[str] = []

    async def make() -> str:
        name = f"test_{uuid.uuid4().hex}"
        conn = await asyncpg.connect(pg_server.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        made.append(name)
        return pg_server.dsn_for(name)

    yield make
    if made:
        conn = await asyncpg.connect(pg_server.admin_dsn)
        try:
            for name in made:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def pg_dsn(new_pg_db: NewDatabase) -> str:
    """The DSN of a fresh database of this test's own."""
    return await new_pg_db()


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoServer]:
    """TEST_MONGO_URL when set (a real server), else an nx-27017 stand-in for the session."""
    server = MongoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def new_mongo_db(mongo_server: MongoServer) -> Callable[[], str]:
    """A factory of URLs of fresh databases (`test_<uuid>`) on the session's MongoDB server."""

    def make() -> str:
        return urlunsplit(urlsplit(mongo_server.url)._replace(path=f"/t{uuid.uuid4().hex[:16]}"))

    return make


@pytest.fixture
def mongo_url(new_mongo_db: Callable[[], str]) -> str:
    return new_mongo_db()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """MIGRATOR_DATA_DIR of the test: where relative file URLs resolve."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[StateStore]:
    opened = await open_state_store(state_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def cli(tmp_path: Path, state_url: str, data_dir: Path) -> Cli:
    """`migrator` as a subprocess with this test's MIGRATOR_STATE_URL and MIGRATOR_DATA_DIR."""
    return Cli(tmp_path, state_url=state_url, data_dir=data_dir)
