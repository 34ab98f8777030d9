"""The StateStore as its users see it, on both backends: a SQLite file and a PostgreSQL database
(schema `migrator_state`). Every behaviour below holds for each of them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.core.batch import Checkpoint, Reject
from service.core.errors import MigratorError
from service.store import LogEntry, MigrationRecord, StateStore, open_state_store
from tests.conftest import NewDatabase

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
async def state_url(request: pytest.FixtureRequest, tmp_path: Path, new_pg_db: NewDatabase) -> str:
    """Overrides conftest's: the `store` fixture opens this URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return await new_pg_db()


def record(mid: str, *, fingerprint: str = "fp", status: str = "initialized",
           created_at: str = "2026-11-25T10:00:00.000Z") -> MigrationRecord:
    return MigrationRecord(
        id=mid, fingerprint=fingerprint, status=status, created_at=created_at,
        spec={"source": "postgresql://app:${PGPASSWORD}@db1/shop", "target": "csv:///out",
              "tables": ["users", "orders"], "batchSize": 5000, "csv": {"types": {"users": {"age": "integer"}}}},
        source="postgresql://app:***@db1/shop", target="csv:///out",
    )


def entry(message: str, level: str = "INFO", table: str | None = None, **fields: object) -> LogEntry:
    return LogEntry(timestamp="2026-11-25T10:00:01.000Z", level=level, message=message, table=table,
                    **fields)  # type: ignore[arg-type]


def reject(table: str, row: int, value: str | None = "x") -> Reject:
    return Reject(table=table, row=row, key=str(row), column="age", value=value, rule="type",
                  message=f"not an integer: {value!r}")


async def test_a_created_migration_reads_back_exactly(store: StateStore) -> None:
    created = record("m1")
    await store.create_migration(created)

    assert await store.get_migration("m1") == created
    assert await store.get_migration("nope") is None


async def test_migrations_are_listed_newest_first_even_when_created_in_the_same_millisecond(store: StateStore) -> None:
    await store.create_migration(record("old", created_at="2026-11-25T10:00:00.000Z"))
    await store.create_migration(record("b", created_at="2026-11-25T10:00:00.123Z"))
    await store.create_migration(record("a", created_at="2026-11-25T10:00:00.123Z"))  # same ms, created after "b"

    assert [m.id for m in await store.list_migrations()] == ["a", "b", "old"]
    assert [m.id for m in await store.list_migrations(limit=2)] == ["a", "b"]
    latest = await store.find_latest("fp")
    assert latest is not None and latest.id == "a"


async def test_find_unfinished_passes_over_completed_runs_and_find_latest_does_not(store: StateStore) -> None:
    await store.create_migration(record("failed", status="failed", created_at="2026-11-25T10:00:00.000Z"))
    await store.create_migration(record("done", status="completed", created_at="2026-11-25T11:00:00.000Z"))
    await store.create_migration(record("other", fingerprint="fp2", status="paused",
                                        created_at="2026-11-25T12:00:00.000Z"))

    unfinished = await store.find_unfinished("fp")
    latest = await store.find_latest("fp")
    assert unfinished is not None and unfinished.id == "failed"
    assert latest is not None and latest.id == "done"
    assert await store.find_unfinished("fp3") is None


async def test_save_spec_replaces_the_spec_and_the_fingerprint(store: StateStore) -> None:
    await store.create_migration(record("m1"))
    spec: dict[str, object] = {"source": "csv:///in", "target": "sqlite:///out.db", "tables": ["t"],
                               "rules": {"t": {"email": {"format": "email", "required": True}}}}

    await store.save_spec("m1", spec, "fp-planned")

    got = await store.get_migration("m1")
    assert got is not None and (got.spec, got.fingerprint) == (spec, "fp-planned")
    assert await store.find_latest("fp") is None
    latest = await store.find_latest("fp-planned")
    assert latest is not None and latest.id == "m1"


async def test_set_status_stamps_the_start_once_and_the_end_only_while_ended(store: StateStore) -> None:
    await store.create_migration(record("m1"))

    await store.set_status("m1", "executing", started=True)
    first = await store.get_migration("m1")
    assert first is not None and first.status == "executing" and first.started_at and first.ended_at is None

    await asyncio.sleep(0.01)  # a later millisecond, so a second stamp would differ
    await store.set_status("m1", "failed", error="boom", ended=True)
    failed = await store.get_migration("m1")
    assert failed is not None and (failed.status, failed.error) == ("failed", "boom")
    assert failed.ended_at is not None and failed.ended_at > first.started_at

    await store.set_status("m1", "executing", started=True)  # resumed
    resumed = await store.get_migration("m1")
    assert resumed is not None
    assert (resumed.status, resumed.error, resumed.started_at, resumed.ended_at) == (
        "executing", None, first.started_at, None)


