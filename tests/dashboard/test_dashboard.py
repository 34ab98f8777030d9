"""The monitor page in headless Chromium against a real service and PostgreSQL: everything the
seed's labs do, without a terminal — initialize, plan, execute, watch progress reach 100 %,
pause and resume, see a rejected row, verify, roll back — and the token prompt, a reload
mid-run, and a narrow screen. Screenshots of each step: var/test-artifacts/dashboard/."""

from __future__ import annotations

import re

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.conftest import NewDatabase
from tests.dashboard.conftest import Shots
from tests.support import pg
from tests.support.api import TOKEN
from tests.support.bigtable import create_big_table
from tests.support.cli import Cli
from tests.support.pgcluster import free_port
from tests.support.served import Served, serving

pytestmark = pytest.mark.slow
PEOPLE = 300_000


@pytest.fixture
async def databases(new_pg_db: NewDatabase) -> tuple[str, str]:
    """A source with a big table and an `orders` table holding one value the target's integer
    column cannot take (row 7: "many"); a target that already has `orders`."""
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, PEOPLE, table="people")
    await pg.execute(source, "CREATE TABLE orders (id integer PRIMARY KEY, qty text)",
                     "INSERT INTO orders SELECT i, CASE WHEN i = 7 THEN 'many' ELSE i::text END "
                     "FROM generate_series(1, 50) i")
    await pg.execute(target, "CREATE TABLE orders (id integer PRIMARY KEY, qty integer)")
    return source, target


async def status(page: Page) -> str:
    return (await page.locator("#status").text_content() or "").strip()


async def test_the_whole_flow_from_initialize_to_rollback(
    page: Page, served: Served, databases: tuple[str, str], shots: Shots
) -> None:
    source, target = databases
    await page.goto(f"{served.base}/admin/migrations?token={TOKEN}")
    await expect(page.get_by_label("Source DB")).to_be_visible()
    assert "token=" not in page.url  # kept in sessionStorage, not in the address bar
    await shots("opened")

    # 1. Initialize
    await page.get_by_label("Source DB").fill(source)
    await page.get_by_label("Target DB").fill(target)
    await page.get_by_role("button", name="Initialize").click()
    await expect(page.locator("#init-result")).to_contain_text("Migration manager initialized successfully")
    await expect(page.locator("#source-status")).to_contain_text("Source: connected")
    await expect(page.locator("#target-status")).to_contain_text("Target: connected")
    await shots("initialized")

    # 2. Plan: the discovered tables, options, the review
    await expect(page.get_by_label("people", exact=False).first).to_be_visible()
    await expect(page.locator("#table-choices")).to_contain_text(f"{PEOPLE:,}")
    await page.get_by_label("Batch size").fill("1000")
    await page.get_by_label("Parallel batches").fill("1")
    await page.get_by_role("button", name="Create Plan").click()
    await expect(page.locator("#plan-total")).to_contain_text(f"{PEOPLE + 50:,}")
    await expect(page.locator("#plan-order")).to_contain_text("people")
    await expect(page.locator("#plan-estimate")).not_to_be_empty()
    await shots("planned")

    # 3. Execute, pause, resume: progress from the WebSocket
    await page.get_by_role("button", name="Execute Migration").click()
    await expect(page.locator("#status")).to_have_text(re.compile("executing|completed"))
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#status")).to_have_text("paused", timeout=20_000)
    overall = page.get_by_role("progressbar", name="Overall progress")
    paused_at = int(await overall.get_attribute("aria-valuenow") or "0")
    assert paused_at < 100
    await shots("paused")
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator("#status")).to_have_text("completed", timeout=60_000)
    await expect(overall).to_have_attribute("aria-valuenow", "100")
    for table in ("people", "orders"):
        await expect(page.get_by_role("progressbar", name=f"Progress of {table}")).to_have_attribute(
            "aria-valuenow", "100")
    await expect(page.locator('[data-metric="migrated"]')).to_have_attribute("data-value", str(PEOPLE + 49))
    await expect(page.locator('[data-metric="failed"]')).to_contain_text("1")
    await shots("completed")

    # 4. The rejected row: an ERROR log entry with its record id and value, and the rejects table
    error = page.locator("#log-list li.log-error").filter(has_text="many")
    await expect(error.first).to_contain_text("recordId: 7")
    await expect(error.first).to_contain_text("value: many")
    await page.get_by_role("button", name="Refresh rejects").click()
    await expect(page.get_by_role("table", name="Rejects")).to_contain_text("many")
    await shots("rejects")

    # 5. Verify: the report
    await page.get_by_role("button", name="Verify").click()
    report = page.get_by_role("region", name="Verification report")
    await expect(report.locator(".verdict")).to_have_attribute("data-verdict", "ok", timeout=30_000)
    await shots("verified")

    # 6. Rollback, after confirming
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Rollback").click()
    await expect(page.locator("#status")).to_have_text("rolled_back", timeout=30_000)
    assert not await pg.fetchval(target, "SELECT to_regclass('people') IS NOT NULL")
    assert await pg.count_rows(target, "orders") == 0
    await shots("rolled-back")

    # 7. History: this migration, openable
    await page.get_by_role("button", name="Refresh history").click()
    mid = (await page.locator("#migration-id").text_content() or "").strip()
    item = page.get_by_role("list", name="History").locator(f'li[data-id="{mid}"]')
    await expect(item).to_contain_text("rolled_back")
    await item.get_by_role("button", name=f"Open migration {mid}").click()
    await expect(item).to_contain_text(f"{PEOPLE:,}")
    await expect(item.locator(".history-report .verdict")).to_have_attribute("data-verdict", "ok")  # its report
    await shots("history")


