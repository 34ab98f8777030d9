"""Writing PostgreSQL tables: binary COPY inside one transaction per batch, with the checkpoint.

A missing table is created from the source schema (a PostgreSQL source's own column types, else
the Arrow mapping) and gets its primary key after the bulk load. An existing table is appended
to; batches are cast to its column types by the pipeline's stage before they get here.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import asyncpg
import pgpq
import pgpq.encoders as pgenc
import pgpq.schema as pgschema
import pyarrow as pa
import pyarrow.csv as pacsv

if TYPE_CHECKING:
    from pgpq._pgpq import EncoderBuilder

from service.connectors import ledger
from service.connectors.base import CommitTurn, OnRefusal
from service.connectors.postgres import connection as pgc
from service.connectors.postgres.types import arrow_type, binary_encodable, pg_type_for
from service.core.arrow_text import printable
from service.core.batch import Batch, Checkpoint, NativeFormat, NativePayload, Reject
from service.core.errors import EndpointError, InvalidInput, TerminalError
from service.core.schema import Column, ForeignKey, Index, TableSchema
from service.core.urls import EndpointUrl


class PostgresSink:
    kind = "postgresql"

    def __init__(self, url: EndpointUrl, *, timeout: float = 30.0, parallel: int = 1) -> None:
        self.url = url
        self.where = pgc.describe(url)
        self._timeout = timeout
        self._parallel = max(1, parallel)
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # tables opened at the same time take turns on the one connection

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            # Statements on it (creating tables, the ledger) take `timeout` at most: a stalled
            # network fails them, and the connection is replaced (_drop_connection).
            self._conn = await pgc.connect(self.url, self._timeout, command_timeout=self._timeout)
        return self._conn

    def _drop_connection(self) -> None:
        """After a failure on the shared connection: it may be dead or stalled; the next use
        opens a new one."""
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def check(self) -> None:
        await self._connection()

    async def open_table(self, source: TableSchema, target_name: str, migration_id: str) -> PostgresTableWriter:
        async with self._lock:
            try:
                return await self._open_table(source, target_name, migration_id)
            except asyncpg.PostgresError as exc:
                self._drop_connection()
                kind = TerminalError if isinstance(exc, asyncpg.InsufficientPrivilegeError) else EndpointError
                raise kind(f"preparing table {target_name!r} in PostgreSQL at {self.where}: "
                           f"{pgc.server_message(exc)}") from exc
            except BaseException:
                self._drop_connection()
                raise

    async def _open_table(self, source: TableSchema, target_name: str, migration_id: str) -> PostgresTableWriter:
        conn = await self._connection()
        await conn.execute(ledger.ddl())
        await conn.execute(ledger.writes_ddl())
        async with conn.transaction():
            oid = await pgc.relation_oid(conn, target_name)
            if oid is None:
                try:
                    await conn.execute(_create_table_sql(source, target_name))
                except asyncpg.PostgresError as exc:
                    raise EndpointError(f"creating table {target_name!r} in PostgreSQL at {self.where} failed: "
                                        f"{pgc.server_message(exc)}") from exc
                await conn.execute(ledger.register_created_sql(ledger.dollar), migration_id, target_name)
                oid = await pgc.require_oid(conn, target_name, self.where)
            else:
                await conn.execute(ledger.register_sql(ledger.dollar), migration_id, target_name, False)
            _, created = ledger.decode(await conn.fetchrow(ledger.load_sql(ledger.dollar), migration_id, target_name))
        cols = await pgc.columns(conn, oid)
        schema = TableSchema(
            name=target_name,
            columns=tuple(Column(r["name"], arrow_type(r["type"]), r["nullable"], r["type"]) for r in cols),
            key=tuple(await pgc.key_columns(conn, oid)),
            native_kind=self.kind,
        )
        missing = [c for c in source.column_names if c not in schema.column_names]
        if missing:
            raise InvalidInput(
                f"target table {target_name!r} in PostgreSQL at {self.where} has no column(s) "
                f"{', '.join(missing)}; add them, or drop them with a transform"
            )
        pool = await asyncpg.create_pool(
            self.url.secret_url,
            min_size=self._parallel,  # opened together now, not one by one on the first writes
            max_size=self._parallel,
            timeout=self._timeout,
            # Batches commit without waiting for the WAL flush. Still exact: a server crash loses
            # a batch's rows together with its ledger row, and resuming trusts the ledger. The
            # run's last commit (finish) is synchronous, which flushes every earlier one too.
            server_settings={**pgc.SESSION_SETTINGS, "synchronous_commit": "off"},
            # A batch's statements may take `timeout` seconds each: a stalled network or server
            # fails the batch (a retry resumes from the checkpoint), never hangs the run.
            command_timeout=self._timeout,
        )
        return PostgresTableWriter(self, pool, schema, source, migration_id, created)

    def column_types(self, source: TableSchema) -> list[tuple[str, str]]:
        return column_types(source)

    async def probe_write(self, source: TableSchema, data: pa.RecordBatch) -> float:
        """COPY into a temporary table (gone with the session's transaction, rolled back)."""
        async with self._lock:
            try:
                return await self._probe_write(source, data)
            except BaseException:
                self._drop_connection()
                raise

    async def _probe_write(self, source: TableSchema, data: pa.RecordBatch) -> float:
        conn = await self._connection()
        payload = _csv_payload(data)
        started = time.monotonic()
        try:
            async with conn.transaction():
                await conn.execute(_create_table_sql(source, "_migrator_probe", temporary=True))
                await conn.copy_to_table("_migrator_probe", source=_once([payload]), format="csv")
                elapsed = time.monotonic() - started
                raise _RollBack
        except _RollBack:
            pass
        except asyncpg.PostgresError as exc:
            raise EndpointError(f"probing the write speed of PostgreSQL at {self.where}: "
                                f"{pgc.server_message(exc)}") from exc
        return elapsed

    async def rollback(self, migration_id: str) -> list[str]:
        """Undo migration `migration_id` in one transaction (all of it or, if interrupted, none):
        drop the tables it created, delete the rows it inserted into the others (the rows whose
        xmin is one of its batches' transactions — a row updated since by someone else is left),
        and forget it in the ledger. Running it again after it finished changes nothing."""
        async with self._lock:
            try:
                return await self._rollback(migration_id)
            except asyncpg.PostgresError as exc:
                self._drop_connection()
                raise EndpointError(f"rolling back in PostgreSQL at {self.where}: {pgc.server_message(exc)}") from exc
            except BaseException:
                self._drop_connection()
                raise

    async def _rollback(self, migration_id: str) -> list[str]:
        conn = await self._connection()
        if await pgc.relation_oid(conn, ledger.TABLE) is None:
            return ["nothing to undo: the target has no migration ledger"]
        await conn.execute(ledger.writes_ddl())
        done: list[str] = []
        async with conn.transaction():
            for table, created in await conn.fetch(ledger.tables_sql(ledger.dollar), migration_id):
                exists = await pgc.relation_oid(conn, table) is not None
                if created:
                    if exists:
                        await conn.execute(f"DROP TABLE {pgc.qualified(table)} CASCADE", timeout=_BUILD_TIMEOUT)
                        done.append(f"dropped table {table} (the run created it)")
                    continue
                marks = await conn.fetch(ledger.xmin_marks_sql(), migration_id, table)
                if marks and exists:
                    xids, written = [int(r[0]) for r in marks], sum(int(r[1]) for r in marks)
                    status = await conn.execute(f"DELETE FROM {pgc.qualified(table)} "
                                                "WHERE xmin::text::bigint = ANY($1::bigint[])", xids,
                                                timeout=_BUILD_TIMEOUT)
                    deleted = int(status.rsplit(" ", 1)[-1])
                    if deleted > written:  # the marks no longer single out the run's rows: undo nothing
                        raise TerminalError(
                            f"{table} holds {deleted} rows with the transaction ids of the run's {written}: the "
                            "table was rewritten since (e.g. restored from a dump in one transaction); rollback "
                            "refused, nothing was changed")
                    done.append(f"deleted {deleted} row(s) the run inserted into {table}")
                if exists and await pgc.relation_oid(conn, ledger.BEFORE) is not None:
                    done += await _restore_before(conn, migration_id, table)
            if await pgc.relation_oid(conn, ledger.BEFORE) is not None:
                await conn.execute(f"DELETE FROM {ledger.BEFORE} WHERE migration_id = $1", migration_id)
            for sql in ledger.forget_sql(ledger.dollar):
                await conn.execute(sql, migration_id)
        return done

    async def add_foreign_keys(self, table: str, keys: Sequence[ForeignKey],
                               migration_id: str) -> list[tuple[str, str]]:
        """Each key is added NOT VALID (no scan, no lock on the rows), then validated: a key
        whose rows have orphans stays NOT VALID, reported, so the loaded data is kept either way.
        A key already there (a resumed run) is left as it is."""
        async with self._lock:
            try:
                return await self._add_foreign_keys(table, keys, migration_id)
            except BaseException:
                self._drop_connection()
                raise

    async def _add_foreign_keys(self, table: str, keys: Sequence[ForeignKey],
                                migration_id: str) -> list[tuple[str, str]]:
        conn = await self._connection()
        _, created = ledger.decode(await conn.fetchrow(ledger.load_sql(ledger.dollar), migration_id, table))
        if not created:
            return []
        notes: list[tuple[str, str]] = []
        for key in keys:
            valid = await conn.fetchval("SELECT convalidated FROM pg_constraint WHERE conrelid = to_regclass($1) "
                                        "AND conname = $2", pgc.qualified(table), key.name)
            if valid:
                continue
            what = f"{table}: foreign key {key.name} ({', '.join(key.columns)}) → {key.table}"
            if valid is None:  # (a key added NOT VALID before — a resumed run — is validated again below)
                try:
                    await conn.execute(_foreign_key_sql(table, key), timeout=_BUILD_TIMEOUT)  # may wait for locks
                except asyncpg.PostgresError as exc:
                    notes.append(("WARNING", f"{what} not added: {pgc.server_message(exc)}"))
                    continue
            try:
                await conn.execute(f"ALTER TABLE {pgc.qualified(table)} VALIDATE CONSTRAINT {pgc.quote_ident(key.name)}",
                                   timeout=_BUILD_TIMEOUT)
            except asyncpg.PostgresError as exc:
                notes.append(("WARNING", f"{what} added but NOT VALID, the rows break it: {pgc.server_message(exc)}"))
                continue
            notes.append(("INFO", f"{what} added and validated"))
        return notes

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close(timeout=5)
            self._conn = None


# Columns whose Arrow type is text but whose values are more (see core.schema.Column.logical).
_LOGICAL = {"json": "jsonb", "uuid": "uuid", "decimal": "numeric"}


def column_types(source: TableSchema) -> list[tuple[str, str]]:
    """The PostgreSQL type of each column of a table created for `source`: the source's own
    type from a PostgreSQL source, else the mapping of its Arrow (and logical) type."""
    same_kind = source.native_kind == "postgresql"
    return [(c.name, c.native_type if same_kind and c.native_type
             else _LOGICAL.get(c.logical or "") or pg_type_for(c.type)) for c in source.columns]


def _create_table_sql(source: TableSchema, target: str, *, temporary: bool = False) -> str:
    nullable = {c.name: c.nullable for c in source.columns}
    defs = [f"{pgc.quote_ident(name)} {pg_type}{'' if nullable[name] else ' NOT NULL'}"
            for name, pg_type in column_types(source)]
    return f"CREATE {'TEMP ' if temporary else ''}TABLE {pgc.qualified(target)} ({', '.join(defs)})"


def _index_sql(index: Index, table: str) -> str:
    cols = ", ".join(pgc.quote_ident(name) + (" DESC" if order == -1 else "") for name, order in index.fields)
    return (f"CREATE {'UNIQUE ' if index.unique else ''}INDEX {pgc.quote_ident(index.name)} "
            f"ON {pgc.qualified(table)} ({cols})")


def _foreign_key_sql(table: str, key: ForeignKey) -> str:
    cols = ", ".join(map(pgc.quote_ident, key.columns))
    refs = ", ".join(map(pgc.quote_ident, key.references))
    return (f"ALTER TABLE {pgc.qualified(table)} ADD CONSTRAINT {pgc.quote_ident(key.name)} FOREIGN KEY ({cols}) "
            f"REFERENCES {pgc.qualified(key.table)} ({refs}) ON DELETE {key.on_delete} ON UPDATE {key.on_update}"
            + (" DEFERRABLE INITIALLY DEFERRED" if key.deferrable else "") + " NOT VALID")


async def _restore_before(conn: asyncpg.Connection, migration_id: str, table: str) -> list[str]:
    """Undo a run's upserts and deletes in `table`: every key it touched is deleted, and the rows
    as they were before it are put back."""
    key = await pgc.key_columns(conn, await pgc.require_oid(conn, table, "rollback"))
    if not key:
        return []
    t = pgc.qualified(table)
    cols = ", ".join(pgc.quote_ident(k) for k in key)
    picked_keys = ", ".join(f"k.{pgc.quote_ident(c)}" for c in key)
    status = await conn.execute(
        f"DELETE FROM {t} WHERE ({cols}) IN (SELECT {picked_keys} FROM {ledger.BEFORE} b, "
        f"jsonb_populate_record(NULL::{t}, b.key) k WHERE b.migration_id = $1 AND b.table_name = $2)",
        migration_id, table, timeout=_BUILD_TIMEOUT)
    removed = int(status.rsplit(" ", 1)[-1])
    # Every column but generated ones (which compute themselves), identity values as they were.
    columns = [r[0] for r in await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
        "AND attgenerated = '' ORDER BY attnum", t)]
    names = ", ".join(pgc.quote_ident(c) for c in columns)
    values = ", ".join(f"r.{pgc.quote_ident(c)}" for c in columns)
    status = await conn.execute(f"INSERT INTO {t} ({names}) OVERRIDING SYSTEM VALUE SELECT {values} "
                                f"FROM {ledger.BEFORE} b, jsonb_populate_record(NULL::{t}, b.row) r "
                                "WHERE b.migration_id = $1 AND b.table_name = $2 AND b.row IS NOT NULL",
                                migration_id, table, timeout=_BUILD_TIMEOUT)
    restored = int(status.rsplit(" ", 1)[-1])
    if not removed and not restored:
        return []
    return [f"{table}: removed {removed} row(s) the run upserted and put back {restored} as they were before it"]


