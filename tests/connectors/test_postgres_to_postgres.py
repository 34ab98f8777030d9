"""PostgreSQL -> PostgreSQL: every row and value of rich column types arrives unchanged, for a
single-column key, a composite key and a table without any key (duplicates included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.store import SqliteStateStore
from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.runs import migrate

SCHEMA = r"""
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);

CREATE TABLE items (
  id bigint PRIMARY KEY,
  name text,
  price numeric(10,3),
  created_at timestamptz,
  uid uuid,
  doc jsonb,
  tags int[],
  blob bytea,
  feeling mood,
  qty positive_int
);
INSERT INTO items
SELECT g, 'item ' || g, (g * 1.237)::numeric(10,3),
       timestamptz '2024-01-01 00:00:00.123456+00' + g * interval '1 hour 1.000001 second',
       md5(g::text)::uuid, jsonb_build_object('n', g, 'list', jsonb_build_array('a', g, null)),
       ARRAY[g, NULL, -g], decode(md5(g::text), 'hex'), (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood, g
FROM generate_series(1, 400) g;
INSERT INTO items VALUES
  (1001, E'He said "hi", then left\non a new line', -9999999.999, '1969-07-20 20:17:40+00',
   '00000000-0000-0000-0000-000000000000', '{"ünï": "ç€ 東京", "nested": {"a": [1, 2.5, null, true]}, "q": "\"x\""}',
   '{}', '\x00ff005c0a', 'happy', 1),
  (1002, '', 0, NULL, NULL, 'null', '{{1,2},{3,4}}', '', NULL, NULL),
  (1003, NULL, NULL, '2999-12-31 23:59:59.999999+00', NULL, NULL, NULL, NULL, 'sad', 2147483647),
  (1004, E'tab\tback\\slash,comma', 0.001, '2000-02-29 12:00:00+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
   '[]', '{NULL}', '\x', 'ok', 5);

CREATE TABLE order_lines (
  order_id integer,
  line_no smallint,
  sku text NOT NULL,
  qty integer,
  note text,
  PRIMARY KEY (order_id, line_no)
);
INSERT INTO order_lines
SELECT g / 5, (g % 5)::smallint, 'SKU-' || g, g % 17, CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN '' ELSE 'n' || g END
FROM generate_series(1000, 1, -1) g;  -- inserted out of key order

CREATE TABLE events (
  kind text,
  payload jsonb,
  amount numeric(10,3),
  happened timestamptz,
  raw bytea,
  tags int[],
  uid uuid,
  feeling mood
);
INSERT INTO events
SELECT CASE WHEN g % 4 = 0 THEN NULL WHEN g % 4 = 1 THEN '' ELSE E'kind "' || g || E'",\n' END,
       jsonb_build_object('g', g), g * 0.5, timestamptz '2020-06-01 00:00:00+00' + g * interval '1 minute',
       CASE WHEN g % 5 = 0 THEN NULL ELSE int4send(g) END, ARRAY[g], md5(g::text)::uuid, 'ok'
FROM generate_series(1, 300) g;
INSERT INTO events SELECT * FROM events WHERE amount < 5;  -- exact duplicate rows

CREATE TABLE readings (
  sensor text,
  value double precision,
  exact numeric(12,4),
  at timestamptz,
  ok boolean,
  note jsonb,
  raw bytea
);
INSERT INTO readings
SELECT 's' || (g % 7), g / 3.0, g * 1.0001, timestamptz '2022-01-01 00:00:00+00' + g * interval '1 second',
       g % 2 = 0, CASE WHEN g % 6 = 0 THEN NULL ELSE jsonb_build_object('i', g) END,
       CASE WHEN g % 4 = 0 THEN NULL ELSE int8send(g) END
FROM generate_series(1, 500) g;
INSERT INTO readings SELECT * FROM readings WHERE sensor = 's3';
"""


@pytest.fixture
async def source_dsn(new_pg_db: NewDatabase) -> str:
    dsn = await new_pg_db()
    await pg.execute(dsn, SCHEMA)
    return dsn


async def run(store: SqliteStateStore, data_dir: Path, source: str, target: str, table: str,
              batch_size: int = 37) -> None:
    migration = await migrate(store, {"source": source, "target": target, "tables": [table],
                                      "batchSize": batch_size}, data_dir)
    assert migration.status == "completed"


async def test_a_keyed_table_of_rich_types_arrives_value_for_value(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, pg_dsn: str
) -> None:
    await run(store, data_dir, source_dsn, pg_dsn, "items")

    sql = "SELECT * FROM items ORDER BY id"
    assert await pg.fetch(pg_dsn, sql) == await pg.fetch(source_dsn, sql)


async def test_the_reported_migrated_count_equals_the_rows_copied(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, pg_dsn: str
) -> None:
    migration = await migrate(store, {"source": source_dsn, "target": pg_dsn, "tables": ["items"],
                                      "batchSize": 37}, data_dir)

    copied = await pg.count_rows(pg_dsn, "items")
    assert copied == 404
    assert migration.tables["items"].written == copied
    [table] = await store.tables(migration.id)
    assert table.checkpoint is not None and table.checkpoint.rows_written == copied


async def test_the_target_table_keeps_the_source_column_types(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, pg_dsn: str
) -> None:
    await run(store, data_dir, source_dsn, pg_dsn, "items")

    assert await pg.column_types(pg_dsn, "items") == {
        "id": "bigint",
        "name": "text",
        "price": "numeric(10,3)",
        "created_at": "timestamp with time zone",
        "uid": "uuid",
        "doc": "jsonb",
        "tags": "integer[]",
        "blob": "bytea",
        "feeling": "text",  # an enum becomes its labels as text
        "qty": "integer",  # a domain becomes its base type
    }
    assert await pg.primary_key(pg_dsn, "items") == ["id"]


async def test_a_composite_key_table_arrives_with_its_composite_primary_key(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, pg_dsn: str
) -> None:
    await run(store, data_dir, source_dsn, pg_dsn, "order_lines")

    sql = "SELECT * FROM order_lines ORDER BY order_id, line_no"
    assert await pg.fetch(pg_dsn, sql) == await pg.fetch(source_dsn, sql)
    assert await pg.primary_key(pg_dsn, "order_lines") == ["order_id", "line_no"]


async def test_a_table_without_a_key_arrives_with_every_row_including_duplicates(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, pg_dsn: str
) -> None:
    await run(store, data_dir, source_dsn, pg_dsn, "events")

    assert await pg.row_multiset(pg_dsn, "events") == await pg.row_multiset(source_dsn, "events")


async def test_a_table_without_a_key_of_plain_types_arrives_with_every_row(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, pg_dsn: str
) -> None:
    await run(store, data_dir, source_dsn, pg_dsn, "readings")

    assert await pg.row_multiset(pg_dsn, "readings") == await pg.row_multiset(source_dsn, "readings")


async def test_every_table_of_the_source_is_migrated_when_none_are_named(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, pg_dsn: str
) -> None:
    migration = await migrate(store, {"source": source_dsn, "target": pg_dsn, "batchSize": 100}, data_dir)

    assert migration.status == "completed"
    for table in ("items", "order_lines", "events", "readings"):
        assert await pg.row_multiset(pg_dsn, table) == await pg.row_multiset(source_dsn, table), table


async def test_a_table_in_another_schema_arrives_under_its_own_name(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, new_pg_db: NewDatabase
) -> None:
    source = await new_pg_db()
    await pg.execute(source, "CREATE SCHEMA sales",
                     'CREATE TABLE sales."Orders" ("Order Id" int PRIMARY KEY, "Total" numeric(10,2))',
                     'INSERT INTO sales."Orders" SELECT g, g / 3.0 FROM generate_series(1, 250) g')

    migration = await migrate(store, {"source": source, "target": pg_dsn, "batchSize": 40}, data_dir)

    assert migration.status == "completed"
    assert await pg.fetch(pg_dsn, 'SELECT * FROM "Orders" ORDER BY 1') == await pg.fetch(
        source, 'SELECT * FROM sales."Orders" ORDER BY 1')


async def test_arrays_of_a_domain_and_of_an_enum_arrive_as_arrays_of_their_base_types(
    store: SqliteStateStore, data_dir: Path, source_dsn: str, pg_dsn: str
) -> None:
    await pg.execute(source_dsn, "CREATE TABLE tallies (id int PRIMARY KEY, counts positive_int[], moods mood[])",
                     "INSERT INTO tallies SELECT g, ARRAY[g, g + 1]::positive_int[],"
                     " ARRAY['ok', 'sad']::mood[] FROM generate_series(1, 50) g",
                     "INSERT INTO tallies VALUES (51, NULL, '{}'), (52, '{}', NULL)")

    await run(store, data_dir, source_dsn, pg_dsn, "tallies")

    assert await pg.column_types(pg_dsn, "tallies") == {"id": "integer", "counts": "integer[]", "moods": "text[]"}
    sql = "SELECT id, counts::int[], moods::text[] FROM tallies ORDER BY id"
    assert await pg.fetch(pg_dsn, sql) == await pg.fetch(source_dsn, sql)


async def test_arrays_of_enums_and_domains_arrive_as_arrays_of_their_base_type(
    store: SqliteStateStore, data_dir: Path, pg_dsn: str, new_pg_db: object
) -> None:
    source = await new_pg_db()  # type: ignore[operator]
    await pg.execute(
        source,
        "CREATE TYPE colour AS ENUM ('red', 'green')",
        "CREATE DOMAIN small AS integer CHECK (VALUE < 100)",
        "CREATE TABLE palettes (id int PRIMARY KEY, colours colour[], sizes small[])",
        "INSERT INTO palettes VALUES (1, '{red,green}', '{1,2}'), (2, '{}', NULL), (3, NULL, '{99}')",
    )

    await run(store, data_dir, source, pg_dsn, "palettes")

    assert await pg.fetch(pg_dsn, "SELECT id, colours::text, sizes::text FROM palettes ORDER BY id") == [
        (1, "{red,green}", "{1,2}"), (2, "{}", None), (3, None, "{99}")]
    assert await pg.column_types(pg_dsn, "palettes") == {"id": "integer", "colours": "text[]", "sizes": "integer[]"}
