"""Change capture from a PostgreSQL logical slot (service.sync.capture), against a real server:
what a reader of the changes observes — the final rows, the deleted keys, the LSN to advance to."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pyarrow as pa
import pytest

from service.connectors.postgres.source import PostgresSource
from service.core.errors import EndpointError
from service.core.schema import TableSchema
from service.core.urls import parse_url
from service.sync import capture
from tests.support.pgcluster import Cluster

# A caller's session with settings unlike the reader's: values must come out the same anyway.
# synchronous_commit=on: logical decoding reads only flushed WAL, and the test cluster does not
# flush at commit otherwise (its changes would show up a few hundred milliseconds later).
ODD_SETTINGS = {"TimeZone": "America/New_York", "DateStyle": "SQL, DMY", "IntervalStyle": "sql_standard",
                "extra_float_digits": "0", "bytea_output": "escape", "synchronous_commit": "on"}


@dataclass
class Db:
    dsn: str
    conn: asyncpg.Connection
    slot: str
    source: PostgresSource

    async def execute(self, *statements: str) -> None:
        for sql in statements:
            await self.conn.execute(sql)

    async def schemas(self, *tables: str) -> dict[str, TableSchema]:
        return {t: await self.source.describe(t) for t in tables}

    async def read(self, *tables: str, limit: int = 100_000) -> capture.Changes:
        return await capture.read_changes(self.conn, self.slot, await self.schemas(*tables), limit=limit)

    async def full_read(self, table: str) -> list[dict[str, object]]:
        """The table as the table reader reads it."""
        schema = await self.source.describe(table)
        batches = [b.data async for b in self.source.read(schema, after=None, start_row=0, batch_size=10_000,
                                                          native=None)]
        return by_key(pa.Table.from_batches(batches, schema=schema.arrow_schema()).to_pylist(), schema.key)


def by_key(rows: list[dict[str, object]], key: tuple[str, ...] | list[str] = ("id",)) -> list[dict[str, object]]:
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in key))


def upserts(changes: capture.Changes, table: str) -> list[dict[str, object]]:
    return by_key(changes.tables[table].upserts.to_pylist())


def deletes(changes: capture.Changes, table: str, key: tuple[str, ...] = ("id",)) -> list[tuple[object, ...]]:
    return sorted(tuple(r[k] for k in key) for r in changes.tables[table].deletes.to_pylist())


@pytest.fixture
async def db(pg_dsn: str, tmp_path: Path) -> AsyncIterator[Db]:
    conn = await asyncpg.connect(pg_dsn, server_settings=ODD_SETTINGS)
    wal_level = await conn.fetchval("SHOW wal_level")
    if wal_level != "logical":
        await conn.close()
        pytest.skip(f"the test PostgreSQL server has wal_level={wal_level}; change capture needs wal_level=logical")
    source = PostgresSource(parse_url(pg_dsn, data_dir=tmp_path))
    made = Db(pg_dsn, conn, f"test_{uuid.uuid4().hex[:12]}", source)
    try:
        yield made
    finally:
        await capture.drop_slot(conn, made.slot)  # the test database cannot be dropped while a slot is in it
        await conn.close()
        await source.close()


async def test_inserts_updates_and_deletes_collapse_per_key_across_tables(db: Db) -> None:
    await db.execute(
        "CREATE TABLE users (id int PRIMARY KEY, name text)",
        "CREATE TABLE orders (id int PRIMARY KEY, user_id int, total numeric(10,2))",
        "CREATE TABLE audit (id serial PRIMARY KEY, what text)",
        "INSERT INTO users VALUES (100, 'before the slot')",
    )
    assert await capture.create_slot(db.conn, db.slot) is True
    assert await capture.create_slot(db.conn, db.slot) is False
    assert await capture.slot_exists(db.conn, db.slot)
    await db.execute(
        "INSERT INTO users VALUES (1, 'ann'), (2, 'bob'), (3, 'cy'), (4, 'dee')",
        "INSERT INTO orders VALUES (1, 1, 10.50), (2, 2, 20.00), (3, 2, 30.25)",
        "INSERT INTO audit (what) VALUES ('not captured')",
        "UPDATE users SET name = 'bobby' WHERE id = 2",
        "UPDATE users SET name = 'robert' WHERE id = 2",
        "DELETE FROM users WHERE id IN (3, 4, 100)",
        "UPDATE orders SET total = total + 1 WHERE id = 1",
        "DELETE FROM orders WHERE id = 2",
        "INSERT INTO orders VALUES (2, 1, 99.99)",  # deleted, then inserted again: an upsert
        "INSERT INTO users VALUES (5, 'eve')",
        "DELETE FROM users WHERE id = 5",  # inserted, then deleted: a delete
    )
    changes = await db.read("users", "orders")

    assert set(changes.tables) == {"users", "orders"}
    assert upserts(changes, "users") == [{"id": 1, "name": "ann"}, {"id": 2, "name": "robert"}]
    assert deletes(changes, "users") == [(3,), (4,), (5,), (100,)]
    from decimal import Decimal
    assert upserts(changes, "orders") == [
        {"id": 1, "user_id": 1, "total": Decimal("11.50")},
        {"id": 2, "user_id": 1, "total": Decimal("99.99")},
        {"id": 3, "user_id": 2, "total": Decimal("30.25")},
    ]
    assert deletes(changes, "orders") == []
    assert changes.tables["users"].deletes.schema == pa.schema([pa.field("id", pa.int32())])
    # Every change record counts, the audit table's too, though it is skipped.
    assert changes.count == 4 + 3 + 1 + 2 + 3 + 1 + 1 + 1 + 1 + 1
    assert changes.lsn is not None
    assert await capture.pending(db.conn, db.slot) == changes.count


ODD = 'sales."Odd ""Table"""'  # a schema's table whose name needs quoting