_BUILD_TIMEOUT = 24 * 3600.0  # building a key or an index over the whole table is not one batch's statement


class _RollBack(Exception):
    """Leaves a transaction by rolling it back."""


# Refusals that concern the rows themselves (bad values, constraints), not the connection.
_REFUSALS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


class PostgresTableWriter:
    # "reject" finds refused rows by bisection and loads the rest; set by the run from `onError`.
    on_refusal: OnRefusal = "reject"
    # Incremental sync: rows replace those with the same key (INSERT … ON CONFLICT … DO UPDATE),
    # and `soft_delete` (a boolean column) is set false on each row written.
    upsert: bool = False
    soft_delete: str | None = None
    _generated: frozenset[str] | set[str] = frozenset()  # the target's generated columns (prepare_sync)
    _always: frozenset[str] | set[str] = frozenset()  # … and its GENERATED ALWAYS identity columns

    def __init__(
        self,
        sink: PostgresSink,
        pool: asyncpg.Pool,
        schema: TableSchema,
        source: TableSchema,
        migration_id: str,
        created: bool,
    ) -> None:
        self.schema = schema
        self.created = created
        self.max_writers = sink._parallel
        self._sink = sink
        self._pool = pool
        self._source = source
        self._migration_id = migration_id
        self._columns = source.column_names
        self._schema_name: str | None
        if "." in schema.name:
            self._schema_name, self._table = schema.name.split(".", 1)
        else:
            self._schema_name, self._table = None, schema.name
        arrow = pa.schema([pa.field(c, self.schema.column(c).type) for c in self._columns])
        self._arrow = arrow
        self._binary = all(
            binary_encodable(self.schema.column(c).native_type or "text", arrow.field(c).type) for c in self._columns
        )

    def _new_encoder(self) -> pgpq.ArrowToPostgresBinaryEncoder:
        """An encoder of its own for each batch: encoders keep state and writers run in threads."""
        encoders = {f.name: _encoder_for(f, self.schema.column(f.name).native_type or "text") for f in self._arrow}
        return pgpq.ArrowToPostgresBinaryEncoder.new_with_encoders(self._arrow, encoders)

    def native_formats(self, source: TableSchema) -> frozenset[NativeFormat]:
        """The source's binary COPY stream as it is, into a table with the same column types. Rows
        the table refuses are found through a temporary table (_isolate_native)."""
        if self._upserting:
            return frozenset()
        same = source.native_kind == "postgresql" and [
            (c, source.column(c).native_type) for c in self._columns
        ] == [(c, self.schema.column(c).native_type) for c in self._columns]
        return frozenset({NativeFormat.PG_BINARY}) if same else frozenset()

    async def reconcile(self, stored: Checkpoint | None) -> Checkpoint | None:
        # The ledger commits with the rows, so it is exact even when the state store lags by a batch.
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(ledger.load_sql(ledger.dollar), self._migration_id, self.schema.name)
        checkpoint, _ = ledger.decode(row)
        return checkpoint

    async def _payload(self, batch: Batch) -> tuple[list[bytes], str]:
        if isinstance(batch.data, NativePayload):
            if batch.data.format is not NativeFormat.PG_BINARY:
                raise EndpointError(f"PostgreSQL sink cannot take a {batch.data.format} payload")
            return batch.data.parts, "binary"
        data = batch.data
        if self._binary:
            return await asyncio.to_thread(_encode, self._new_encoder(), data), "binary"
        return [await asyncio.to_thread(_csv_payload, data)], "csv"

    @property
    def _upserting(self) -> bool:
        """Upserts need the key in the target: a table this run created gets it at its first
        finish(), and its first pass has nothing to replace."""
        return self.upsert and bool(self.schema.key)

    async def _stage(self, conn: asyncpg.Connection, name: str, columns: Sequence[str]) -> None:
        """An empty temporary table `name` with `columns` of the target table, dropped at commit."""
        cols = ", ".join(pgc.quote_ident(c) for c in columns)
        await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ON COMMIT DROP AS SELECT {cols} "
                           f"FROM {pgc.qualified(self.schema.name)} WITH NO DATA")
        await conn.execute(f"TRUNCATE {name}")

    async def _save_before(self, conn: asyncpg.Connection, staged: str) -> None:
        """Into a table the run did not create: the first version the run sees of each staged key's
        row (NULL when absent), which a rollback puts back."""
        if self.created:
            return
        key = self.schema.key
        # Aliases no column is likely to have (an unqualified name means a column first).
        obj = ", ".join(f"'{k.replace(chr(39), chr(39) * 2)}', _migrator_s.{pgc.quote_ident(k)}" for k in key)
        join = " AND ".join(f"_migrator_t.{pgc.quote_ident(k)} = _migrator_s.{pgc.quote_ident(k)}" for k in key)
        await conn.execute(
            f"INSERT INTO {ledger.BEFORE} (migration_id, table_name, key, row) "
            f"SELECT $1, $2, jsonb_build_object({obj}), "
            f"CASE WHEN _migrator_t IS NULL THEN NULL ELSE to_jsonb(_migrator_t.*) END FROM {staged} _migrator_s "
            f"LEFT JOIN {pgc.qualified(self.schema.name)} _migrator_t ON {join} ON CONFLICT DO NOTHING",
            self._migration_id, self.schema.name)

    async def _copy(self, conn: asyncpg.Connection, payload: list[bytes], fmt: str) -> None:
        """COPY `payload` in the (sub)transaction under way. Into a table the run did not create,
        a row in the ledger's writes table goes with it: inserted by the same subtransaction, its
        own xmin is the xmin of the copied rows — what a rollback deletes them by. Upserts go
        through a temporary table, then INSERT … ON CONFLICT; what they replace is saved first."""
        if self._upserting:
            await self._stage(conn, "_migrator_up", self._columns)
            await conn.copy_to_table("_migrator_up", source=_once(payload), columns=self._columns, format=fmt)
            await self._save_before(conn, "_migrator_up")
            written = [c for c in self._columns if c not in self._generated]  # generated ones compute themselves
            cols = ", ".join(pgc.quote_ident(c) for c in written)
            keys = ", ".join(pgc.quote_ident(k) for k in self.schema.key)
            sets = [f"{pgc.quote_ident(c)} = EXCLUDED.{pgc.quote_ident(c)}" for c in written  # (an ALWAYS
                    if c not in self.schema.key and c not in self._always]  # identity takes no UPDATE)
            if self.soft_delete and self.soft_delete not in self._columns:
                sets.append(f"{pgc.quote_ident(self.soft_delete)} = false")
            # OVERRIDING SYSTEM VALUE: the source's values go into identity columns, as COPY puts them.
            await conn.execute(f"INSERT INTO {pgc.qualified(self.schema.name)} ({cols}) OVERRIDING SYSTEM VALUE "
                               f"SELECT {cols} FROM _migrator_up ON CONFLICT ({keys}) DO "
                               + (f"UPDATE SET {', '.join(sets)}" if sets else "NOTHING"))
            return
        status = await conn.copy_to_table(self._table, schema_name=self._schema_name, source=_once(payload),
                                          columns=self._columns, format=fmt)
        if not self.created:  # the mark: how many rows (its xmin says which)
            await conn.execute(ledger.add_write_sql(ledger.dollar, "$3"), self._migration_id, self.schema.name,
                               str(status).rsplit(" ", 1)[-1])

    async def _isolate_native(self, conn: asyncpg.Connection, batch: Batch, payload: list[bytes]) -> list[Reject]:
        """A pass-through (binary COPY) batch the table refused: it goes into a temporary table
        without constraints (its rows numbered in COPY order), then into the table in halves, each
        in a savepoint, until the refused rows are found; their values are read back from there."""
        cols = ", ".join(pgc.quote_ident(c) for c in self._columns)
        await conn.execute(f"CREATE TEMP TABLE _migrator_stage ON COMMIT DROP AS SELECT {cols} "
                           f"FROM {pgc.qualified(self.schema.name)} WITH NO DATA")
        await conn.execute("ALTER TABLE _migrator_stage ADD COLUMN _migrator_n bigserial")
        await conn.copy_to_table("_migrator_stage", source=_once(payload), columns=self._columns, format="binary")
        rows = int(await conn.fetchval("SELECT count(*) FROM _migrator_stage"))
        insert = (f"INSERT INTO {pgc.qualified(self.schema.name)} ({cols}) SELECT {cols} FROM _migrator_stage "
                  "WHERE _migrator_n BETWEEN $1 AND $2")
        rejects: list[Reject] = []

        async def move(first: int, last: int) -> None:
            try:
                async with conn.transaction():
                    status = await conn.execute(insert, first, last)
                    if not self.created:  # the rows' mark, for a rollback (see _copy)
                        await conn.execute(ledger.add_write_sql(ledger.dollar, "$3"), self._migration_id,
                                           self.schema.name, status.rsplit(" ", 1)[-1])
            except _REFUSALS as exc:
                if first == last:
                    rejects.append(await self._native_reject(conn, batch, first, exc))
                    return
                middle = (first + last) // 2
                await move(first, middle)
                await move(middle + 1, last)

        if rows:
            await move(1, rows)
        return rejects

    async def _native_reject(self, conn: asyncpg.Connection, batch: Batch, n: int,
                             refusal: asyncpg.PostgresError) -> Reject:
        """The reject of staged row `n` (1-based, in the batch's order), its values as text."""
        row = await conn.fetchrow(f"SELECT {', '.join(f'{pgc.quote_ident(c)}::text' for c in self._columns)} "
                                  "FROM _migrator_stage WHERE _migrator_n = $1", n)
        values = dict(zip(self._columns, row)) if row is not None else {}
        key = ",".join(str(values.get(k)) for k in self._source.key) if self._source.key else None
        column = pgc.refused_column(refusal)
        value = values.get(column) if column else None
        return Reject(batch.table, batch.number(n - 1), key, column, None if value is None else str(value)[:1000],
                      "target", f"refused by PostgreSQL: {pgc.server_message(refusal)}",
                      record={k: None if v is None else str(v) for k, v in values.items()})

    async def _isolate(self, conn: asyncpg.Connection, batch: Batch, data: pa.RecordBatch, offset: int,
                       refusal: asyncpg.PostgresError) -> list[Reject]:
        """Write the rows of `data` the server accepts, each try in a savepoint, halving around
        the refused ones (O(bad · log n) COPYs); return the refused rows as rejects."""
        if data.num_rows == 1:
            key = None
            if self._source.key and all(k in data.schema.names for k in self._source.key):
                key = ",".join(str(data.column(k)[0].as_py()) for k in self._source.key)
            column = pgc.refused_column(refusal)
            value = None
            if column in data.schema.names:
                cell = data.column(column)[0].as_py()
                value = None if cell is None else str(cell)[:1000]
            return [Reject(batch.table, batch.number(offset), key, column, value, "target",
                           f"refused by PostgreSQL: {pgc.server_message(refusal)}")]
        rejects: list[Reject] = []
        mid = data.num_rows // 2
        for part, start in ((data.slice(0, mid), offset), (data.slice(mid), offset + mid)):
            payload, fmt = await self._payload(replace(batch, data=part))
            try:
                async with conn.transaction():
                    await self._copy(conn, payload, fmt)
            except _REFUSALS as exc:
                rejects += await self._isolate(conn, batch, part, start, exc)
        return rejects

    async def write(self, batch: Batch, turn: CommitTurn) -> Checkpoint:
        payload, fmt = await self._payload(batch) if batch.rows else ([], "binary")
        refused: list[Reject] = []
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    if payload:
                        try:
                            async with conn.transaction():  # a savepoint, to go on after a refusal
                                await self._copy(conn, payload, fmt)
                        except _REFUSALS as exc:
                            if self.on_refusal == "fail":
                                raise
                            if self.on_refusal == "skip_batch":
                                refused += [Reject(batch.table, batch.number(i), None, None, None, "skip_batch",
                                                  f"batch skipped: refused by PostgreSQL: {pgc.server_message(exc)}")
                                           for i in range(batch.rows)]
                            elif isinstance(batch.data, pa.RecordBatch):
                                refused += await self._isolate(conn, batch, batch.data, 0, exc)
                            else:
                                refused += await self._isolate_native(conn, batch, payload)
                    checkpoint = await turn(refused)
                    await conn.execute(
                        ledger.save_sql(ledger.dollar), *ledger.save_args(checkpoint, self._migration_id, self.schema.name)
                    )
            except asyncpg.PostgresError as exc:
                # The server's message only: its DETAIL may quote row contents, which are not logged.
                raise EndpointError(
                    f"PostgreSQL at {self._sink.where} refused batch {batch.seq + 1} of {self.schema.name}: "
                    f"{pgc.server_message(exc)}"
                ) from exc
        return checkpoint

    async def delete_keys(self, keys: pa.RecordBatch) -> int:
        """Delete the rows with these keys (key columns only) — or, with `soft_delete`, set that
        column true on them — in one transaction; returns how many rows changed."""
        if not keys.num_rows:
            return 0
        key = list(keys.schema.names)
        if not self.schema.key or sorted(key) != sorted(self.schema.key):
            raise InvalidInput(f"{self.schema.name}: deleting by key needs its primary key ({', '.join(key)}) in the "
                               "target table")
        t = pgc.qualified(self.schema.name)
        match = " AND ".join(f"t.{pgc.quote_ident(k)} = d.{pgc.quote_ident(k)}" for k in key)
        payload = [await asyncio.to_thread(_csv_payload, keys)]
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await self._stage(conn, "_migrator_del", key)
                    await conn.copy_to_table("_migrator_del", source=_once(payload), columns=key, format="csv")
                    await self._save_before(conn, "_migrator_del")
                    if self.soft_delete:
                        soft = pgc.quote_ident(self.soft_delete)
                        status = await conn.execute(f"UPDATE {t} t SET {soft} = true FROM _migrator_del d "
                                                    f"WHERE {match} AND t.{soft} IS DISTINCT FROM true")
                    else:
                        status = await conn.execute(f"DELETE FROM {t} t USING _migrator_del d WHERE {match}")
            except asyncpg.PostgresError as exc:
                raise EndpointError(f"deleting rows from {self.schema.name} in PostgreSQL at {self._sink.where}: "
                                    f"{pgc.server_message(exc)}") from exc
        return int(status.rsplit(" ", 1)[-1])

    async def flush(self) -> None:
        """One synchronous commit: flushing its WAL flushes every earlier (asynchronous) one too."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = on")
            await conn.execute(ledger.touch_sql(ledger.dollar), self._migration_id, self.schema.name)

    async def prepare_sync(self) -> None:
        """The before-image table (into a table the run did not create), and the `soft_delete` flag
        column (boolean NOT NULL DEFAULT false) when missing."""
        async with self._pool.acquire() as conn:
            special = await conn.fetch(
                "SELECT attname, attgenerated <> '' AS generated, attidentity = 'a' AS always FROM pg_attribute "
                "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
                "AND (attgenerated <> '' OR attidentity = 'a')", pgc.qualified(self.schema.name))
            self._generated = {r["attname"] for r in special if r["generated"]}
            self._always = {r["attname"] for r in special if r["always"]}
            if not self.created:
                try:  # tables of one level may open at once (parallelTables): one of them creates it
                    await conn.execute(ledger.before_ddl())
                except (asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
                    pass
            if self.soft_delete and self.soft_delete not in self.schema.column_names:
                await conn.execute(f"ALTER TABLE {pgc.qualified(self.schema.name)} ADD COLUMN IF NOT EXISTS "
                                   f"{pgc.quote_ident(self.soft_delete)} boolean NOT NULL DEFAULT false")

    async def finish(self) -> list[str]:
        """Add the primary key to a table this run created, and make every batch durable: this
        last commit is synchronous, and flushing its WAL flushes every earlier commit too. Then the
        source's secondary indexes (same-kind sources), each in its own transaction: one the
        data does not allow becomes a warning."""
        add_key = self.created and self._source.key and not self.schema.key
        cols = ", ".join(pgc.quote_ident(k) for k in self._source.key)
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL synchronous_commit = on")
                    if add_key:
                        await conn.execute(f"ALTER TABLE {pgc.qualified(self.schema.name)} ADD PRIMARY KEY ({cols})",
                                           timeout=_BUILD_TIMEOUT)
                    await conn.execute(ledger.touch_sql(ledger.dollar), self._migration_id, self.schema.name)
            except asyncpg.PostgresError as exc:
                what = f"adding the primary key ({cols}) to" if add_key else "the final commit of"
                raise EndpointError(f"{what} {self.schema.name} failed: {pgc.server_message(exc)}") from exc
            if not self.created:
                return await self._advance_sequences(conn)
            if self._source.native_kind != "postgresql":
                return []
            warnings = []
            for index in self._source.indexes:
                if not all(name in self.schema.column_names for name, _ in index.fields):
                    continue  # a column a transform dropped or renamed
                if await conn.fetchval("SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                       "WHERE i.indrelid = to_regclass($1) AND c.relname = $2",
                                       pgc.qualified(self.schema.name), index.name):
                    continue  # built by an earlier attempt of this run
                try:
                    await conn.execute(_index_sql(index, self.schema.name), timeout=_BUILD_TIMEOUT)
                except asyncpg.PostgresError as exc:
                    warnings.append(f"{self.schema.name}: index {index.name} not created: {pgc.server_message(exc)}")
            return warnings

    async def _advance_sequences(self, conn: asyncpg.Connection) -> list[str]:
        """In a table the run did not create, the sequences of identity and serial columns it wrote
        values into move past the highest value, so that the application's next insert (after a
        cutover) does not collide with a copied row. Sequences never move back."""
        table = pgc.qualified(self.schema.name)
        owned = await conn.fetch("SELECT attname, pg_get_serial_sequence($1, attname) FROM pg_attribute "
                                 "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
                                 "AND pg_get_serial_sequence($1, attname) IS NOT NULL", table)
        notes = []
        for column, sequence in owned:
            if column not in self._columns:
                continue
            try:
                # `sequence` is the server's own quoted name (pg_get_serial_sequence). Move it only
                # when its next value would not be past the highest value copied.
                moved = await conn.fetchval(
                    f"SELECT setval($1::regclass, m) FROM (SELECT max({pgc.quote_ident(column)}) AS m FROM {table}) s, "
                    f"{sequence} q WHERE m IS NOT NULL AND m >= q.last_value + (CASE WHEN q.is_called THEN 1 ELSE 0 END)",
                    sequence, timeout=_BUILD_TIMEOUT)
            except asyncpg.PostgresError as exc:  # e.g. no right to the sequence: the rows are in all the same
                notes.append(f"{self.schema.name}.{column}: its sequence {sequence} could not be moved past the "
                             f"values copied ({pgc.server_message(exc)}); the application's next inserts may collide")
                continue
            if moved is not None:
                notes.append(f"{self.schema.name}.{column}: its sequence {sequence} now goes on after {moved}, the "
                             "highest value copied")
        return notes

    async def close(self) -> None:
        try:  # a connection a stalled network holds would keep a graceful close waiting
            async with asyncio.timeout(self._sink._timeout):
                await self._pool.close()
        except TimeoutError:
            self._pool.terminate()


def _encode(encoder: pgpq.ArrowToPostgresBinaryEncoder, batch: pa.RecordBatch) -> list[bytes]:
    """A complete binary COPY stream of `batch`. The encoder buffers: `write_batch` may return
    only part of the rows (or none), and `finish` returns the rest with the trailer."""
    return [encoder.write_header(), encoder.write_batch(batch), encoder.finish()]


# Each item sent becomes one CopyData message. The server takes a message whole before parsing
# it, so modest messages let it parse while the rest is on the wire (measured: 1M rows in 2.5 s
# in 256 KiB messages, 4.5 s as one 250 MB message).
MESSAGE = 256 << 10


async def _once(pieces: list[bytes]) -> AsyncIterator[bytes | memoryview]:
    """`pieces` as CopyData messages of about MESSAGE bytes: large pieces are cut (views, no
    copy); small ones (COPY output arrives in ~16 KiB chunks) are joined, for fewer sends."""
    pending: list[bytes] = []
    size = 0
    for piece in pieces:
        if len(piece) >= MESSAGE:
            if pending:
                yield b"".join(pending)
                pending, size = [], 0
            view = memoryview(piece)
            for i in range(0, len(view), MESSAGE):
                yield view[i : i + MESSAGE]
            continue
        pending.append(piece)
        size += len(piece)
        if size >= MESSAGE:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _encoder_for(field: pa.Field, pg_type: str) -> EncoderBuilder:
    if pg_type == "jsonb":
        return pgenc.StringEncoderBuilder.new_with_output(field, pgschema.Jsonb())
    return pgpq.ArrowToPostgresBinaryEncoder.infer_encoder(field)


def _csv_payload(batch: pa.RecordBatch) -> bytes:
    """CSV the server parses into any column type (the path for types pgpq cannot encode)."""
    out = io.BytesIO()
    pacsv.write_csv(printable(batch), out, write_options=pacsv.WriteOptions(include_header=False))
    return out.getvalue()
