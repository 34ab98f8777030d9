"""Rejects keep their whole source row: the rows CSV of a table holds each rejected row as the
source had it, plus a `_migrator_error` column; corrected, it loads again as a source and the
target ends with every row."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from service.quality.rejects import rows_csv
from service.store.base import StateStore
from tests.support import pg
from tests.support.cli import Cli
from tests.support.runs import migrate
from tests.support.users import BAD, HEADER, SPEC, write_users

FIXES = {41: ("email", "u41@example.com"), 42: ("age", "42"), 43: ("email", "u43@example.com"),
         44: ("email", "u44@example.com"), 45: ("joined", "02/01/2024"), 46: ("country", "FR")}


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_the_rows_csv_holds_each_rejected_row_as_the_source_had_it(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    write_users(data_dir / "in")
    run = await migrate(store, {"source": "csv:///in", "target": pg_dsn, **SPEC}, data_dir)

    text = rows_csv(await store.rejects(run.id, table="users"))
    rows = parse(text)
    assert list(rows[0]) == [*HEADER, "_migrator_error"]
    assert len(rows) == len(BAD)
    for row in rows:
        source, rule = BAD[int(row["id"])]
        # every value as in the source file (before the transforms), NULL as an empty cell
        assert [row[h] for h in HEADER] == ["" if v is None else str(v) for v in source]
        assert f"[{rule}]" in row["_migrator_error"]
    assert '"43",,"C",' in text  # a NULL is an empty cell, a text is quoted


async def test_a_corrected_rows_csv_loads_the_missing_rows_into_the_same_table(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    write_users(data_dir / "in")
    first = await migrate(store, {"source": "csv:///in", "target": pg_dsn, **SPEC}, data_dir)
    assert await pg.count_rows(pg_dsn, "users") == 40

    rows = parse(rows_csv(await store.rejects(first.id, table="users")))
    for row in rows:
        column, value = FIXES[int(row["id"])]
        row[column] = value
    fixed = data_dir / "fixed"
    fixed.mkdir()
    with (fixed / "users.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    second = await migrate(store, {"source": "csv:///fixed", "target": pg_dsn, **SPEC}, data_dir)

    assert second.status == "completed"
    assert await store.rejects(second.id) == []
    assert await pg.count_rows(pg_dsn, "users") == 46
    assert await pg.fetch(pg_dsn, "SELECT id, email, age, joined::text, country FROM users WHERE id > 40 ORDER BY id") == [
        (41, "u41@example.com", 30, "2024-01-01", "DE"), (42, "u42@example.com", 42, "2024-01-01", "DE"),
        (43, "u43@example.com", 30, "2024-01-01", "DE"), (44, "u44@example.com", 30, "2024-01-01", "DE"),
        (45, "u45@example.com", 30, "2024-01-02", "DE"), (46, "u46@example.com", 30, "2024-01-01", "FR")]
    columns = await pg.fetch(pg_dsn, "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")
    assert ("_migrator_error",) not in columns


async def test_an_uncorrected_rows_csv_is_rejected_again_for_the_same_reasons(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    write_users(data_dir / "in")
    first = await migrate(store, {"source": "csv:///in", "target": pg_dsn, **SPEC}, data_dir)
    (data_dir / "again").mkdir()
    (data_dir / "again" / "users.csv").write_text(rows_csv(await store.rejects(first.id)))

    second = await migrate(store, {"source": "csv:///again", "target": pg_dsn, **SPEC}, data_dir)

    # the duplicate is alone in its file now: only the other five fail again
    assert sorted(r.rule for r in await store.rejects(second.id)) == sorted(
        rule for _, rule in BAD.values() if rule != "duplicate")
    assert await pg.count_rows(pg_dsn, "users") == 41


async def test_row_numbers_and_records_stay_right_after_a_ragged_line(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    (data_dir / "people.csv").write_text("id,name,age\n1,Ann,30\n2,Bob\n3,Cy,31\n4,Di,abc\n5,Ed,,\n6,Flo,52\n")
    await pg.execute(pg_dsn, "CREATE TABLE people (id integer, name text, age integer)")

    run = await migrate(store, {"source": "csv:///people.csv", "target": pg_dsn}, data_dir)

    rejects = sorted(await store.rejects(run.id), key=lambda r: r.row or 0)
    assert [(r.row, r.rule) for r in rejects] == [(2, "csv_format"), (4, "type"), (5, "csv_format")]
    assert rejects[1].record == {"id": "4", "name": "Di", "age": "abc"}
    assert rejects[0].record is None  # a line that could not be split has no columns …
    rows = parse(rows_csv(rejects))
    assert "the line was: 2,Bob" in rows[0]["_migrator_error"]  # … its text is in the error
    assert await pg.fetch(pg_dsn, "SELECT id FROM people ORDER BY id") == [(1,), (3,), (6,)]


async def test_skipped_batches_keep_their_rows_numbers_and_values(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    (data_dir / "people.csv").write_text("id,name,age\n1,Ann,30\n2,Bob,x\n3,Cy,31\n4,Di,40\n")
    await pg.execute(pg_dsn, "CREATE TABLE people (id integer, name text, age integer)")

    run = await migrate(store, {"source": "csv:///people.csv", "target": pg_dsn, "batchSize": 2,
                                "onError": "skip_batch"}, data_dir)

    rejects = await store.rejects(run.id)
    assert sorted((r.row, r.rule, (r.record or {}).get("name")) for r in rejects) == [
        (1, "skip_batch", "Ann"), (2, "type", "Bob")]
    assert len(parse(rows_csv(rejects))) == 2
    assert await pg.fetch(pg_dsn, "SELECT id FROM people ORDER BY id") == [(3,), (4,)]


async def test_a_row_the_target_refuses_keeps_its_source_values(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    await pg.execute(pg_dsn, "CREATE TABLE codes (id integer, code varchar(3), note text)")
    (data_dir / "codes.csv").write_text('id,code,note\n1,abc,\n2,toolong,""\n3,def,x\n')

    run = await migrate(store, {"source": "csv:///codes.csv", "target": pg_dsn}, data_dir)

    [reject] = await store.rejects(run.id)
    assert (reject.row, reject.rule, reject.record) == (2, "target", {"id": "2", "code": "toolong", "note": ""})
    assert rows_csv([reject]).splitlines()[1].startswith('"2","toolong","",')  # an empty text stays quoted


async def test_the_cli_writes_one_rows_csv_per_table_into_the_rejects_folder(
    cli: Cli, data_dir: Path, tmp_path: Path, pg_dsn: str
) -> None:
    write_users(data_dir / "in")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"source": "csv:///in", "target": pg_dsn, **SPEC}))

    done = await cli.run("run", str(spec), "--quiet", "--rejects", str(tmp_path / "rejects"))

    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "rejects").iterdir()] == ["users.csv"]
    rows = parse((tmp_path / "rejects" / "users.csv").read_text())
    assert sorted(int(r["id"]) for r in rows) == sorted(BAD)
