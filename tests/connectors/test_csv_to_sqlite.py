"""CSV -> SQLite: every row and value arrives; NULL and the empty string stay apart."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from service.store import SqliteStateStore
from tests.support.datasets import people_rows, write_people_csv
from tests.support.runs import migrate


def sqlite_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def as_sqlite(row: tuple[object, ...]) -> tuple[object, ...]:
    """How SQLite stores a people row: booleans as 0/1, dates as ISO text."""
    id_, name, score, active, joined, note = row
    return (id_, name, score, None if active is None else int(bool(active)),
            None if joined is None else joined.isoformat(), note)  # type: ignore[attr-defined]


@pytest.mark.parametrize("batch_size", [4, 5000])
async def test_csv_to_sqlite_copies_every_row_and_value(
    store: SqliteStateStore, data_dir: Path, batch_size: int
) -> None:
    rows = people_rows(300)
    (data_dir / "in").mkdir()
    write_people_csv(data_dir / "in" / "people.csv", rows)

    migration = await migrate(store, {"source": "csv:///in", "target": "sqlite:///out.db",
                                      "batchSize": batch_size}, data_dir)

    assert migration.status == "completed"
    got = sqlite_rows(data_dir / "out.db", "SELECT id, name, score, active, joined, note FROM people ORDER BY id")
    assert got == [as_sqlite(r) for r in rows]


async def test_csv_to_an_absolute_sqlite_path_creates_the_file_there(
    store: SqliteStateStore, data_dir: Path, tmp_path: Path
) -> None:
    rows = people_rows(10)
    write_people_csv(tmp_path / "people.csv", rows)
    target = tmp_path / "nested" / "dir" / "people.db"

    await migrate(store, {"source": f"csv:///{tmp_path / 'people.csv'}", "target": f"sqlite:///{target}"}, data_dir)

    assert sqlite_rows(target, "SELECT count(*) FROM people") == [(10,)]
