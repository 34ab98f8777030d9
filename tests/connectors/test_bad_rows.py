"""A batch with 3 bad rows among 5,000 loads 4,997 and rejects 3 with the database's reason: into an
existing PostgreSQL table whose constraints refuse 3 rows of one 5,000-row batch, the other 4,997
rows arrive and exactly the 3 refused ones are rejects carrying PostgreSQL's own message."""

from __future__ import annotations

from pathlib import Path

from service.store.base import StateStore
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.bigtable import create_big_table
from tests.support.csvtext import write_csv
from tests.support.runs import migrate

ROWS = 5_000
BAD = (1, 2_500, ROWS)  # the first, a middle and the last row of the batch


async def test_pg_to_pg_a_batch_with_3_rows_breaking_a_check_constraint_loads_the_other_4997(
    store: StateStore, data_dir: Path, new_pg_db: NewDatabase
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, ROWS)
    await pg.execute(source, f"UPDATE big SET name = repeat('x', 300) WHERE id IN {BAD}")
    await pg.execute(target, "CREATE TABLE big (id bigint PRIMARY KEY, name text CONSTRAINT short_name "
                             "CHECK (length(name) < 200), amount numeric(12,2), note text)")

    run = await migrate(store, {"source": source, "target": target, "batchSize": ROWS}, data_dir)

    assert run.status == "completed"
    assert (run.tables["big"].written, run.tables["big"].failed, run.tables["big"].batches) == (ROWS - 3, 3, 1)
    assert await pg.fetch(target, "SELECT * FROM big ORDER BY id") == await pg.fetch(
        source, f"SELECT * FROM big WHERE id NOT IN {BAD} ORDER BY id")
    rejects = await store.rejects(run.id)
    assert sorted(r.key or "" for r in rejects) == sorted(str(i) for i in BAD)
    assert {r.table for r in rejects} == {"big"}
    # the binary pass-through's refused rows, found through a staging table, keep their whole rows
    assert any("pg_binary pass-through" in e.message for e in await store.logs(run.id))
    assert sorted(int((r.record or {})["id"] or 0) for r in rejects) == sorted(BAD)
    for r in rejects:
        assert 'violates check constraint "short_name"' in r.message, r


async def test_csv_to_pg_a_batch_with_3_values_too_long_for_a_varchar_loads_the_other_4997(
    store: StateStore, data_dir: Path, pg_dsn: str
) -> None:
    rows = [(i, f"name {i}" if i not in BAD else f"a name far too long {i}", f"{i}.25") for i in range(1, ROWS + 1)]
    write_csv(data_dir / "big.csv", ("id", "name", "amount"), rows)
    await pg.execute(pg_dsn, "CREATE TABLE big (id integer PRIMARY KEY, name varchar(12), amount numeric(8,2))")

    run = await migrate(store, {"source": "csv:///big.csv", "target": pg_dsn, "batchSize": ROWS}, data_dir)

    assert run.status == "completed"
    assert (run.tables["big"].written, run.tables["big"].failed, run.tables["big"].batches) == (ROWS - 3, 3, 1)
    got = await pg.fetch(pg_dsn, "SELECT id, name, amount::text FROM big ORDER BY id")
    assert got == [r for r in rows if r[0] not in BAD]
    rejects = await store.rejects(run.id)
    assert sorted(r.row or 0 for r in rejects) == list(BAD)  # the CSV file's data lines
    for r in rejects:
        assert "value too long for type character varying(12)" in r.message, r