async def test_a_missing_or_wrong_token_gets_a_clear_prompt(page: Page, served: Served, shots: Shots) -> None:
    await page.goto(f"{served.base}/admin/migrations")
    await expect(page.get_by_label("API token")).to_be_visible()
    await shots("no-token")

    await page.get_by_label("API token").fill("wrong-token")
    await page.get_by_role("button", name="Save token").click()
    await expect(page.locator("#auth-panel")).to_be_visible()
    await expect(page.locator("#auth-reason")).to_contain_text(re.compile("refused|wrong|invalid", re.I))

    await page.get_by_label("API token").fill(TOKEN)
    await page.get_by_role("button", name="Save token").click()
    await expect(page.locator("#auth-panel")).to_be_hidden()
    await expect(page.get_by_label("Source DB")).to_be_visible()


async def test_a_reload_mid_run_shows_the_current_state_and_goes_on_live(
    page: Page, served: Served, databases: tuple[str, str], shots: Shots
) -> None:
    source, target = databases
    init = await served.call("POST", "/api/migrations/initialize", {"sourceDB": source, "targetDB": target})
    mid = init["migration"]["id"]
    await served.call("POST", f"/api/migrations/{mid}/plan", {"tables": ["people"], "batchSize": 1000,
                                                              "parallelBatches": 1})
    await served.call("POST", f"/api/migrations/{mid}/execute", {}, status=202)
    await served.call("POST", f"/api/migrations/{mid}/pause", {})

    await page.goto(f"{served.base}/admin/migrations?token={TOKEN}")
    await expect(page.locator("#status")).to_have_text(re.compile("pausing|paused"))
    await expect(page.locator("#migration-id")).to_have_text(mid)
    await page.reload()
    await expect(page.locator("#status")).to_have_text("paused", timeout=20_000)
    await shots("reloaded-paused")
    await served.call("POST", f"/api/migrations/{mid}/resume", {})
    await expect(page.locator("#status")).to_have_text("completed", timeout=60_000)
    await expect(page.get_by_role("progressbar", name="Overall progress")).to_have_attribute("aria-valuenow", "100")


async def test_a_narrow_screen_keeps_every_control_reachable(page: Page, served: Served, shots: Shots) -> None:
    await page.set_viewport_size({"width": 400, "height": 800})
    await page.goto(f"{served.base}/admin/migrations?token={TOKEN}")
    for name in ("Initialize", "Create Plan", "Execute Migration", "Pause", "Resume", "Cancel", "Rollback", "Verify"):
        button = page.get_by_role("button", name=name, exact=True)
        await button.scroll_into_view_if_needed()
        box = await button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 400, (name, box)
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.keyboard.press("Tab")  # keyboard: the first stop is the skip link
    assert await page.evaluate("document.activeElement.textContent") == "Skip to the monitor"
    await shots("narrow")


async def test_the_page_reconnects_after_the_service_restarts(page: Page, cli: Cli, shots: Shots) -> None:
    port = free_port()
    async with aiohttp.ClientSession() as http:
        async with serving(cli, http, port) as first:
            await page.goto(f"{first.base}/admin/migrations?token={TOKEN}")
            await expect(page.locator("#connection")).to_have_text("connected")
        # the service is gone: the page says so, and keeps trying
        await expect(page.locator("#connection")).to_have_text(re.compile("reconnecting"), timeout=10_000)
        await shots("service-down")
        async with serving(cli, http, port):
            await expect(page.locator("#connection")).to_have_text("connected", timeout=20_000)
            await expect(page.get_by_label("Source DB")).to_be_visible()
