"""CSV -> PostgreSQL: every row and value arrives, NULL and empty string kept apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.store import SqliteStateStore
from tests.support import pg
from tests.support.datasets import people_rows, write_people_csv
from tests.support.runs import migrate


@pytest.mark.parametrize("batch_size", [3, 5000])
async def test_csv_folder_to_postgres_copies_every_row_and_value(
    store: SqliteStateStore, data_dir: Path, tmp_path: Path, pg_dsn: str, batch_size: int
) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    rows = people_rows(300)
    write_people_csv(folder / "people.csv", rows)

    migration = await migrate(store, {"source": f"csv:///{folder}", "target": pg_dsn, "batchSize": batch_size},
                              data_dir)

    assert migration.status == "completed"
    got = await pg.fetch(pg_dsn, "SELECT id, name, score, active, joined, note FROM people ORDER BY id")
    assert got == rows


async def test_single_csv_file_url_names_the_table_after_the_file(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str
) -> None:
    rows = people_rows(20)
    write_people_csv(data_dir / "customers.csv", rows)

    # three slashes: relative to the data folder
    await migrate(store, {"source": "csv:///customers.csv", "target": pg_dsn}, data_dir)

    got = await pg.fetch(pg_dsn, "SELECT id, name, score, active, joined, note FROM customers ORDER BY id")
    assert got == rows


async def test_crlf_line_endings_are_not_part_of_the_values(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str
) -> None:
    (data_dir / "crlf.csv").write_bytes(b'id,name\r\n1,alpha\r\n2,"two\r\nlines"\r\n3,\r\n4,""\r\n')

    await migrate(store, {"source": "csv:///crlf.csv", "target": pg_dsn}, data_dir)

    got = await pg.fetch(pg_dsn, "SELECT id, name FROM crlf ORDER BY id")
    assert got == [(1, "alpha"), (2, "two\r\nlines"), (3, None), (4, "")]


async def test_a_utf8_bom_is_not_part_of_the_first_column_name(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str
) -> None:
    (data_dir / "bom.csv").write_bytes("\ufeffid,name\n1,Zoë\n2,\n".encode())

    await migrate(store, {"source": "csv:///bom.csv", "target": pg_dsn}, data_dir)

    assert list(await pg.column_types(pg_dsn, "bom")) == ["id", "name"]
    assert await pg.fetch(pg_dsn, "SELECT id, name FROM bom ORDER BY id") == [(1, "Zoë"), (2, None)]


async def test_column_names_with_spaces_and_capitals_arrive_as_written(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str
) -> None:
    (data_dir / "Order Items.csv").write_text('Order ID,Unit Price,"Note, ""quoted"""\n1,2.5,a\n2,3.75,\n')

    await migrate(store, {"source": f"csv:///{data_dir / 'Order Items.csv'}", "target": pg_dsn}, data_dir)

    assert list(await pg.column_types(pg_dsn, '"Order Items"')) == ["Order ID", "Unit Price", 'Note, "quoted"']
    assert await pg.fetch(pg_dsn, 'SELECT * FROM "Order Items" ORDER BY "Order ID"') == [(1, 2.5, "a"),
                                                                                          (2, 3.75, None)]


async def test_a_csv_with_only_a_header_creates_an_empty_table(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str
) -> None:
    (data_dir / "empty.csv").write_text("id,name\n")

    migration = await migrate(store, {"source": "csv:///empty.csv", "target": pg_dsn}, data_dir)

    assert migration.status == "completed"
    assert list(await pg.column_types(pg_dsn, "empty")) == ["id", "name"]
    assert await pg.count_rows(pg_dsn, "empty") == 0


async def test_timestamps_without_an_offset_load_into_a_timestamptz_column_as_utc(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str
) -> None:
    # PostgreSQL reads such values in the session time zone, which the migrator sets to UTC.
    await pg.execute(pg_dsn, "CREATE TABLE events (id integer, at timestamptz)")
    (data_dir / "events.csv").write_text(
        "id,at\n1,2024-01-02 03:04:05\n2,2024-01-02T03:04:05+02:00\n3,2024-01-02 03:04:05.5Z\n4,\n")

    migration = await migrate(store, {"source": "csv:///events.csv", "target": pg_dsn}, data_dir)

    assert await store.rejects(migration.id) == []
    assert await pg.fetch(pg_dsn, "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"
                                  " FROM events ORDER BY id") == [
        (1, "2024-01-02 03:04:05.000"), (2, "2024-01-02 01:04:05.000"), (3, "2024-01-02 03:04:05.500"), (4, None)]
