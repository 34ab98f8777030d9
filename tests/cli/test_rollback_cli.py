"""`migrator rollback ID` after a `kill -9` of `migrator run` half-way: exit 0 and the PostgreSQL
target exactly as it was before the run (a table it created dropped, the rows it added to a table
that held rows deleted); run again, it changes nothing. An unknown id is a one-line error."""

from __future__ import annotations

import re

from tests.cli.test_errors import assert_one_line_error
from tests.conftest import NewDatabase
from tests.runs.test_rollback import state
from tests.support import pg
from tests.support.bigtable import create_big_table
from tests.support.cli import Cli, kill_when

ROWS = 100_000
FRESH = 5_000
HELD = 3  # rows the target's `big` held before the run


async def test_rollback_after_a_kill_9_half_way_restores_the_target_and_a_second_one_changes_nothing(
    cli: Cli, new_pg_db: NewDatabase
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, FRESH, table="a_new")  # the target has no such table: the run creates it
    await create_big_table(source, ROWS)
    await pg.execute(target, "CREATE TABLE keep (id integer PRIMARY KEY, v text)", "INSERT INTO keep VALUES (1, 'x')",
                     "CREATE TABLE big (id bigint PRIMARY KEY, name text, amount numeric(12,2), note text)",
                     "INSERT INTO big VALUES (-1, 'mine', 1.00, 'before'), (-2, '', 0, NULL), (-3, NULL, NULL, '')")
    before = await state(target)
    args = ("run", "--source", source, "--target", target, "--batch-size", "500")

    async def committed() -> int:
        """Rows the run put in both tables (0 until each has some)."""
        return min(await pg.count_rows(target, "a_new"), await pg.count_rows(target, "big") - HELD)

    await kill_when(cli, args, committed)
    assert 0 < await pg.count_rows(target, "a_new") + await pg.count_rows(target, "big") - HELD < FRESH + ROWS
    started = re.search(r"Starting migration (\S+):", cli.output()[0])
    assert started, cli.output()
    mid = started.group(1)

    # No service marked the killed run interrupted: the store still says executing.
    refused = await cli.run("rollback", mid)
    assert refused.returncode == 1 and "--force" in refused.stderr, refused.stderr
    assert await state(target) != before

    result = await cli.run("rollback", mid, "--force")

    assert result.returncode == 0, result.stderr
    assert f"Migration {mid} is rolled_back." in result.stdout, result.stdout
    assert await state(target) == before

    again = await cli.run("rollback", mid)

    assert again.returncode == 0, again.stderr
    assert "nothing of this run was in the target" in again.stdout, again.stdout
    assert await state(target) == before


async def test_rollback_of_an_unknown_id_is_a_one_line_error(cli: Cli) -> None:
    result = await cli.run("rollback", "no-such-id")

    assert_one_line_error(result, "no-such-id")
    assert result.returncode == 2
