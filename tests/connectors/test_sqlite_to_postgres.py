"""SQLite -> PostgreSQL: every row and value arrives, with and without a declared primary key."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import date
from pathlib import Path

import pytest

from service.store import SqliteStateStore
from tests.support import pg
from tests.support.runs import migrate

SPECIAL = [
    (1, 'He said "hi"', 1.5, b"\x00\x01\xff", 1, "2024-01-02"),
    (2, "a,b\nc", -0.25, b"", 0, "1999-12-31"),
    (3, "Zoë 東京 🚀", None, None, None, None),
    (4, "", 0.0, b"\\x00", 1, "2000-02-29"),
    (5, None, 1e300, b"'quoted'", 0, "1970-01-01"),
]


def expected_rows(n: int) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = list(SPECIAL)
    for i in range(len(rows) + 1, n + 1):
        rows.append((i, f"name {i}", i * 0.5, i.to_bytes(4, "big"), i % 2, f"2020-01-{1 + i % 28:02d}"))
    return rows


@pytest.fixture
def sqlite_source(data_dir: Path) -> list[tuple[object, ...]]:
    rows = expected_rows(400)
    with closing(sqlite3.connect(data_dir / "src.db")) as conn, conn:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, score REAL, photo BLOB,"
                     " active BOOLEAN, born DATE)")
        conn.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.execute("CREATE TABLE visits (person INTEGER, page TEXT, seconds REAL)")
        conn.executemany("INSERT INTO visits VALUES (?, ?, ?)",
                         [(i % 50, f"/page/{i % 7}" if i % 9 else "", i / 8) for i in range(300)] * 2)
    return rows


def as_postgres(row: tuple[object, ...]) -> tuple[object, ...]:
    id_, name, score, photo, active, born = row
    return (id_, name, score, photo, None if active is None else bool(active),
            None if born is None else date.fromisoformat(str(born)))


async def test_sqlite_table_with_a_primary_key_arrives_value_for_value(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, sqlite_source: list[tuple[object, ...]]
) -> None:
    migration = await migrate(store, {"source": "sqlite:///src.db", "target": pg_dsn, "tables": ["people"],
                                      "batchSize": 64}, data_dir)

    assert migration.status == "completed"
    got = await pg.fetch(pg_dsn, "SELECT id, name, score, photo, active, born FROM people ORDER BY id")
    assert got == [as_postgres(r) for r in sqlite_source]
    assert await pg.primary_key(pg_dsn, "people") == ["id"]


async def test_sqlite_table_without_a_primary_key_arrives_with_every_row(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, sqlite_source: list[tuple[object, ...]]
) -> None:
    await migrate(store, {"source": "sqlite:///src.db", "target": pg_dsn, "tables": ["visits"], "batchSize": 64},
                  data_dir)

    with closing(sqlite3.connect(data_dir / "src.db")) as conn:
        source_rows = conn.execute("SELECT person, page, seconds FROM visits").fetchall()
    assert await pg.row_multiset(pg_dsn, "visits") == pg.Counter(source_rows)
