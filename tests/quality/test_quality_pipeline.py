"""The spec's transforms, rules and dedupe in real runs: a CSV with a known set of bad rows, and
the same data through PG→PG — exactly those rows are rejected, with their reasons, and every other
row is loaded as the transforms made it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from service.core.errors import RejectLimit
from service.store.base import StateStore
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.cli import Cli
from tests.support.runs import migrate, prepare
from tests.support.users import BAD, GOOD, HEADER, SPEC, write_users


async def test_a_csv_with_known_bad_rows_loads_every_other_row_as_transformed(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    write_users(data_dir / "in")
    run = await migrate(store, {"source": "csv:///in", "target": pg_dsn, **SPEC}, data_dir)

    assert run.status == "completed"
    rejects = await store.rejects(run.id)
    by_row = {r.row: r.rule for r in rejects}
    # data lines: 20 good rows come first, so bad row k is line 20 + its position
    assert sorted(by_row.values()) == sorted(rule for _, rule in BAD.values())
    assert {r.rule: r.column for r in rejects} == {
        "format": "email", "max": "age", "required": "email", "duplicate": "email", "dateFormat": "joined",
        "enum": "country"}
    assert sorted(by_row) == [21, 22, 23, 24, 25, 26]
    duplicate = next(r for r in rejects if r.rule == "duplicate")
    assert "Duplicate key in users.email" in duplicate.message and duplicate.value == "user1@example.com"

    rows = await pg.fetch(pg_dsn, "SELECT id, email, name, age, joined::text, country FROM users ORDER BY id")
    assert rows == [(i, f"user{i}@example.com", f"Name {i}", 20 + i % 50, f"2024-01-0{1 + i % 9}", "DE")
                    for i in range(1, 41)]
    progress = run.tables["users"]
    assert (progress.written, progress.failed) == (40, 6)


async def test_the_same_rules_through_postgres_to_postgres(
    store: StateStore, data_dir: Path, new_pg_db: NewDatabase
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    write_users(data_dir / "in")
    await migrate(store, {"source": "csv:///in", "target": source}, data_dir)  # load as is
    await pg.execute(source, "ALTER TABLE users ADD PRIMARY KEY (id)")
    run = await migrate(store, {"source": source, "target": target, **SPEC}, data_dir)

    assert run.status == "completed"
    rejects = await store.rejects(run.id)
    assert sorted(r.rule for r in rejects) == sorted(rule for _, rule in BAD.values())
    assert sorted(str(r.key) for r in rejects) == sorted(str(k) for k in BAD), rejects  # the source key
    assert await pg.count_rows(target, "users") == 40
    # each reject keeps its whole source row, as text (for the rows CSV)
    by_id = {int(r.record["id"]): r.record for r in rejects if r.record}
    assert sorted(by_id) == sorted(BAD)
    assert by_id[42] == {"id": "42", "email": "u42@example.com", "full_name": "B", "age": "200",
                         "joined": "01/01/2024", "country": "DE"}


async def test_max_errors_stops_a_run_gone_wrong(store: StateStore, data_dir: Path, pg_dsn: str) -> None:
    write_users(data_dir / "in")
    run = await prepare(store, {"source": "csv:///in", "target": pg_dsn, **SPEC, "maxErrors": 2}, data_dir)

    with pytest.raises(RejectLimit, match="more than maxErrors 2"):
        await run.run()

    assert await pg.count_rows(pg_dsn, "users") < len(GOOD)  # stopped before loading every good row
    record = await store.get_migration(run.id)
    assert record is not None and record.status == "failed"
    assert record.error and "more than maxErrors 2" in record.error


async def test_validation_false_switches_rules_off_but_not_transforms(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    write_users(data_dir / "in")
    spec = {**SPEC, "validation": False, "dedupe": {}}
    run = await migrate(store, {"source": "csv:///in", "target": pg_dsn, **spec}, data_dir)
    rejects = await store.rejects(run.id)
    assert [r.rule for r in rejects] == ["dateFormat"]  # a transform that cannot parse still rejects
    assert await pg.count_rows(pg_dsn, "users") == 45


async def test_the_cli_dry_run_writes_nothing(
    cli: Cli, data_dir: Path, tmp_path: Path, pg_dsn: str
) -> None:
    write_users(data_dir / "in")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"source": "csv:///in", "target": pg_dsn, **SPEC}))

    dry = await cli.run("run", str(spec), "--dry-run", "--sample", "100")
    assert dry.returncode == 0, dry.stderr
    assert "would fail" in dry.stdout and "duplicate 1" in dry.stdout
    assert not await pg.fetchval(pg_dsn, "SELECT to_regclass('users') IS NOT NULL")


async def test_the_same_rules_through_mongodb_to_postgres(
    store: StateStore, data_dir: Path, mongo_url: str, pg_dsn: str
) -> None:
    rows = [*GOOD[:20], *(row for row, _ in BAD.values()), *GOOD[20:]]
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_url)
    try:
        await client.get_default_database().users.insert_many(
            [{"_id": r[0], **dict(zip(HEADER[1:], r[1:]))} for r in rows])
    finally:
        await client.close()
    spec = {**SPEC, "transforms": {"users": [{"rename": {"_id": "id"}}, *SPEC["transforms"]["users"]]},  # type: ignore[index]
            "mongo": {"sampleSize": 0}}
    run = await migrate(store, {"source": mongo_url, "target": pg_dsn, **spec}, data_dir)

    assert run.status == "completed"
    rejects = await store.rejects(run.id)
    assert sorted(r.rule for r in rejects) == sorted(rule for _, rule in BAD.values())
    assert sorted(int(r.record["_id"]) for r in rejects if r.record) == sorted(BAD)  # the whole documents
    assert await pg.fetch(pg_dsn, "SELECT id, email, name FROM users ORDER BY id LIMIT 2") == [
        (1, "user1@example.com", "Name 1"), (2, "user2@example.com", "Name 2")]
    assert await pg.count_rows(pg_dsn, "users") == 40
