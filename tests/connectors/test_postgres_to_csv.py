"""PostgreSQL -> CSV: the file has a header and every row; PostgreSQL reads it back into the very
same values; NULL is an unquoted empty field and the empty string is `""`."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from service.store import SqliteStateStore
from tests.support import pg
from tests.support.csvtext import read_csv
from tests.support.runs import migrate

SCHEMA = r"""
CREATE TABLE products (
  id integer PRIMARY KEY,
  name text,
  price numeric(10,3),
  added timestamptz,
  released date,
  active boolean,
  image bytea,
  attrs jsonb,
  sizes int[],
  uid uuid
);
INSERT INTO products
SELECT g,
       CASE WHEN g % 9 = 0 THEN NULL WHEN g % 9 = 1 THEN '' WHEN g % 9 = 2 THEN E'say "hi", twice\nok'
            WHEN g % 9 = 3 THEN 'Zoë 東京 🚀' ELSE 'product ' || g END,
       g * 0.125, timestamptz '2023-03-01 10:00:00.5+00' + g * interval '1 day 1 microsecond',
       date '1999-12-31' + g, CASE WHEN g % 3 = 0 THEN NULL ELSE g % 2 = 0 END,
       CASE WHEN g % 4 = 0 THEN NULL ELSE int4send(g) || '\x0a00'::bytea END,
       jsonb_build_object('g', g, 'label', E'a "b",\nc'), ARRAY[g, g + 1], md5(g::text)::uuid
FROM generate_series(1, 250) g;

CREATE TABLE notes (body text, weight numeric(8,2), flag boolean, at timestamptz);
INSERT INTO notes
SELECT CASE WHEN g % 5 = 0 THEN NULL WHEN g % 5 = 1 THEN '' ELSE E'note, "' || g || E'"\nline ü' END,
       g / 4.0, CASE WHEN g % 3 = 0 THEN NULL ELSE g % 2 = 0 END,
       timestamptz '2021-01-01 00:00:00+00' + g * interval '90 minutes 0.25 second'
FROM generate_series(1, 200) g;
INSERT INTO notes SELECT * FROM notes WHERE weight < 3;
"""


@pytest.fixture
async def source_dsn(pg_dsn: str) -> str:
    await pg.execute(pg_dsn, SCHEMA)
    return pg_dsn


async def read_back(dsn: str, table: str, csv_file: Path) -> None:
    """Load `csv_file` with PostgreSQL's own CSV reader into `<table>_back`, shaped like `table`."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE TABLE {table}_back (LIKE {table})")
        await conn.copy_to_table(f"{table}_back", source=csv_file, format="csv", header=True)
    finally:
        await conn.close()


async def export(store: SqliteStateStore, data_dir: Path, source: str, out: Path, table: str) -> Path:
    migration = await migrate(store, {"source": source, "target": f"csv:///{out}", "tables": [table],
                                      "batchSize": 40}, data_dir)
    assert migration.status == "completed"
    return out / f"{table}.csv"


async def test_keyed_table_exports_to_a_csv_postgresql_reads_back_unchanged(
    store: SqliteStateStore, data_dir: Path, tmp_path: Path, source_dsn: str
) -> None:
    csv_file = await export(store, data_dir, source_dsn, tmp_path / "out", "products")

    await read_back(source_dsn, "products", csv_file)
    assert await pg.fetch(source_dsn, "SELECT * FROM products_back ORDER BY id") == await pg.fetch(
        source_dsn, "SELECT * FROM products ORDER BY id")


async def test_exported_csv_has_a_header_and_keeps_null_apart_from_empty_text(
    store: SqliteStateStore, data_dir: Path, tmp_path: Path, source_dsn: str
) -> None:
    csv_file = await export(store, data_dir, source_dsn, tmp_path / "out", "products")

    header, *records = read_csv(csv_file)
    assert header == ["id", "name", "price", "added", "released", "active", "image", "attrs", "sizes", "uid"]
    expected = await pg.fetch(source_dsn, "SELECT id::text, name, price::text FROM products p ORDER BY p.id")
    assert [tuple(r[:3]) for r in records] == expected
    assert all(len(r) == len(header) for r in records)


async def test_table_without_a_key_exports_every_row_postgresql_reads_back_unchanged(
    store: SqliteStateStore, data_dir: Path, tmp_path: Path, source_dsn: str
) -> None:
    csv_file = await export(store, data_dir, source_dsn, tmp_path / "out", "notes")

    await read_back(source_dsn, "notes", csv_file)
    assert await pg.row_multiset(source_dsn, "notes_back") == await pg.row_multiset(source_dsn, "notes")


async def test_export_leaves_only_the_finished_files_in_the_target_folder(
    store: SqliteStateStore, data_dir: Path, tmp_path: Path, source_dsn: str
) -> None:
    out = tmp_path / "out"
    await migrate(store, {"source": source_dsn, "target": f"csv:///{out}"}, data_dir)

    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".migrator-")) == ["notes.csv",
                                                                                             "products.csv"]
