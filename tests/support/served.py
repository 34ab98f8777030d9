"""A real `migrator serve` subprocess on a free port, driven over HTTP (restart and browser tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.support.api import AUTH, TOKEN
from tests.support.cli import Cli
from tests.support.pgcluster import free_port


class Served:
    """A `migrator serve` subprocess on its own port, driven over real HTTP."""

    def __init__(self, proc: asyncio.subprocess.Process, base: str, http: aiohttp.ClientSession) -> None:
        self.proc, self.base, self.http = proc, base, http

    async def call(self, method: str, path: str, body: object = None, status: int = 200) -> Any:
        async with self.http.request(method, self.base + path, json=body, headers=AUTH) as resp:
            data = await resp.json()
            assert resp.status == status, f"{method} {path} -> {resp.status}: {data}"
            return data

    async def summary(self, mid: str) -> dict[str, Any]:
        return (await self.call("GET", f"/api/migrations/{mid}/summary"))["summary"]  # type: ignore[no-any-return]

    async def wait(self, mid: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(60):
            while not done(summary := await self.summary(mid)):
                await asyncio.sleep(0.005)
        return summary


@contextlib.asynccontextmanager
async def serving(cli: Cli, http: aiohttp.ClientSession, port: int | None = None) -> AsyncIterator[Served]:
    """Start `migrator serve` (on `port`, default a free one) and wait for its /health; stop it
    (if still alive) on the way out."""
    port = port or free_port()
    cli.env.update(MIGRATOR_API_TOKEN=TOKEN, MIGRATOR_HOST="127.0.0.1", MIGRATOR_PORT=str(port))
    proc = await cli.start("serve")
    base = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(30):
            while True:
                if proc.returncode is not None:
                    pytest.fail(f"migrator serve ended (exit {proc.returncode}): {cli.output()[1]}")
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get(base + "/health") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.05)
        yield Served(proc, base, http)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(20):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
