"""Accounting is exact: per table and in total, read = migrated + failed and failed = rejected +
skipped — whoever refused the rows (a rule, a cast, the CSV reader, the target database), live
and after a restart of the service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import pg
from tests.support.api import Api

ROWS = 100
RULES = {"rules": {"items": {"qty": {"min": 0}}}}


def write_items(folder: Path) -> dict[str, int]:
    """100 data lines: 4 negative quantities (rule), 2 non-numbers (cast), 2 codes too long for
    varchar(3) (the target refuses them), 1 ragged line (the CSV reader). What each should cost."""
    lines = ["id,code,qty"]
    for i in range(1, ROWS + 1):
        if i in (5, 40, 41, 90):
            lines.append(f"{i},c{i % 10},-{i}")
        elif i in (12, 77):
            lines.append(f"{i},c{i % 10},many")
        elif i in (30, 60):
            lines.append(f"{i},toolong,{i}")
        elif i == 50:
            lines.append(f"{i},c0")
        else:
            lines.append(f"{i},c{i % 10},{i}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.csv").write_text("\n".join(lines) + "\n")
    return {"rule": 4, "cast": 2, "target": 2, "csv": 1}


def check(table: dict[str, Any]) -> None:
    assert table["readCount"] == table["migratedCount"] + table["failedCount"]
    assert table["failedCount"] == table["rejectedCount"] + table["skippedCount"]


async def test_every_row_read_is_loaded_rejected_or_skipped(api: Api, data_dir: Path, pg_dsn: str) -> None:
    bad = sum(write_items(data_dir / "in").values())
    await pg.execute(pg_dsn, "CREATE TABLE items (id integer, code varchar(3), qty integer)")

    await api.start("csv:///in", pg_dsn, tables=["items"], batchSize=7, **RULES)
    summary = await api.wait_status("completed")

    [table] = summary["tables"]
    check(table)
    check(summary)
    assert (table["readCount"], table["migratedCount"], table["rejectedCount"], table["skippedCount"]) == (
        ROWS, ROWS - bad, bad, 0)
    assert await pg.count_rows(pg_dsn, "items") == ROWS - bad
    listed = await api.get("/api/migrations/rejects")
    assert listed["count"] == bad


async def test_skipped_batches_are_counted_apart_and_survive_a_restart(
    make_api: Callable[..., Any], data_dir: Path, pg_dsn: str
) -> None:
    write_items(data_dir / "in")
    await pg.execute(pg_dsn, "CREATE TABLE items (id integer, code varchar(3), qty integer)")

    async with make_api() as api:
        mid = await api.start("csv:///in", pg_dsn, tables=["items"], batchSize=10, onError="skip_batch", **RULES)
        live = await api.wait_status("completed", migration=mid)
    async with make_api() as api:  # a new service process: the summary comes from the state store
        stored = await api.summary(mid)

    loaded = await pg.count_rows(pg_dsn, "items")
    for summary in (live, stored):
        [table] = summary["tables"]
        check(table)
        assert table["readCount"] == ROWS and table["migratedCount"] == loaded
        # the first bad row of a batch is its reject; the rest of the batch is skipped
        assert table["skippedCount"] > 0 and table["rejectedCount"] > 0
    assert stored["tables"] == live["tables"]
