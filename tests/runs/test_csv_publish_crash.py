"""A CSV export stopped after its file was published but before the state store heard of it: the
resumed run accepts its own file (and ends with it exact), and a rollback still removes the file
the run created — rather than restoring the run's own output as "the file before"."""

from __future__ import annotations

from pathlib import Path

from service.runs.migration import resolve
from service.runs.rollback import roll_back
from service.store.base import StateStore
from tests.support import pg
from tests.support.bigtable import create_big_table
from tests.support.runs import migrate, prepare


async def test_a_run_resumed_after_publishing_its_file_accepts_it_and_rollback_removes_it(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    await create_big_table(pg_dsn, 3_000)
    spec = {"source": pg_dsn, "target": "csv:///out", "batchSize": 1000, "verify": "off"}
    first = await migrate(store, spec, data_dir)
    exported = (data_dir / "out" / "big.csv").read_bytes()
    # As if the process died right after the rename: the store still has the table running.
    await store.save_table(first.id, "big", "big", "running", 3_000)
    await store.set_status(first.id, "interrupted")

    again = await prepare(store, spec, data_dir)
    assert again.id == first.id
    await again.run()

    assert again.status == "completed"
    assert (data_dir / "out" / "big.csv").read_bytes() == exported
    record = await store.get_migration(first.id)
    assert record is not None
    await roll_back(store, record, again.spec, resolve(again.spec, data_dir).target)
    assert not (data_dir / "out" / "big.csv").exists()
    assert [p.name for p in (data_dir / "out").iterdir()] == []
    assert await pg.count_rows(pg_dsn, "big") == 3_000
