"""Watermark sync: later passes copy only the rows whose cursor moved, replace them by key, and
(detectDeletes) delete or flag the target rows whose key left the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.store.base import StateStore
from tests.support.pg import execute, fetch
from tests.sync.support import sync_pass

ITEMS = ("CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), "
         "updated_at timestamptz NOT NULL DEFAULT now())")


async def same_rows(source: str, target: str, table: str = "items", columns: str = "id, name, price") -> list[tuple[object, ...]]:
    src = await fetch(source, f"SELECT {columns} FROM {table} ORDER BY id")
    dst = await fetch(target, f"SELECT {columns} FROM {table} ORDER BY id")
    assert dst == src
    return dst


async def test_later_passes_copy_inserts_and_updates_and_delete_what_left_the_source(
    store: StateStore, data_dir: Path, new_pg_db
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await execute(source, ITEMS, "INSERT INTO items (id, name, price, updated_at) "
                                 "SELECT i, 'item ' || i, i * 1.5, '2026-01-01'::timestamptz + i * interval '1 second' "
                                 "FROM generate_series(1, 1000) i")
    spec = {"source": source, "target": target, "batchSize": 97, "incremental": {"items": {"cursor": "updated_at"}},
            "detectDeletes": True}

    first = await sync_pass(store, spec, data_dir)
    assert first.status == "completed" and first.sync is not None and first.sync.pass_no == 0
    assert len(await same_rows(source, target)) == 1000

    await execute(source, "INSERT INTO items (id, name, price) SELECT i, 'new ' || i, 1 FROM generate_series(1001, 1010) i",
                  "UPDATE items SET name = name || ' (changed)', price = price + 1, updated_at = now() "
                  "WHERE id IN (3, 500, 999)",
                  "DELETE FROM items WHERE id IN (7, 8, 1005)")
    second = await sync_pass(store, spec, data_dir)
    assert second.id == first.id and second.sync is not None and second.sync.pass_no == 1
    rows = await same_rows(source, target)
    assert len(rows) == 1000 + 10 - 3
    history = second.sync.history[-1]
    assert (history["pass"], history["deleted"]) == (1, 2)  # 7 and 8; 1005 never reached the target
    assert history["rows"] < 30  # the changed rows (and those at the old high-water mark), not the table
    assert second.sync.lag_rows == 0

    third = await sync_pass(store, spec, data_dir)  # nothing changed
    assert third.sync is not None and third.sync.pass_no == 2 and third.sync.history[-1]["deleted"] == 0
    await same_rows(source, target)


async def test_equal_cursor_values_across_batch_boundaries_are_neither_lost_nor_duplicated(
    store: StateStore, data_dir: Path, new_pg_db
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await execute(source, ITEMS, "INSERT INTO items (id, name, price, updated_at) "
                                 "SELECT i, 'item ' || i, i, '2026-03-01' FROM generate_series(1, 50) i")
    spec = {"source": source, "target": target, "batchSize": 7, "incremental": {"items": {"cursor": "updated_at"}}}
    await sync_pass(store, spec, data_dir)
    # 40 rows get one same new timestamp (several 7-row batches share it), and a row with a key
    # lower than the last one copied arrives later with the very same cursor value.
    await execute(source, "UPDATE items SET name = 'same time ' || id, updated_at = '2026-03-02' WHERE id <= 40")
    second = await sync_pass(store, spec, data_dir)
    await execute(source, "INSERT INTO items (id, name, price, updated_at) VALUES (0, 'late, same time', 0, '2026-03-02')",
                  "UPDATE items SET name = 'again' WHERE id = 1")  # cursor unchanged: caught at the mark's value
    third = await sync_pass(store, spec, data_dir)
    rows = await same_rows(source, target)
    assert len(rows) == 51 and rows[0] == (0, "late, same time", 0) and rows[1][1] == "again"
    assert second.sync is not None and third.sync is not None
    assert second.sync.history[-1]["rows"] >= 40


@pytest.mark.parametrize("target_kind", ["postgresql", "sqlite"])
async def test_soft_delete_flags_rows_and_a_returning_key_clears_the_flag(
    store: StateStore, data_dir: Path, new_pg_db, target_kind: str
) -> None:
    source = await new_pg_db()
    target = await new_pg_db() if target_kind == "postgresql" else "sqlite:///sync.db"
    await execute(source, ITEMS, "INSERT INTO items (id, name, price) SELECT i, 'item ' || i, i FROM generate_series(1, 20) i")
    spec = {"source": source, "target": target, "incremental": {"items": {"cursor": "updated_at"}},
            "detectDeletes": {"softDelete": "deleted"}}
    await sync_pass(store, spec, data_dir)
    await execute(source, "DELETE FROM items WHERE id IN (2, 4)")
    await sync_pass(store, spec, data_dir)
    flagged = await read_target(target, data_dir, "SELECT id FROM items WHERE deleted ORDER BY id" if target_kind == "postgresql"
                                else "SELECT id FROM items WHERE deleted = 1 ORDER BY id")
    assert flagged == [(2,), (4,)]
    await execute(source, "INSERT INTO items (id, name, price) VALUES (2, 'back', 2)")
    await sync_pass(store, spec, data_dir)
    flagged = await read_target(target, data_dir, "SELECT id, name FROM items WHERE deleted "
                                + ("" if target_kind == "postgresql" else "= 1 ") + "OR id = 2 ORDER BY id")
    assert flagged == [(2, "back"), (4, "item 4")]


async def read_target(target: str, data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    if target.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(data_dir / "sync.db") as c:
            return [tuple(r) for r in c.execute(sql).fetchall()]
    return await fetch(target, sql)


async def test_a_sqlite_source_is_synced_by_its_cursor_column(store: StateStore, data_dir: Path, new_pg_db) -> None:
    import sqlite3

    target = await new_pg_db()
    with sqlite3.connect(data_dir / "app.db") as c:
        c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, version INTEGER NOT NULL)")
        c.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", [(i, f"item {i}", i / 2, i) for i in range(1, 301)])
    spec = {"source": "sqlite:///app.db", "target": target, "batchSize": 50,
            "incremental": {"items": {"cursor": "version"}}, "detectDeletes": True}
    await sync_pass(store, spec, data_dir)
    with sqlite3.connect(data_dir / "app.db") as c:
        c.execute("UPDATE items SET name = 'changed', version = 1000 WHERE id IN (1, 2)")
        c.execute("INSERT INTO items VALUES (301, 'new', 0.5, 1001)")
        c.execute("DELETE FROM items WHERE id = 300")
    second = await sync_pass(store, spec, data_dir)
    with sqlite3.connect(data_dir / "app.db") as c:
        expected = [tuple(r) for r in c.execute("SELECT id, name FROM items ORDER BY id")]
    assert await fetch(target, "SELECT id, name FROM items ORDER BY id") == expected
    assert second.sync is not None and second.sync.history[-1]["rows"] == 3  # the 3 changed (300, at the old mark, is gone)
