"""`migrator run` on good input: exit 0 and the rows in the target."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from tests.support import pg
from tests.support.cli import Cli
from tests.support.datasets import people_rows, write_people_csv


async def test_run_with_relative_file_urls_resolves_them_inside_the_data_dir(cli: Cli, data_dir: Path) -> None:
    (data_dir / "in").mkdir()
    write_people_csv(data_dir / "in" / "people.csv", people_rows(50))

    result = await cli.run("run", "--source", "csv:///in", "--target", "sqlite:///out/people.db")

    assert result.returncode == 0, result.stderr
    with closing(sqlite3.connect(data_dir / "out" / "people.db")) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM people").fetchone() == (50, 50)


async def test_run_csv_to_postgres_exits_zero_with_every_row_in_the_target(
    cli: Cli, data_dir: Path, pg_dsn: str
) -> None:
    rows = people_rows(120)
    write_people_csv(data_dir / "people.csv", rows)

    result = await cli.run("run", "--source", "csv:///people.csv", "--target", pg_dsn, "--batch-size", "25")

    assert result.returncode == 0, result.stderr
    assert await pg.fetch(pg_dsn, "SELECT id, name, score, active, joined, note FROM people ORDER BY id") == rows


async def test_running_a_finished_migration_again_does_not_copy_rows_twice(
    cli: Cli, data_dir: Path, pg_dsn: str, new_pg_db: object
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)",
                     "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g")
    target = await new_pg_db()  # type: ignore[operator]
    args = ("run", "--source", pg_dsn, "--target", target, "--batch-size", "100")

    first = await cli.run(*args)
    second = await cli.run(*args)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "already completed" in second.stdout and "--again" in second.stdout
    assert await pg.count_rows(target, "t") == 1000
    assert await pg.digest(target, "t", ["id"]) == await pg.digest(pg_dsn, "t", ["id"])


async def test_again_runs_a_finished_migration_once_more(cli: Cli, data_dir: Path) -> None:
    (data_dir / "items.csv").write_text("id,name\n1,a\n2,b\n")
    args = ("run", "--source", "csv:///items.csv", "--target", "sqlite:///items.db")

    assert (await cli.run(*args)).returncode == 0
    again = await cli.run(*args, "--again")

    assert again.returncode == 0, again.stderr
    with closing(sqlite3.connect(data_dir / "items.db")) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 4


async def test_a_run_with_rejected_rows_exits_zero_and_reports_them(cli: Cli, data_dir: Path, pg_dsn: str) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE people (id integer, age integer)")
    (data_dir / "people.csv").write_text("id,age\n1,30\n2,old\n3,41\n")

    result = await cli.run("run", "--source", "csv:///people.csv", "--target", pg_dsn)

    assert result.returncode == 0, result.stderr
    assert "2 migrated, 1 failed" in result.stdout
    assert await pg.fetch(pg_dsn, "SELECT id, age FROM people ORDER BY id") == [(1, 30), (3, 41)]


async def test_run_takes_its_options_from_a_yaml_spec_file(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    write_people_csv(data_dir / "people.csv", people_rows(30))
    (data_dir / "other.csv").write_text("id\n1\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("source: csv:///people.csv\ntarget: sqlite:///people.db\ntables: [people]\nbatchSize: 7\n")

    result = await cli.run("run", str(spec))

    assert result.returncode == 0, result.stderr
    with closing(sqlite3.connect(data_dir / "people.db")) as conn:
        assert conn.execute("SELECT count(*) FROM people").fetchone() == (30,)