async def test_mark_interrupted_changes_only_runs_that_were_executing_pausing_or_paused(store: StateStore) -> None:
    statuses = ["initialized", "planned", "executing", "pausing", "paused", "completed", "failed", "cancelled"]
    for status in statuses:
        await store.create_migration(record(status, status=status))

    assert await store.mark_interrupted() == 3

    after = {m.id: m.status for m in await store.list_migrations()}
    assert after == {s: "interrupted" if s in ("executing", "pausing", "paused") else s for s in statuses}
    assert await store.mark_interrupted() == 0


async def test_tables_come_back_in_the_order_first_saved_and_keep_a_known_total(store: StateStore) -> None:
    await store.create_migration(record("m1"))
    await store.save_table("m1", "users", "customers", "pending", 100)
    await store.save_table("m1", "orders", "orders", "pending", None)
    await store.save_table("m1", "products", "products", "pending", 7)

    await store.save_table("m1", "users", "customers", "completed", None)
    await store.save_table("m1", "orders", "orders", "running", 50)

    got = [(t.table, t.target, t.status, t.total, t.checkpoint) for t in await store.tables("m1")]
    assert got == [("users", "customers", "completed", 100, None), ("orders", "orders", "running", 50, None),
                   ("products", "products", "pending", 7, None)]
    assert await store.tables("other") == []


async def test_a_checkpoint_its_rejects_and_log_entries_are_saved_and_read_back(store: StateStore) -> None:
    await store.create_migration(record("m1"))
    await store.save_table("m1", "users", "users", "running", 10)
    position = ["O'Brien \"quoted\" é\x00", 42, ["nested", -7, [None]], 3.5]
    checkpoint = Checkpoint(position, rows_written=9, rows_failed=1, batches=2, sink_state=12345)  # type: ignore[arg-type]

    await store.save_checkpoint("m1", "users", checkpoint, [reject("users", 4)],
                                [entry("Batch 2: 9 records migrated", table="users", batch=2)])

    assert await store.load_checkpoint("m1", "users") == checkpoint
    assert [t.checkpoint for t in await store.tables("m1")] == [checkpoint]
    assert await store.rejects("m1") == [reject("users", 4)]
    assert [(e.message, e.table, e.batch) for e in await store.logs("m1")] == [
        ("Batch 2: 9 records migrated", "users", 2)]
    assert await store.load_checkpoint("m1", "orders") is None


async def test_a_later_checkpoint_replaces_the_earlier_one_and_a_missing_sink_state_stays_none(
    store: StateStore,
) -> None:
    await store.create_migration(record("m1"))
    await store.save_table("m1", "t", "t", "running", None)
    await store.save_checkpoint("m1", "t", Checkpoint([1], 1, 0, 1, 10), [])

    await store.save_checkpoint("m1", "t", Checkpoint(500, 500, 0, 2, None), [])

    assert await store.load_checkpoint("m1", "t") == Checkpoint(500, 500, 0, 2, None)


async def test_a_checkpoint_that_cannot_be_saved_leaves_no_rejects_or_log_entries_behind(store: StateStore) -> None:
    await store.create_migration(record("m1"))
    await store.save_table("m1", "t", "t", "running", None)
    before = Checkpoint([10], 10, 0, 1)
    await store.save_checkpoint("m1", "t", before, [])
    broken = LogEntry(timestamp="2026-11-25T10:00:01.000Z", level=None, message="no level")  # type: ignore[arg-type]

    with pytest.raises(MigratorError):  # EndpointError from either backend
        await store.save_checkpoint("m1", "t", Checkpoint([20], 19, 1, 2), [reject("t", 15)],
                                    [entry("Batch 2"), broken])

    assert await store.load_checkpoint("m1", "t") == before
    assert await store.rejects("m1") == []
    assert await store.logs("m1") == []