async def test_values_read_from_changes_equal_what_the_table_reader_reads(db: Db) -> None:
    await db.execute(
        "CREATE TYPE mood AS ENUM ('sad', 'happy')",
        "CREATE SCHEMA sales",
        "CREATE TABLE " + ODD + """ (
             "Id" bigint PRIMARY KEY, "the text" text, flag boolean, amount numeric(12,3), price numeric,
             at timestamptz, local_at timestamp, day date, doc jsonb, raw bytea, tags text[], nums int[],
             uid uuid, ratio double precision, small real, span interval, clock time, feeling mood,
             code varchar(10), bits bit(4), "order" text)""",
    )
    await capture.create_slot(db.conn, db.slot)
    await db.execute(
        "INSERT INTO " + ODD + r""" VALUES
          (1, E'O''Brien said "hi",\nthen left\r\n\ttab \\ back', true, -123456789.125, 1e-20,
           '2024-02-29 23:59:59.999999+05:30', '1999-12-31 23:59:59.5', '0001-01-01',
           '{"ünï": "東京 €", "q": "\"x\"", "n": [1, 2.5, null, true]}', '\x00ff5c0a27', '{a,"b c","d,e",NULL,"O''x"}',
           '{{1,2},{3,4}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1.0000000000000002, 0.1, '1 year 2 mons -3 days 04:05:06.7',
           '23:59:59.999999', 'happy', 'vär', B'1010', 'keyword'),
          (2, '', false, 0, 'NaN', NULL, NULL, NULL, 'null', '', '{}', '{}', NULL, 'Infinity', '-Infinity', NULL,
           NULL, NULL, '', NULL, ''),
          (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'NaN', NULL, NULL, NULL, NULL,
           NULL, NULL, NULL)""",
        "UPDATE " + ODD + """ SET "the text" = 'it''s ''quoted''' || chr(10) || 'twice' WHERE "Id" = 3""",
    )
    table = 'sales.Odd "Table"'
    changes = await db.read(table)

    got = changes.tables[table].upserts
    assert got.schema == (await db.source.describe(table)).arrow_schema()
    assert repr(by_key(got.to_pylist(), ["Id"])) == repr(await db.full_read(table))  # repr: nan == nan
    assert by_key(got.to_pylist(), ["Id"])[2]["the text"] == "it's 'quoted'\ntwice"
    assert by_key(got.to_pylist(), ["Id"])[1]["the text"] == ""  # '' stays '', NULL stays NULL
    assert by_key(got.to_pylist(), ["Id"])[0]["raw"] == b"\x00\xff\\\n'"


