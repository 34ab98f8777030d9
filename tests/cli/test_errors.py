"""`migrator run` with bad input: a non-zero exit and one line `error: …` that names the problem,
never a Python traceback."""

from __future__ import annotations

from pathlib import Path

from service.store import open_state_store
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.cli import Cli, Result
from tests.support.pgcluster import free_port


def assert_one_line_error(result: Result, *names: str) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.error_lines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    # The reason is complete on its line: nothing of it spills onto following lines.
    assert result.stderr.rstrip().splitlines()[-1] == line, result.stderr
    for name in names:
        assert name in line, f"{name!r} not named in the error line {line!r}; stderr:\n{result.stderr}"
    return line


async def test_an_unsupported_url_scheme_is_a_one_line_error_naming_the_scheme(cli: Cli, tmp_path: Path) -> None:
    result = await cli.run("run", "--source", "ftp://files.example.com/dump", "--target", f"csv:///{tmp_path}/out")

    assert_one_line_error(result, "ftp", "postgresql://", "sqlite://")
    assert result.returncode == 2


async def test_an_unreachable_database_is_a_one_line_error_naming_host_and_port(cli: Cli, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = await cli.run("run", "--source", f"postgresql://postgres@127.0.0.1:{port}/shop",
                           "--target", f"csv:///{tmp_path}/out", timeout=60)

    assert_one_line_error(result, f"127.0.0.1:{port}", "cannot connect")


async def test_an_unknown_postgres_table_is_a_one_line_error_naming_the_table(
    cli: Cli, pg_dsn: str, tmp_path: Path
) -> None:
    result = await cli.run("run", "--source", pg_dsn, "--tables", "no_such_table", "--target", f"csv:///{tmp_path}/o")

    assert_one_line_error(result, "no_such_table")


async def test_an_unknown_table_of_a_csv_folder_is_a_one_line_error_naming_the_table(
    cli: Cli, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "users.csv").write_text("id\n1\n")
    result = await cli.run("run", "--source", f"csv:///{folder}", "--tables", "orders",
                           "--target", f"sqlite:///{tmp_path}/out.db")

    assert_one_line_error(result, "orders")


async def test_a_missing_csv_file_is_a_one_line_error_naming_the_file(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "users.csv"
    result = await cli.run("run", "--source", f"csv:///{missing}", "--target", f"sqlite:///{tmp_path}/out.db")

    assert_one_line_error(result, str(missing))


async def test_a_missing_target_is_a_one_line_error(cli: Cli, tmp_path: Path) -> None:
    result = await cli.run("run", "--source", f"csv:///{tmp_path}")

    assert_one_line_error(result, "--target")
    assert result.returncode == 2


async def test_a_bad_batch_size_is_a_one_line_error_naming_the_option(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id\n1\n")
    result = await cli.run("run", "--source", f"csv:///{tmp_path}/t.csv", "--target", f"sqlite:///{tmp_path}/o.db",
                           "--batch-size", "0")

    assert_one_line_error(result, "batchSize")
    assert result.returncode == 2


async def test_a_batch_the_target_refuses_is_a_one_line_error_naming_the_table(
    cli: Cli, new_pg_db: NewDatabase
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await pg.execute(source, "CREATE TABLE items (id int PRIMARY KEY, qty int)",
                     "INSERT INTO items SELECT g, g FROM generate_series(1, 100) g")
    await pg.execute(target, "CREATE TABLE items (id int PRIMARY KEY, qty int CONSTRAINT small CHECK (qty < 50))")

    result = await cli.run("run", "--source", source, "--target", target, "--on-error", "stop")

    assert_one_line_error(result, "items", "small")
    assert result.returncode == 1


async def test_an_existing_csv_target_file_is_a_one_line_error_naming_the_file(
    cli: Cli, pg_dsn: str, tmp_path: Path
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY)", "INSERT INTO items VALUES (1)")
    out = tmp_path / "out"
    out.mkdir()
    (out / "items.csv").write_text("keep me\n")

    result = await cli.run("run", "--source", pg_dsn, "--target", f"csv:///{out}")

    assert_one_line_error(result, str(out / "items.csv"))
    assert (out / "items.csv").read_text() == "keep me\n"


async def test_an_unset_variable_in_a_url_is_a_one_line_error_naming_the_variable(cli: Cli, tmp_path: Path) -> None:
    cli.env.pop("MIGRATOR_TEST_UNSET", None)
    result = await cli.run("run", "--source", "postgresql://app:${MIGRATOR_TEST_UNSET}@127.0.0.1/shop",
                           "--target", f"csv:///{tmp_path}/out")

    assert_one_line_error(result, "MIGRATOR_TEST_UNSET")
    assert result.returncode == 2


async def test_a_password_never_appears_in_the_output_or_the_state_store(
    cli: Cli, tmp_path: Path, state_url: str
) -> None:
    port = free_port()
    secret = "s3cr3t-Pa55"
    cli.env["MIGRATOR_TEST_PASSWORD"] = secret
    for source in (f"postgresql://app:{secret}@127.0.0.1:{port}/shop",
                   f"postgresql://app:${{MIGRATOR_TEST_PASSWORD}}@127.0.0.1:{port}/shop"):
        result = await cli.run("run", "--source", source, "--target", f"csv:///{tmp_path}/out")

        assert_one_line_error(result, f"127.0.0.1:{port}")
        assert secret not in result.stdout + result.stderr
    store = await open_state_store(state_url)
    try:
        records = await store.list_migrations()
        logs = [entry for r in records for entry in await store.logs(r.id)]
    finally:
        await store.close()
    assert len(records) == 2
    assert all(secret not in f"{r.source} {r.target} {r.error}" for r in records)
    assert all(secret not in f"{e.message} {e.error}" for e in logs)
