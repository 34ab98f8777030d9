"""`kill -9` of `migrator run` half-way, then the same command again: exit 0 and exactly the source
rows in the target — none lost, none doubled."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.store import open_state_store
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.bigtable import create_big_table
from tests.support.cli import Cli, kill_half_way_and_rerun, kill_when
from tests.support.csvtext import read_csv, write_csv

ROWS = 200_000
BATCH = "500"

pytestmark = pytest.mark.slow


async def test_pg_to_pg_run_killed_half_way_resumes_to_exactly_the_source_rows(
    cli: Cli, new_pg_db: NewDatabase
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, ROWS)
    args = ("run", "--source", source, "--target", target, "--batch-size", BATCH)

    await kill_half_way_and_rerun(cli, args, lambda: pg.count_rows(target, "big"), ROWS)

    assert await pg.digest(target, "big", ["id"]) == await pg.digest(source, "big", ["id"])


async def test_csv_to_pg_run_killed_half_way_resumes_to_exactly_the_source_rows(
    cli: Cli, data_dir: Path, pg_dsn: str
) -> None:
    rows = [(i, f'name "{i}", ok' if i % 3 else f"name {i}", i * 0.5) for i in range(1, ROWS + 1)]
    write_csv(data_dir / "big.csv", ("id", "name", "amount"), rows)
    args = ("run", "--source", "csv:///big.csv", "--target", pg_dsn, "--batch-size", BATCH)

    await kill_when(cli, args, lambda: pg.count_rows(pg_dsn, "big"))
    assert 0 < await pg.count_rows(pg_dsn, "big") < ROWS

    result = await cli.run(*args)

    assert result.returncode == 0, result.stderr
    got = await pg.digest(pg_dsn, "big", ["id"])
    assert (got.rows, got.distinct_keys) == (ROWS, ROWS)
    assert await pg.fetch(pg_dsn, "SELECT id, name, amount FROM big ORDER BY id") == rows


async def test_pg_to_csv_run_killed_half_way_resumes_to_a_file_of_exactly_the_source_rows(
    cli: Cli, state_url: str, tmp_path: Path, pg_dsn: str
) -> None:
    await create_big_table(pg_dsn, ROWS)
    out = tmp_path / "out"
    args = ("run", "--source", pg_dsn, "--target", f"csv:///{out}", "--batch-size", BATCH)
    store = await open_state_store(state_url)

    async def committed() -> int:
        """Rows the migration reports committed (a CSV target is a hidden file until the end)."""
        runs = await store.list_migrations()
        tables = await store.tables(runs[0].id) if runs else []
        return sum(t.checkpoint.rows_written for t in tables if t.checkpoint)

    try:
        await kill_when(cli, args, committed)
    finally:
        await store.close()

    result = await cli.run(*args)

    assert result.returncode == 0, result.stderr
    # the file, and nothing left of the run but its hidden rollback manifest
    assert [p.name for p in out.iterdir() if not p.name.startswith(".migrator-")] == ["big.csv"]
    header, *records = read_csv(out / "big.csv")
    assert header == ["id", "name", "amount", "note"]
    assert len(records) == ROWS
    expected = await pg.fetch(pg_dsn, "SELECT id::text, name, amount::text, note FROM big b ORDER BY b.id")
    assert [tuple(r) for r in records] == expected
