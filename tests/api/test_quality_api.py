"""Data quality over the API: a dry run in the plan, and the rejects as JSON and as CSV."""

from __future__ import annotations

from pathlib import Path

from tests.support.api import Api
from tests.support.users import HEADER, SPEC, write_users


async def test_a_plan_with_a_sample_reports_what_would_fail_and_writes_nothing(
    api: Api, data_dir: Path, pg_dsn: str
) -> None:
    write_users(data_dir / "in")
    await api.post("/api/migrations/initialize", {"sourceDB": "csv:///in", "targetDB": pg_dsn})
    options = {k: v for k, v in SPEC.items() if k != "batchSize"}
    plan = (await api.post("/api/migrations/plan", {**options, "tables": ["users"], "sample": 100}))["plan"]
    dry = plan["dryRun"]["users"]
    assert dry["sampled"] == 46 and dry["wouldFail"] == 6
    assert dry["byRule"] == {"format": 1, "max": 1, "required": 1, "duplicate": 1, "dateFormat": 1, "enum": 1}
    assert (await api.summary())["status"] == "planned"


async def test_rejects_are_listed_as_json_and_downloaded_as_csv(api: Api, data_dir: Path, pg_dsn: str) -> None:
    write_users(data_dir / "in")
    await api.start("csv:///in", pg_dsn, **{**SPEC, "tables": ["users"]})
    summary = await api.wait_status("completed")
    assert (summary["migratedCount"], summary["failedCount"]) == (40, 6)

    listed = await api.get("/api/migrations/rejects?table=users")
    assert listed["count"] == 6
    assert {r["rule"] for r in listed["rejects"]} == {"format", "max", "required", "duplicate", "dateFormat", "enum"}
    assert all({"table", "row", "key", "column", "value", "rule", "message"} <= r.keys() for r in listed["rejects"])

    assert all(set(r["record"]) == set(HEADER) for r in listed["rejects"])  # the whole source row

    text = await api.get("/api/migrations/rejects?format=csv")  # one table: its rejected rows
    lines = text.strip().splitlines()
    assert lines[0] == ",".join(f'"{h}"' for h in (*HEADER, "_migrator_error")) and len(lines) == 7
    summary_csv = await api.get("/api/migrations/rejects?format=csv&layout=summary")
    lines = summary_csv.strip().splitlines()
    assert lines[0] == "table,row,key,column,value,rule,error" and len(lines) == 7
    bad = await api.get("/api/migrations/rejects?format=csv&layout=wide", status=400)
    assert "layout" in bad["error"]["message"]

    errors = await api.get("/api/migrations/log?level=error")
    duplicate = next(e for e in errors if "Duplicate key in users.email" in e["message"])
    assert duplicate["value"] == "user1@example.com" and duplicate["recordId"] == 24