async def test_an_update_of_the_key_is_a_delete_of_the_old_key_and_an_upsert(db: Db) -> None:
    await db.execute(
        "CREATE TABLE lines (order_id int, line int, sku text, PRIMARY KEY (order_id, line))",
        "INSERT INTO lines VALUES (1, 1, 'a'), (1, 2, 'b'), (2, 1, 'c')",
    )
    await capture.create_slot(db.conn, db.slot)
    await db.execute(
        "UPDATE lines SET line = 3 WHERE order_id = 1 AND line = 2",
        "UPDATE lines SET order_id = 9, sku = 'moved' WHERE order_id = 2",
        "UPDATE lines SET sku = 'same key' WHERE order_id = 1 AND line = 1",
    )
    changes = await db.read("lines")

    key = ("order_id", "line")
    assert by_key(changes.tables["lines"].upserts.to_pylist(), key) == [
        {"order_id": 1, "line": 1, "sku": "same key"},
        {"order_id": 1, "line": 3, "sku": "b"},
        {"order_id": 9, "line": 1, "sku": "moved"},
    ]
    assert deletes(changes, "lines", key) == [(1, 2), (2, 1)]


async def test_a_key_changed_back_and_forth_ends_as_its_last_state(db: Db) -> None:
    await db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'x')")
    await capture.create_slot(db.conn, db.slot)
    await db.execute("UPDATE t SET id = 2 WHERE id = 1", "UPDATE t SET id = 1, v = 'back' WHERE id = 2")
    changes = await db.read("t")
    assert upserts(changes, "t") == [{"id": 1, "v": "back"}]
    assert deletes(changes, "t") == [(2,)]


async def test_peeking_repeats_the_changes_until_the_slot_is_advanced(db: Db) -> None:
    await db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    await capture.create_slot(db.conn, db.slot)
    await db.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')", "DELETE FROM t WHERE id = 2")

    first, again = await db.read("t"), await db.read("t")
    assert (upserts(first, "t"), deletes(first, "t"), first.count, first.lsn) == \
        (upserts(again, "t"), deletes(again, "t"), again.count, again.lsn)
    assert upserts(first, "t") == [{"id": 1, "v": "a"}]
    assert first.lsn is not None

    await capture.advance(db.conn, db.slot, first.lsn)
    after = await db.read("t")
    assert (after.lsn, after.tables, after.count) == (None, {}, 0)
    assert await capture.pending(db.conn, db.slot) == 0
    await capture.advance(db.conn, db.slot, first.lsn)  # again: nothing to do, no error

    await db.execute("UPDATE t SET v = 'later' WHERE id = 1")
    later = await db.read("t")
    assert upserts(later, "t") == [{"id": 1, "v": "later"}]
    assert later.count == 1


async def test_a_limit_smaller_than_a_transaction_still_returns_whole_transactions(db: Db) -> None:
    await db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    await capture.create_slot(db.conn, db.slot)
    async with db.conn.transaction():
        await db.conn.execute("INSERT INTO t SELECT generate_series(1, 5)")
    async with db.conn.transaction():
        await db.conn.execute("INSERT INTO t VALUES (6)")
        await db.conn.execute("INSERT INTO t VALUES (7)")

    first = await db.read("t", limit=2)
    assert [r["id"] for r in upserts(first, "t")] == [1, 2, 3, 4, 5]
    assert first.count == 5
    assert first.lsn is not None
    await capture.advance(db.conn, db.slot, first.lsn)

    second = await db.read("t", limit=1)
    assert [r["id"] for r in upserts(second, "t")] == [6, 7]
    assert second.count == 2


