"""Crash safety: `kill -9` of `migrator run` at many random moments of one migration — while it starts
or resumes, between and amid batches — each time the same command started again, then run to the
end: exit 0 and exactly the source rows in the target, none lost, none doubled.

The moments are drawn from `random.Random(seed)`; the seed is printed with every test (a failure
shows it) and CRASH_SEED=<seed> replays it. CRASH_KILLS=<n> (default 10) kills more often."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.bigtable import create_big_table
from tests.support.cli import Cli, Kill, kill_many
from tests.support.csvtext import write_csv
from tests.support.mongodocs import from_extended_json, id_text, insert, people, rows, with_nulls

KILLS = int(os.environ.get("CRASH_KILLS", "10"))
SEED = int(os.environ.get("CRASH_SEED") or random.SystemRandom().randrange(2**32))
ROWS = max(200_000, 20_000 * KILLS)
BATCH = "500"  # many commit points to land between, and a run slow enough to be killed KILLS times
DOCS = max(50_000, 5_000 * KILLS)  # the MongoDB stand-in is slower
MONGO_BATCH = "500"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(max(120, 15 * KILLS))]


def rng_for(test: str) -> random.Random:
    """The test's own random moments: the same for one seed whichever tests run."""
    print(f"{test}: CRASH_SEED={SEED} CRASH_KILLS={KILLS}")
    return random.Random(f"{SEED}:{test}")


@asynccontextmanager
async def row_count(dsn: str, table: str) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """`pg.count_rows` through one connection held open: polled often, it sees a commit sooner."""
    conn = await asyncpg.connect(dsn)

    async def count() -> int:
        try:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        except asyncpg.UndefinedTableError:
            return 0

    try:
        yield count
    finally:
        await conn.close()


def check_kills(kills: list[Kill], total: int) -> None:
    """Every kill landed; most of them mid-run (some but not all rows in the target), and half of them
    while the killed run was copying (it had committed rows of its own)."""
    log = f"seed {SEED}, kills:\n" + "\n".join(map(str, kills))
    assert len(kills) == KILLS, log
    assert sum(k.mid_run(total) for k in kills) > KILLS // 2, log
    assert sum(k.before < k.after < total for k in kills) >= KILLS // 2, log


def differences(got: Counter[Any], want: Counter[Any], kills: list[Kill]) -> str:
    """What a target holding the multiset `got` of rows instead of `want` lost and doubled."""
    doubled = Counter({r: n for r, n in got.items() if n > 1})
    lost, extra = want - got, got - want

    def some(what: str, rows: Counter[Any]) -> str:
        examples = ", ".join(repr(r)[:300] for r in list(rows)[:3])
        return f"{rows.total()} {what}" + (f" (e.g. {examples})" if rows else "")

    return (f"seed {SEED} (CRASH_SEED={SEED} CRASH_KILLS={KILLS} replays it): the target holds {got.total()} rows, "
            f"the source {want.total()}; {some('lost', lost)}; {some('extra', extra)}; "
            f"{some('copies of rows held more than once', doubled)}; kills:\n" + "\n".join(map(str, kills)))


async def test_pg_to_pg_killed_many_times_ends_with_exactly_the_source_rows(
    cli: Cli, new_pg_db: NewDatabase
) -> None:
    rng = rng_for("pg")
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, ROWS)
    args = ("run", "--source", source, "--target", target, "--batch-size", BATCH)

    async with row_count(target, "big") as committed:
        kills = await kill_many(cli, args, committed, total=ROWS, kills=KILLS, rng=rng)
    result = await cli.run(*args)

    assert result.returncode == 0, f"seed {SEED}: {result.stderr}"
    assert "Resuming" in result.stdout, f"seed {SEED}: {result.stdout}"
    check_kills(kills, ROWS)
    try:
        await pg.assert_exact_copy(source, target, "big")
        copied = True
    except AssertionError:
        copied = False
    if not copied:
        pytest.fail(differences(await pg.row_multiset(target, "big"), await pg.row_multiset(source, "big"), kills))


async def test_csv_to_pg_killed_many_times_ends_with_exactly_the_source_rows(
    cli: Cli, data_dir: Path, pg_dsn: str
) -> None:
    rng = rng_for("csv")
    source = [(i, f'name "{i}", ok' if i % 3 else f"name {i}", i * 0.5) for i in range(1, ROWS + 1)]
    write_csv(data_dir / "big.csv", ("id", "name", "amount"), source)
    args = ("run", "--source", "csv:///big.csv", "--target", pg_dsn, "--batch-size", BATCH)

    async with row_count(pg_dsn, "big") as committed:
        kills = await kill_many(cli, args, committed, total=ROWS, kills=KILLS, rng=rng)
    result = await cli.run(*args)

    assert result.returncode == 0, f"seed {SEED}: {result.stderr}"
    assert "Resuming" in result.stdout, f"seed {SEED}: {result.stdout}"
    check_kills(kills, ROWS)
    got, want = Counter(await pg.fetch(pg_dsn, "SELECT id, name, amount FROM big")), Counter(source)
    if got != want:
        pytest.fail(differences(got, want, kills))


async def test_mongo_to_pg_killed_many_times_ends_with_exactly_the_documents(
    cli: Cli, mongo_url: str, pg_dsn: str
) -> None:
    rng = rng_for("mongo")
    docs = people(DOCS)
    await insert(mongo_url, "people", docs)
    args = ("run", "--source", mongo_url, "--target", pg_dsn, "--batch-size", MONGO_BATCH)

    async with row_count(pg_dsn, "people") as committed:
        kills = await kill_many(cli, args, committed, total=DOCS, kills=KILLS, rng=rng, early=(0.05, 2.5),
                                extra=(0.0, 0.1))
    result = await cli.run(*args)

    assert result.returncode == 0, f"seed {SEED}: {result.stderr}"
    assert "Resuming" in result.stdout, f"seed {SEED}: {result.stdout}"
    check_kills(kills, DOCS)
    json_columns = ("address", "prefs", "tags", "orders")
    found = [{k: from_extended_json(v) if k in json_columns and v is not None else v for k, v in r.items()}
             for r in await rows(pg_dsn, "SELECT * FROM people ORDER BY _id")]
    expected = [{**with_nulls(d), "_id": str(d["_id"])} for d in docs]
    if found != expected:
        pytest.fail(differences(Counter(map(id_text, found)), Counter(map(id_text, expected)), kills))
