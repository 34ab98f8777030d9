"""SIGTERM to `migrator run`: it stops at once with exit 130 and says how to resume; the same command
again finishes with exactly the source rows."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.bigtable import create_big_table
from tests.support.cli import Cli, stopped

ROWS = 200_000


async def test_sigterm_stops_the_run_with_exit_130_and_the_same_command_resumes_it(
    cli: Cli, new_pg_db: NewDatabase
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, ROWS)
    args = ("run", "--source", source, "--target", target, "--batch-size", "500")
    proc = await cli.start(*args)
    try:
        async with asyncio.timeout(60):
            while await pg.count_rows(target, "big") == 0:
                if proc.returncode is not None:
                    pytest.fail(f"migrator ended (exit {proc.returncode}) before any row was committed")
                await asyncio.sleep(0.005)
        returncode = await stopped(proc, signal.SIGTERM, 5)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    _, stderr = cli.output()

    assert returncode == 130, stderr
    assert "resume" in stderr
    assert "Traceback" not in stderr
    assert await pg.count_rows(target, "big") < ROWS

    result = await cli.run(*args)

    assert result.returncode == 0, result.stderr
    assert await pg.digest(target, "big", ["id"]) == await pg.digest(source, "big", ["id"])
