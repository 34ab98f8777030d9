"""`kill -9` of `migrator run` half-way between MongoDB and PostgreSQL (both ways), then the same
command again: exit 0 and exactly the source's documents / rows in the target — none lost, none
doubled."""

from __future__ import annotations

import pytest

from tests.support import pg
from tests.support.cli import Cli, kill_half_way_and_rerun
from tests.support.mongodocs import count, fetch_all, from_extended_json, insert, people, rows, with_nulls

DOCS = 20_000
BATCH = "200"

pytestmark = pytest.mark.slow


async def test_mongo_to_pg_run_killed_half_way_resumes_to_exactly_the_documents(
    cli: Cli, mongo_url: str, pg_dsn: str
) -> None:
    docs = people(DOCS)
    await insert(mongo_url, "people", docs)
    args = ("run", "--source", mongo_url, "--target", pg_dsn, "--batch-size", BATCH)

    await kill_half_way_and_rerun(cli, args, lambda: pg.count_rows(pg_dsn, "people"), DOCS)

    found = await rows(pg_dsn, "SELECT * FROM people ORDER BY _id")
    json_columns = ("address", "prefs", "tags", "orders")
    assert [{k: from_extended_json(v) if k in json_columns and v is not None else v for k, v in r.items()}
            for r in found] == [{**with_nulls(d), "_id": str(d["_id"])} for d in docs]


async def test_pg_to_mongo_run_killed_half_way_resumes_to_exactly_the_rows(
    cli: Cli, mongo_url: str, pg_dsn: str
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, total double precision,"
                             " placed timestamptz, lines jsonb)",
                     f"INSERT INTO orders SELECT g, 'customer ' || (g % 97), g * 1.5,"
                     f" timestamptz '2024-05-01 00:00:00+00' + g * interval '1.001 second',"
                     f" jsonb_build_array(jsonb_build_object('sku', 'S' || g, 'qty', g % 5))"
                     f" FROM generate_series(1, {DOCS}) g")
    args = ("run", "--source", pg_dsn, "--target", mongo_url, "--batch-size", BATCH)

    await kill_half_way_and_rerun(cli, args, lambda: count(mongo_url, "orders"), DOCS)

    expected = [{"_id": r["id"], "customer": r["customer"], "total": r["total"], "placed": r["placed"],
                 "lines": from_extended_json(r["lines"])}
                for r in await rows(pg_dsn, "SELECT * FROM orders ORDER BY id")]
    assert await fetch_all(mongo_url, "orders") == expected
