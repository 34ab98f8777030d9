"""The monitor page during a continuous incremental sync, in headless Chromium against a real
`migrator serve` and PostgreSQL: the sync line shows the pass and the lag, and follows the passes
live as the source changes. Screenshots: var/test-artifacts/dashboard/."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Page, expect

from tests.conftest import NewDatabase
from tests.dashboard.conftest import Shots
from tests.support import pg
from tests.support.api import TOKEN
from tests.support.served import Served

pytestmark = pytest.mark.slow

ITEMS = "CREATE TABLE items (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now())"


async def rows(dsn: str) -> list[tuple[object, ...]]:
    return await pg.fetch(dsn, "SELECT * FROM items ORDER BY id")


async def test_the_sync_line_shows_each_pass_and_the_lag_live(
    page: Page, served: Served, new_pg_db: NewDatabase, shots: Shots
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await pg.execute(source, ITEMS, "INSERT INTO items (id, name, updated_at) SELECT i, 'item ' || i, "
                                    "'2026-01-01'::timestamptz + i * interval '1 second' FROM generate_series(1, 500) i")
    init = await served.call("POST", "/api/migrations/initialize", {"sourceDB": source, "targetDB": target})
    mid = init["migration"]["id"]
    await served.call("POST", f"/api/migrations/{mid}/plan", {"tables": ["items"], "batchSize": 100,
                                                              "incremental": {"items": {"cursor": "updated_at"}},
                                                              "detectDeletes": True})
    await served.call("POST", f"/api/migrations/{mid}/sync", {"every": 1}, status=202)

    await page.goto(f"{served.base}/admin/migrations?token={TOKEN}")
    await expect(page.locator("#migration-id")).to_have_text(mid)
    line = page.locator("#sync-status")
    await expect(line).to_be_visible(timeout=20_000)
    await expect(line).to_contain_text("Sync pass")
    await expect(line).to_have_attribute("data-lag-rows", "0", timeout=20_000)
    await expect(line).to_contain_text("in step with the source (lag 0)")
    await expect(line).to_contain_text("a pass every")
    await expect(page.locator("#status")).to_have_text("executing")
    assert await rows(target) == await rows(source)
    await shots("in-step")
    seen = int(await line.get_attribute("data-pass") or "0")

    await pg.execute(source, "INSERT INTO items (id, name) SELECT i, 'new ' || i FROM generate_series(501, 520) i",
                     "UPDATE items SET name = 'changed', updated_at = now() WHERE id <= 10",
                     "DELETE FROM items WHERE id BETWEEN 11 AND 15")
    async with asyncio.timeout(20):
        while await rows(target) != await rows(source):
            await asyncio.sleep(0.2)
    later = re.compile("^(" + "|".join(str(n) for n in range(seen + 1, seen + 60)) + ")$")
    await expect(line).to_have_attribute("data-pass", later, timeout=20_000)
    await expect(line).to_have_attribute("data-lag-rows", "0", timeout=20_000)
    await expect(line).to_contain_text("in step with the source (lag 0)")
    assert int(await line.get_attribute("data-pass") or "0") >= 1
    assert await rows(target) == await rows(source)
    assert len(await rows(target)) == 500 + 20 - 5
    await shots("caught-up")

    cut = await served.call("POST", f"/api/migrations/{mid}/cutover", {})
    assert cut["ok"] is True and cut["lagRows"] == 0 and cut["status"] == "completed", cut
    await expect(page.locator("#status")).to_have_text("completed", timeout=20_000)
    assert await rows(target) == await rows(source)
    await shots("cut-over")
    # The page watching live learns of the cutover too (not only after a reload).
    await expect(line).to_contain_text("cut over", timeout=10_000)
    await expect(line).to_have_attribute("data-lag-rows", "0")