async def test_logs_are_oldest_first_and_filtered_by_level_and_above_table_limit_and_after(store: StateStore) -> None:
    await store.create_migration(record("m1"))
    await store.create_migration(record("m2"))
    await store.add_log("m1", entry("debugging", "DEBUG"))
    await store.add_log("m1", entry("Batch 1: 5000 records migrated", "INFO", "users", batch=1))
    await store.add_log("m2", entry("another run", "ERROR"))
    await store.add_log("m1", entry("Duplicate key in users.email", "WARNING", "users", batch=1,
                                    record_id="17", value="a@example.com", error="duplicate"))
    await store.add_log("m1", entry("orders failed", "ERROR", "orders"))

    everything = await store.logs("m1")
    assert [e.message for e in everything] == ["debugging", "Batch 1: 5000 records migrated",
                                               "Duplicate key in users.email", "orders failed"]
    ids = [e.id for e in everything]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(ids)
    assert everything[2] == LogEntry(timestamp="2026-11-25T10:00:01.000Z", level="WARNING",
                                     message="Duplicate key in users.email", table="users", batch=1,
                                     record_id="17", value="a@example.com", error="duplicate", id=ids[2])
    assert [e.level for e in await store.logs("m1", level="warning")] == ["WARNING", "ERROR"]
    assert [e.level for e in await store.logs("m1", level="ERROR")] == ["ERROR"]
    assert [e.message for e in await store.logs("m1", table="users")] == [
        "Batch 1: 5000 records migrated", "Duplicate key in users.email"]
    assert [e.message for e in await store.logs("m1", level="INFO", table="users", limit=1)] == [
        "Batch 1: 5000 records migrated"]
    assert [e.id for e in await store.logs("m1", after=ids[1])] == ids[2:]
    assert [e.id for e in await store.logs("m1", after=ids[1], limit=1)] == ids[2:3]
    assert await store.logs("m1", after=ids[-1]) == []


async def test_delete_logs_removes_one_migrations_entries_and_says_how_many(store: StateStore) -> None:
    for mid in ("m1", "m2"):
        await store.create_migration(record(mid))
    for i in range(3):
        await store.add_log("m1", entry(f"line {i}"))
    await store.add_log("m2", entry("kept"))

    assert await store.delete_logs("m1") == 3

    assert await store.logs("m1") == []
    assert [e.message for e in await store.logs("m2")] == ["kept"]
    assert await store.delete_logs("m1") == 0


async def test_rejects_are_in_saved_order_and_filtered_by_table_and_limit(store: StateStore) -> None:
    await store.create_migration(record("m1"))
    for table in ("users", "orders"):
        await store.save_table("m1", table, table, "running", None)
    await store.save_checkpoint("m1", "users", Checkpoint([5], 3, 2, 1), [reject("users", 2), reject("users", 5)])
    await store.save_checkpoint("m1", "orders", Checkpoint(100, 99, 1, 1), [reject("orders", 7, None)])
    await store.save_checkpoint("m1", "users", Checkpoint([9], 6, 3, 2), [reject("users", 9)])

    assert await store.rejects("m1") == [reject("users", 2), reject("users", 5), reject("orders", 7, None),
                                         reject("users", 9)]
    assert [r.row for r in await store.rejects("m1", table="users")] == [2, 5, 9]
    assert [r.row for r in await store.rejects("m1", table="users", limit=2)] == [2, 5]
    assert await store.rejects("m2") == []


async def test_a_rejected_value_with_a_nul_byte_is_kept(store: StateStore) -> None:
    await store.create_migration(record("m1"))
    await store.save_table("m1", "t", "t", "running", None)

    await store.save_checkpoint("m1", "t", Checkpoint([1], 0, 1, 1), [reject("t", 1, "a\x00b")])

    [kept] = await store.rejects("m1")
    assert kept.row == 1 and kept.value is not None and kept.value[0] == "a" and kept.value[-1] == "b"


async def test_a_store_opened_again_after_close_has_everything(state_url: str) -> None:
    first = await open_state_store(state_url)
    try:
        await first.create_migration(record("m1"))
        await first.set_status("m1", "paused", started=True)
        await first.save_table("m1", "users", "users", "running", 10)
        await first.save_checkpoint("m1", "users", Checkpoint(["k", 5], 5, 1, 1, None), [reject("users", 3)],
                                    [entry("Batch 1", table="users", batch=1)])
    finally:
        await first.close()

    again = await open_state_store(state_url)
    try:
        migration = await again.get_migration("m1")
        assert migration is not None and migration.status == "paused" and migration.started_at
        assert await again.load_checkpoint("m1", "users") == Checkpoint(["k", 5], 5, 1, 1, None)
        assert await again.rejects("m1") == [reject("users", 3)]
        assert [e.message for e in await again.logs("m1")] == ["Batch 1"]
        assert await again.mark_interrupted() == 1
    finally:
        await again.close()
