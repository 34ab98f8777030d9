"""A sync's rows can be undone in one call — in a table that held rows before, the rows it replaced
come back as they were — and a sync pass stopped midway goes on from its checkpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.runs.events import BatchCommitted, Event
from service.runs.migration import Migration, find_for_sync, resolve
from service.runs.rollback import roll_back
from service.runs.spec import MigrationSpec
from service.store.base import StateStore
from tests.support.pg import execute, fetch
from tests.support.runs import stop
from tests.sync.support import cut_over, sync_pass

ITEMS = ("CREATE TABLE items (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now())")


async def rows(dsn: str) -> list[tuple[object, ...]]:
    return await fetch(dsn, "SELECT id, name FROM items ORDER BY id")


async def test_rollback_puts_back_the_rows_a_sync_replaced_and_deleted_in_a_table_that_held_rows(
    store: StateStore, data_dir: Path, new_pg_db
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await execute(source, ITEMS, "INSERT INTO items (id, name) SELECT i, 'source ' || i FROM generate_series(1, 300) i")
    # The target's own table: rows 1–5 are older versions, 1000 is the target's alone.
    await execute(target, ITEMS, "INSERT INTO items (id, name) SELECT i, 'target ' || i FROM generate_series(1, 5) i",
                  "INSERT INTO items (id, name) VALUES (1000, 'only in the target')")
    before = await rows(target)
    spec = {"source": source, "target": target, "batchSize": 64, "incremental": {"items": {"cursor": "updated_at"}},
            "detectDeletes": True}
    await sync_pass(store, spec, data_dir)
    await execute(source, "UPDATE items SET name = 'changed', updated_at = now() + interval '1 minute' "
                          "WHERE id IN (2, 200)", "DELETE FROM items WHERE id = 3")
    last = await sync_pass(store, spec, data_dir)
    after = await rows(target)
    assert (2, "changed") in after and 3 not in [r[0] for r in after]
    assert (1000, "only in the target") not in after  # its key is not in the source: detectDeletes took it

    record = await store.get_migration(last.id)
    assert record is not None
    done = await roll_back(store, record, last.spec, resolve(last.spec, data_dir).target)

    assert await rows(target) == before
    assert any("put back" in line for line in done), done


async def test_a_sync_pass_stopped_midway_goes_on_from_its_checkpoint_and_ends_exact(
    store: StateStore, data_dir: Path, new_pg_db
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await execute(source, ITEMS, "INSERT INTO items (id, name, updated_at) SELECT i, 'v1 ' || i, "
                                 "'2026-01-01'::timestamptz + i * interval '1 second' FROM generate_series(1, 2000) i")
    spec = {"source": source, "target": target, "batchSize": 100, "parallelBatches": 1,
            "incremental": {"items": {"cursor": "updated_at"}}}
    await sync_pass(store, spec, data_dir)
    await execute(source, "UPDATE items SET name = 'v2 ' || id, updated_at = '2026-02-01'::timestamptz + id * "
                          "interval '1 second' WHERE id % 2 = 0")
    parsed = MigrationSpec.from_dict(spec)
    endpoints = resolve(parsed, data_dir)
    record, _ = await find_for_sync(store, parsed, endpoints)
    committed = asyncio.Event()
    batches = 0

    def watch(event: Event) -> None:
        nonlocal batches
        if isinstance(event, BatchCommitted):
            batches += 1
            if batches == 3:
                committed.set()

    stopped = Migration(record, parsed, endpoints, store, listeners=[watch])
    task = asyncio.create_task(stopped.run(sync=True))
    await asyncio.wait_for(committed.wait(), 30)
    await stop(task, stopped, before="the third batch")
    record = await store.get_migration(stopped.id)
    assert record is not None and record.status == "cancelled"
    partly = await fetch(target, "SELECT count(*) FROM items WHERE name LIKE 'v2 %'")
    assert 0 < partly[0][0] < 1000  # type: ignore[operator]

    resumed = await sync_pass(store, spec, data_dir)  # the same pass, resumed: not a new one

    logged = [e.message for e in await store.logs(resumed.id)]
    assert any("sync pass 1" in m and "resumed" in m for m in logged), logged  # the same pass, not pass 2
    assert await rows(target) == await rows(source)
    assert resumed.tables["items"].written < 2000 + 1000 + 100  # pass 0, pass 1's 1000 rows, at most a batch again


async def test_identity_and_generated_columns_of_an_existing_table_are_synced_and_rolled_back(
    store: StateStore, data_dir: Path, new_pg_db
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await execute(source, ITEMS, "INSERT INTO items (id, name) SELECT i, 'source ' || i FROM generate_series(1, 50) i")
    await execute(target, "CREATE TABLE items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, "
                          "updated_at timestamptz, name_length int GENERATED ALWAYS AS (length(name)) STORED)",
                  "INSERT INTO items (name) VALUES ('mine 1'), ('mine 2')")
    before = await fetch(target, "SELECT * FROM items ORDER BY id")
    spec = {"source": source, "target": target, "incremental": {"items": {"cursor": "updated_at"}}}
    await sync_pass(store, spec, data_dir)
    await execute(source, "UPDATE items SET name = 'longer name now', updated_at = now() + interval '1 minute' "
                          "WHERE id = 1")
    last = await sync_pass(store, spec, data_dir)
    assert await fetch(target, "SELECT name, name_length FROM items WHERE id = 1") == [("longer name now", 15)]
    assert await rows(target) == await rows(source)

    record = await store.get_migration(last.id)
    assert record is not None
    await roll_back(store, record, last.spec, resolve(last.spec, data_dir).target)
    assert await fetch(target, "SELECT * FROM items ORDER BY id") == before


async def test_max_errors_counts_each_pass_s_own_rejects(store: StateStore, data_dir: Path, new_pg_db) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await execute(source, ITEMS, "INSERT INTO items (id, name, updated_at) SELECT i, 'ok', "
                                 "'2026-01-01'::timestamptz + i * interval '1 second' FROM generate_series(1, 20) i",
                  "UPDATE items SET name = 'far too long' WHERE id IN (1, 2)")
    spec = {"source": source, "target": target, "maxErrors": 2, "incremental": {"items": {"cursor": "updated_at"}},
            "rules": {"items": {"name": {"maxLength": 5}}}}
    first = await sync_pass(store, spec, data_dir)
    assert first.status == "completed" and first.tables["items"].failed == 2
    await execute(source, "UPDATE items SET name = 'also too long', updated_at = now() + interval '1 minute' "
                          "WHERE id = 3")
    second = await sync_pass(store, spec, data_dir)  # 3 rejects in all, 1 in this pass: within maxErrors
    assert second.status == "completed" and second.tables["items"].failed == 3


@pytest.mark.parametrize("column", ["serial PRIMARY KEY", "int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"])
async def test_after_a_copy_into_a_table_with_a_sequence_the_application_s_next_insert_does_not_collide(
    store: StateStore, data_dir: Path, new_pg_db, column: str
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await execute(source, ITEMS, "INSERT INTO items (id, name) SELECT i, 'source ' || i FROM generate_series(1, 50) i")
    await execute(target, f"CREATE TABLE items (id {column}, name text, updated_at timestamptz)",
                  "INSERT INTO items (name) VALUES ('mine')")  # id 1: the sequence stands at 1
    spec = {"source": source, "target": target, "incremental": {"items": {"cursor": "updated_at"}}}
    await sync_pass(store, spec, data_dir)

    assert await fetch(target, "INSERT INTO items (name) VALUES ('the application') RETURNING id") == [(51,)]


async def test_a_cutover_refused_because_the_source_changed_adds_no_foreign_keys_and_a_second_one_does(
    store: StateStore, data_dir: Path, new_pg_db
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await execute(source, "CREATE TABLE parents (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now())",
                  "CREATE TABLE children (id int PRIMARY KEY, parent_id int REFERENCES parents, "
                  "updated_at timestamptz NOT NULL DEFAULT now())",
                  "INSERT INTO parents (id) SELECT generate_series(1, 10)",
                  "INSERT INTO children (id, parent_id) SELECT i, i FROM generate_series(1, 10) i")
    spec = {"source": source, "target": target, "batchSize": 5, "parallelBatches": 1,
            "incremental": {"parents": {"cursor": "updated_at"}, "children": {"cursor": "updated_at"}}}
    await sync_pass(store, spec, data_dir)
    writes: list[asyncio.Task[None]] = []

    def the_source_goes_on(event: Event) -> None:  # during the cutover's last pass
        if isinstance(event, BatchCommitted) and not writes:
            writes.append(asyncio.ensure_future(execute(
                source, "INSERT INTO parents (id, updated_at) VALUES (11, now() + interval '1 hour')")))

    refused = await cut_over(store, spec, data_dir, listeners=[the_source_goes_on])
    await asyncio.gather(*writes)

    assert refused["ok"] is False and refused["lagRows"] == 1 and "stop writing" in str(refused["message"])
    assert await fetch(target, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(0,)]
    done = await cut_over(store, spec, data_dir)
    assert (done["ok"], done["lagRows"]) == (True, 0)
    assert await fetch(target, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated") == [(1,)]
    assert await fetch(target, "SELECT count(*) FROM parents") == [(11,)]