async def test_an_unchanged_toasted_value_is_kept(db: Db) -> None:
    big = "".join(uuid.uuid4().hex for _ in range(600))  # ~19 KB, barely compressible: stored out of line
    await db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, n int)")
    await db.conn.execute("INSERT INTO docs VALUES (1, $1, 0), (2, $1, 0), (3, $1, 0)", big)
    await capture.create_slot(db.conn, db.slot)
    async with db.conn.transaction():
        await db.execute(
            "UPDATE docs SET n = 1 WHERE id = 1",  # body unchanged: not in the change record
            "UPDATE docs SET n = 2 WHERE id = 3",
            "DELETE FROM docs WHERE id = 3",  # its last change: a delete, nothing to read again
            "UPDATE docs SET n = 3 WHERE id = 2",
        )
    await db.execute("DELETE FROM docs WHERE id = 2")  # a later transaction than the update

    changes = await db.read("docs", limit=1)  # up to the last update, not the delete of 2
    assert upserts(changes, "docs") == [{"id": 1, "body": big, "n": 1}]
    # Read again from the table, row 2 is gone already: a delete.
    assert deletes(changes, "docs") == [(2,), (3,)]


async def test_a_table_without_a_key_cannot_be_followed(db: Db) -> None:
    await db.execute("CREATE TABLE loose (x int, y text)", "INSERT INTO loose VALUES (1, 'a')")
    await capture.create_slot(db.conn, db.slot)
    await db.execute("DELETE FROM loose WHERE x = 1")
    with pytest.raises(EndpointError, match=r"table loose has no primary key or replica identity: change capture "
                                            r"cannot tell which row was deleted"):
        await db.read("loose")


async def test_a_truncated_table_cannot_be_followed(db: Db) -> None:
    await db.execute("CREATE TABLE t (id int PRIMARY KEY)", "CREATE TABLE other (id int PRIMARY KEY)")
    await capture.create_slot(db.conn, db.slot)
    await db.execute("INSERT INTO other VALUES (1)", "TRUNCATE other")
    assert (await db.read("t")).count == 1  # a table not followed may be truncated
    await db.execute("TRUNCATE t, other")
    with pytest.raises(EndpointError, match="table t was truncated"):
        await db.read("t")


async def test_replica_identity_full_deletes_give_the_key(db: Db) -> None:
    await db.execute("CREATE TABLE t (id int PRIMARY KEY, v text, w int)", "ALTER TABLE t REPLICA IDENTITY FULL",
                     "INSERT INTO t VALUES (1, 'a', NULL), (2, 'b', 2)")
    await capture.create_slot(db.conn, db.slot)
    await db.execute("UPDATE t SET v = 'c' WHERE id = 2", "DELETE FROM t WHERE id = 1")
    changes = await db.read("t")
    assert upserts(changes, "t") == [{"id": 2, "v": "c", "w": 2}]
    assert deletes(changes, "t") == [(1,)]
    assert changes.tables["t"].deletes.schema.names == ["id"]


async def test_drop_slot(db: Db) -> None:
    assert await capture.drop_slot(db.conn, db.slot) is False
    await capture.create_slot(db.conn, db.slot)
    assert await capture.drop_slot(db.conn, db.slot) is True
    assert not await capture.slot_exists(db.conn, db.slot)


class _RestartedCluster(Cluster):
    """A cluster of its own, restarted with the given settings instead of the test defaults."""

    def restart(self, settings: str) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off {settings}"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"),
                  "-w", "-m", "immediate", "restart")


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[_RestartedCluster]:
    cluster = _RestartedCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.slow
async def test_the_server_settings_change_capture_needs_are_named(own_cluster: _RestartedCluster) -> None:
    own_cluster.restart("-c wal_level=replica")
    conn = await asyncpg.connect(own_cluster.dsn)
    try:
        with pytest.raises(EndpointError, match=r"wal_level=logical \(the server has wal_level=replica\)"):
            await capture.create_slot(conn, "s1")
    finally:
        await conn.close()

    own_cluster.restart("-c wal_level=logical -c max_replication_slots=1")
    conn = await asyncpg.connect(own_cluster.dsn)
    try:
        assert await capture.create_slot(conn, "s1")
        with pytest.raises(EndpointError, match=r"all replication slots are in use \(max_replication_slots=1\)"):
            await capture.create_slot(conn, "s2")
        assert await capture.drop_slot(conn, "s1")
    finally:
        await conn.close()
