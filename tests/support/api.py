"""The real aiohttp app driven by aiohttp's test client: a tiny wrapper that adds the token and
decodes JSON, and waits for a migration's status through the public API."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp.test_utils import TestClient

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    async def call(self, method: str, path: str, body: object = None, *, status: int | None = 200,
                   headers: Mapping[str, str] | None = None) -> Any:
        """JSON of the answer; asserts the status unless `status` is None."""
        kwargs: dict[str, Any] = {"headers": {**AUTH, **(headers or {})}}
        if body is not None:
            kwargs["json"] = body
        async with self.client.request(method, path, **kwargs) as resp:
            text = await resp.text()
            if status is not None:
                assert resp.status == status, f"{method} {path} -> {resp.status}: {text}"
            if resp.content_type == "application/json":
                return await resp.json()
            return text

    async def post(self, path: str, body: object = None, **kw: Any) -> Any:
        return await self.call("POST", path, {} if body is None else body, **kw)

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.call("GET", path, **kw)

    async def summary(self, migration: str | None = None) -> dict[str, Any]:
        path = f"/api/migrations/{migration}/summary" if migration else "/api/migrations/summary"
        body = await self.get(path)
        return body["summary"]  # type: ignore[no-any-return]

    async def wait_status(self, *statuses: str, migration: str | None = None, timeout: float = 60) -> dict[str, Any]:
        """Poll the summary until the status is one of `statuses` (the public way a user waits)."""
        async with asyncio.timeout(timeout):
            while True:
                summary = await self.summary(migration)
                if summary["status"] in statuses:
                    return summary
                await asyncio.sleep(0.02)

    async def start(self, source: str, target: str, **spec: Any) -> str:
        """initialize → plan → execute; the migration id."""
        init = await self.post("/api/migrations/initialize", {"sourceDB": source, "targetDB": target})
        mid = init["migration"]["id"]
        await self.post(f"/api/migrations/{mid}/plan", spec)
        await self.post(f"/api/migrations/{mid}/execute", status=202)
        return str(mid)
