"""A MongoDB cursor that dies on a long run (the connection is cut) is opened again after the
last `_id` handed on: the run completes with exactly the source documents."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import AsyncMongoClient

from service.store.base import StateStore
from tests.support import pg
from tests.support.proxy import CuttingProxy
from tests.support.runs import Watcher, prepare

DOCS = 12_000


async def test_a_cut_connection_reopens_the_cursor_and_the_run_ends_exact(
    store: StateStore, data_dir: Path, mongo_url: str, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    if urlsplit(mongo_url).port is None:
        pytest.skip("needs a MongoDB URL with an explicit host:port to proxy")
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_url)
    try:
        await client.get_default_database().things.insert_many([{"_id": i, "n": f"v{i}"} for i in range(DOCS)])
    finally:
        await client.close()
    parts = urlsplit(mongo_url)
    async with CuttingProxy(parts.hostname or "127.0.0.1", parts.port or 27017) as proxy:
        via_proxy = urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}", query="directConnection=true"))
        watcher = Watcher()
        run = await prepare(store, {"source": via_proxy, "target": pg_dsn, "batchSize": 200, "parallelBatches": 1},
                            data_dir, listeners=[watcher])
        task = asyncio.create_task(run.run())
        try:
            await asyncio.wait_for(watcher.committed.wait(), 30)
            proxy.cut()  # mid-read: the open cursor's connection is gone
            await asyncio.wait_for(task, 60)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    assert run.status == "completed"
    assert any("reopening it after the last _id" in r.getMessage() for r in caplog.records)
    rows = await pg.fetch(pg_dsn, 'SELECT "_id", n FROM things ORDER BY "_id"')
    assert rows == [(i, f"v{i}") for i in range(DOCS)]
