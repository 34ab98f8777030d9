"""Change capture end to end: a PostgreSQL source's inserts, updates and deletes reach the target
through a logical replication slot (no cursor column), including those made during the first copy;
a rollback drops the slot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.runs.events import BatchCommitted, Event
from service.runs.migration import resolve
from service.runs.rollback import roll_back
from service.store.base import StateStore
from tests.support.pg import execute, fetch, fetchval
from tests.sync.support import cut_over, sync_pass


async def logical(dsn: str) -> None:
    if await fetchval(dsn, "SHOW wal_level") != "logical":
        pytest.skip("the test cluster was not started with wal_level=logical")


async def test_inserts_updates_and_deletes_flow_through_the_slot_and_rollback_drops_it(
    store: StateStore, data_dir: Path, new_pg_db
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await logical(source)
    await execute(source, "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(12,2))",
                  "CREATE TABLE notes (id bigint PRIMARY KEY, body text)",
                  "INSERT INTO accounts SELECT i, 'owner ' || i, i * 10 FROM generate_series(1, 500) i",
                  "INSERT INTO notes VALUES (1, 'a'), (2, 'b')")
    spec = {"source": source, "target": target, "batchSize": 100, "parallelBatches": 1,
            "incremental": {"accounts": {"capture": True}, "notes": {"capture": True}}}
    during: list[asyncio.Task[None]] = []

    def change_during_the_copy(event: Event) -> None:  # row 1 is copied already when batch 1 is in
        if isinstance(event, BatchCommitted) and event.progress.table == "accounts" and not during:
            during.append(asyncio.ensure_future(execute(
                source, "SET synchronous_commit = on; UPDATE accounts SET owner = 'during the copy' WHERE id = 1")))

    first = await sync_pass(store, spec, data_dir, listeners=[change_during_the_copy])
    assert during, "no batch was committed: the update was never made during the copy"
    await asyncio.gather(*during)
    assert first.sync is not None and first.sync.slot is not None
    slot = first.sync.slot
    assert await fetchval(source, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot) == 1

    await execute(source, "SET synchronous_commit = on; "
                          "INSERT INTO accounts VALUES (501, 'new', 1), (502, 'O''Brien\nline two', NULL);"
                          "UPDATE accounts SET balance = balance + 1 WHERE id <= 10;"
                          "UPDATE accounts SET id = 1000 WHERE id = 20;"
                          "DELETE FROM accounts WHERE id IN (30, 31, 501);"
                          "DELETE FROM notes WHERE id = 1; UPDATE notes SET body = 'changed' WHERE id = 2")
    second = await sync_pass(store, spec, data_dir)

    assert await fetch(target, "SELECT owner FROM accounts WHERE id = 1") == [("during the copy",)]
    for table in ("accounts", "notes"):
        assert await fetch(target, f"SELECT * FROM {table} ORDER BY id") == \
            await fetch(source, f"SELECT * FROM {table} ORDER BY id")
    assert second.sync is not None and second.sync.pass_no == 1 and second.sync.lag_rows == 0

    third = await sync_pass(store, spec, data_dir)  # nothing new: nothing done, still equal
    assert third.sync is not None and third.sync.history[-1]["rows"] == 0

    record = await store.get_migration(third.id)
    assert record is not None
    endpoints = resolve(third.spec, data_dir)
    await roll_back(store, record, third.spec, endpoints.target, source=endpoints.source)
    assert await fetchval(source, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot) == 0
    assert await fetch(target, "SELECT tablename FROM pg_tables WHERE tablename IN ('accounts', 'notes')") == []


async def test_many_small_transactions_are_all_applied_and_parents_and_children_keep_their_foreign_key(
    store: StateStore, data_dir: Path, new_pg_db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window of the slot holds a few changes (WINDOW is made small): the pass reads windows
    until it has caught up. The target's foreign keys come at the cutover, once every change is in,
    and are valid then."""
    from service.sync import capture_pass

    monkeypatch.setattr(capture_pass, "WINDOW", 7)
    source, target = await new_pg_db(), await new_pg_db()
    await logical(source)
    await execute(source, "CREATE TABLE parents (id int PRIMARY KEY, name text)",
                  "CREATE TABLE children (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parents, v text)",
                  "INSERT INTO parents VALUES (1, 'p1'), (2, 'p2')",
                  "INSERT INTO children VALUES (10, 1, 'c10'), (20, 2, 'c20')")
    spec = {"source": source, "target": target,
            "incremental": {"parents": {"capture": True}, "children": {"capture": True}}}
    await sync_pass(store, spec, data_dir)
    assert await fetchval(target, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == 0
    statements = ["SET synchronous_commit = on"]
    statements += [f"UPDATE children SET v = 'v{i}' WHERE id = 10" for i in range(30)]  # 30 one-row transactions
    statements += ["BEGIN; INSERT INTO parents VALUES (3, 'p3'); INSERT INTO children VALUES (30, 3, 'c30'); COMMIT",
                   "BEGIN; DELETE FROM children WHERE id = 20; DELETE FROM parents WHERE id = 2; COMMIT"]
    await execute(source, *statements)
    try:
        second = await sync_pass(store, spec, data_dir)
        for table in ("parents", "children"):
            assert await fetch(target, f"SELECT * FROM {table} ORDER BY id") == \
                await fetch(source, f"SELECT * FROM {table} ORDER BY id")
        assert second.sync is not None and second.sync.lag_rows == 0
        answer = await cut_over(store, spec, data_dir)
        assert (answer["ok"], answer["lagRows"]) == (True, 0) and answer["slotDropped"]
        assert await fetchval(target, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated") == 1
    finally:
        for (slot,) in await fetch(source, "SELECT slot_name FROM pg_replication_slots"):
            await execute(source, f"SELECT pg_drop_replication_slot('{slot}')")
