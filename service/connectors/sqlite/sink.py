"""Writing SQLite tables: one transaction per batch holding the rows and the checkpoint."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from service.connectors import ledger
from service.connectors.base import CommitTurn, OnRefusal
from service.connectors.sqlite.types import SqliteDatabase, arrow_type, declared_type, quote_ident
from service.core.batch import Batch, Checkpoint, NativeFormat, NativePayload
from service.core.errors import EndpointError, InvalidInput
from service.core.schema import Column, ForeignKey, TableSchema
from service.core.urls import EndpointUrl


class SqliteSink:
    kind = "sqlite"

    def __init__(self, url: EndpointUrl, *, timeout: float = 30.0) -> None:
        assert url.path is not None
        self.url = url
        self.db = SqliteDatabase(url.path, read_only=False, timeout=timeout)

    async def check(self) -> None:
        await self.db.run(lambda c: c.execute("SELECT 1").fetchone())

    def column_types(self, source: TableSchema) -> list[tuple[str, str]]:
        return [(c.name, declared_type(c.type)) for c in source.columns]

    async def probe_write(self, source: TableSchema, data: pa.RecordBatch) -> float:
        """Insert into a TEMP table (SQLite keeps those out of the database file), dropped after."""
        rows = [tuple(v if v is None or isinstance(v, int | float | str | bytes) else str(v) for v in row.values())
                for row in data.to_pylist()]
        defs = ", ".join(f"{quote_ident(c.name)} {declared_type(c.type)}" for c in source.columns)
        marks = ", ".join("?" * len(source.columns))

        def probe(c: sqlite3.Connection) -> float:
            c.execute("DROP TABLE IF EXISTS temp._migrator_probe")
            c.execute(f"CREATE TEMP TABLE _migrator_probe ({defs})")
            started = time.monotonic()
            try:
                with c:
                    c.executemany(f"INSERT INTO temp._migrator_probe VALUES ({marks})", rows)
                return time.monotonic() - started
            finally:
                c.execute("DROP TABLE temp._migrator_probe")

        return float(await self.db.run(probe))

    async def rollback(self, migration_id: str) -> list[str]:
        """Undo the migration in one transaction: drop the tables it created, delete the rowid
        ranges its batches added to the others, forget it in the ledger."""

        def undo(c: sqlite3.Connection) -> list[str]:
            if not c.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (ledger.TABLE,)).fetchone():
                return ["nothing to undo: the target has no migration ledger"]
            c.execute(ledger.writes_ddl("TEXT"))
            done: list[str] = []
            c.execute("BEGIN IMMEDIATE")
            try:
                for table, created in c.execute(ledger.tables_sql(ledger.qmark), (migration_id,)).fetchall():
                    exists = c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                       (table,)).fetchone()
                    if created:
                        if exists:
                            c.execute(f"DROP TABLE {quote_ident(table)}")
                            done.append(f"dropped table {table} (the run created it)")
                        continue
                    deleted = 0
                    key = [str(r[1]) for r in sorted((r for r in c.execute(f"PRAGMA table_info({quote_ident(table)})")
                                                      if int(r[5])), key=lambda r: int(r[5]))]
                    match = " AND ".join(f"{quote_ident(k)} IS ?" for k in key)
                    for (mark,) in c.execute(ledger.marks_sql(ledger.qmark), (migration_id, table)).fetchall():
                        if not exists:
                            continue
                        text = str(mark)
                        if text.startswith("key:"):
                            deleted += c.execute(f"DELETE FROM {quote_ident(table)} WHERE {match}",
                                                 orjson.loads(text[4:])).rowcount
                        else:
                            first, last = (int(x) for x in text.split(":"))
                            deleted += c.execute(f"DELETE FROM {quote_ident(table)} WHERE rowid BETWEEN ? AND ?",
                                                 (first, last)).rowcount
                    done.append(f"deleted {deleted} row(s) the run inserted into {table}")
                for sql in ledger.forget_sql(ledger.qmark):
                    c.execute(sql, (migration_id,))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return done

        return list(await self.db.run(undo))

    async def add_foreign_keys(self, table: str, keys: Sequence[ForeignKey],
                               migration_id: str) -> list[tuple[str, str]]:
        return [("WARNING", f"{table}: foreign key {k.name} not recreated (SQLite cannot add a foreign key to an existing table)") for k in keys]

    async def open_table(self, source: TableSchema, target_name: str, migration_id: str) -> SqliteTableWriter:
        def prepare(c: sqlite3.Connection) -> tuple[list[tuple[object, ...]], bool]:
            c.execute(ledger.ddl("TEXT", "INTEGER", "INTEGER"))
            c.execute(ledger.writes_ddl("TEXT"))
            c.execute("BEGIN IMMEDIATE")
            try:
                exists = c.execute(f"PRAGMA table_info({quote_ident(target_name)})").fetchall()
                if not exists:
                    defs = [f"{quote_ident(col.name)} {declared_type(col.type)}{'' if col.nullable else ' NOT NULL'}"
                            for col in source.columns]
                    if source.key:
                        defs.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in source.key)})")
                    c.execute(f"CREATE TABLE {quote_ident(target_name)} ({', '.join(defs)})")
                if exists:
                    c.execute(ledger.register_sql(ledger.qmark), (migration_id, target_name, 0))
                else:
                    c.execute(ledger.register_created_sql(ledger.qmark), (migration_id, target_name))
                row = c.execute(ledger.load_sql(ledger.qmark), (migration_id, target_name)).fetchone()
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return c.execute(f"PRAGMA table_info({quote_ident(target_name)})").fetchall(), ledger.decode(row)[1]

        cols, created = await self.db.run(prepare)
        schema = TableSchema(
            name=target_name,
            columns=tuple(Column(str(r[1]), arrow_type(str(r[2] or "")), not int(str(r[3])), str(r[2] or ""))
                          for r in cols),
            key=tuple(str(r[1]) for r in sorted((r for r in cols if int(str(r[5]))), key=lambda r: int(str(r[5])))),
            native_kind=self.kind,
        )
        missing = [c for c in source.column_names if c not in schema.column_names]
        if missing:
            raise InvalidInput(
                f"target table {target_name!r} in SQLite file {self.db.path} has no column(s) {', '.join(missing)}"
            )
        return SqliteTableWriter(self.db, schema, source.column_names, migration_id, created)

    async def close(self) -> None:
        await self.db.close()


class SqliteTableWriter:
    on_refusal: OnRefusal = "fail"  # nothing to isolate: conformed rows are never refused here
    max_writers = 1  # SQLite has one writer at a time
    # Incremental sync (tables this run created only: a rollback drops them): rows replace those
    # with the same key, and `soft_delete` (a flag column) is set to 0 on each row written.
    upsert: bool = False
    soft_delete: str | None = None

    def __init__(self, db: SqliteDatabase, schema: TableSchema, columns: list[str], migration_id: str,
                 created: bool) -> None:
        self.db = db
        self.schema = schema
        self.created = created
        self._columns = columns
        self._migration_id = migration_id
        self._watching = False
        names = ", ".join(quote_ident(c) for c in columns)
        self._insert = f"INSERT INTO {quote_ident(schema.name)} ({names}) VALUES ({', '.join('?' * len(columns))})"

    def native_formats(self, source: TableSchema) -> frozenset[NativeFormat]:
        return frozenset()

    async def reconcile(self, stored: Checkpoint | None) -> Checkpoint | None:
        row = await self.db.run(
            lambda c: c.execute(ledger.load_sql(ledger.qmark), (self._migration_id, self.schema.name)).fetchone()
        )
        return ledger.decode(row)[0]

    def _statement(self) -> str:
        if not (self.upsert and self.schema.key):
            return self._insert
        sets = [f"{quote_ident(c)} = excluded.{quote_ident(c)}" for c in self._columns if c not in self.schema.key]
        if self.soft_delete and self.soft_delete not in self._columns:
            sets.append(f"{quote_ident(self.soft_delete)} = 0")
        keys = ", ".join(quote_ident(k) for k in self.schema.key)
        return f"{self._insert} ON CONFLICT ({keys}) DO " + (f"UPDATE SET {', '.join(sets)}" if sets else "NOTHING")

    async def delete_keys(self, keys: pa.RecordBatch) -> int:
        """Delete the rows with these keys — or, with `soft_delete`, set that flag to 1 on them —
        in one transaction; returns how many rows changed."""
        if not keys.num_rows:
            return 0
        names = list(keys.schema.names)
        if not self.schema.key or sorted(names) != sorted(self.schema.key):
            raise InvalidInput(f"{self.schema.name}: deleting by key needs its primary key ({', '.join(names)}) in "
                               "the target table")
        match = " AND ".join(f"{quote_ident(k)} = ?" for k in names)
        table = quote_ident(self.schema.name)
        sql = (f"UPDATE {table} SET {quote_ident(self.soft_delete)} = 1 WHERE {match} "
               f"AND {quote_ident(self.soft_delete)} IS NOT 1" if self.soft_delete else f"DELETE FROM {table} WHERE {match}")
        rows = _rows(keys)

        def delete(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                before = c.total_changes
                c.executemany(sql, rows)
                changed = c.total_changes - before
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return changed

        return int(await self.db.run(delete))

    async def flush(self) -> None:
        return None  # each commit is durable already

    async def prepare_sync(self) -> None:
        """The `soft_delete` flag column (INTEGER NOT NULL DEFAULT 0), added if missing."""
        if not self.soft_delete or self.soft_delete in self.schema.column_names:
            return
        sql = (f"ALTER TABLE {quote_ident(self.schema.name)} ADD COLUMN {quote_ident(self.soft_delete)} "
               "INTEGER NOT NULL DEFAULT 0")
        await self.db.run(lambda c: c.execute(sql))

    async def write(self, batch: Batch, turn: CommitTurn) -> Checkpoint:
        if isinstance(batch.data, NativePayload):
            raise EndpointError(f"SQLite sink cannot take a {batch.data.format} payload")
        rows = _rows(batch.data.select(self._columns)) if batch.rows else []
        checkpoint = await turn(())
        statement = self._statement()

        def commit(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                if rows:
                    if not self.created:
                        self._watch_inserts(c)
                    c.executemany(statement, rows)
                    if not self.created:  # which rows are the batch's, for a rollback
                        c.executemany(ledger.add_write_sql(ledger.qmark, "?"),
                                      [(self._migration_id, self.schema.name, m) for m in _marks(c)])
                c.execute(ledger.save_sql(ledger.qmark),
                          ledger.save_args(checkpoint, self._migration_id, self.schema.name))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        await self.db.run(commit)
        return checkpoint

    def _watch_inserts(self, c: sqlite3.Connection) -> None:
        """A TEMP trigger (this connection's only; the table is not altered) that notes the
        primary key — or, in a table without one, the rowid — of each row inserted."""
        if self._watching:
            return
        c.execute("CREATE TEMP TABLE IF NOT EXISTS _migrator_new (mark TEXT)")
        table = quote_ident(self.schema.name)
        trigger = quote_ident(f"_migrator_watch_{self.schema.name}")
        key = self.schema.key  # (the table's primary key, as open_table read it)
        if key:  # the primary key: it stays the row's, where a VACUUM may renumber rowids
            noted = "'key:' || json_array(" + ", ".join(f"new.{quote_ident(k)}" for k in key) + ")"
        else:
            noted = "'rowid:' || new.rowid"
        c.execute(f"CREATE TEMP TRIGGER IF NOT EXISTS {trigger} AFTER INSERT ON main.{table} "
                  f"BEGIN INSERT INTO _migrator_new VALUES ({noted}); END")
        self._watching = True  # the trigger lives as long as the connection: set up once

    async def finish(self) -> list[str]:
        return []

    async def close(self) -> None:
        return None


def _rows(batch: pa.RecordBatch) -> list[tuple[object, ...]]:
    """Rows as SQLite values: exact decimals and times as text, booleans as 0/1."""
    columns = []
    for field, array in zip(batch.schema, batch.columns):
        if pa.types.is_decimal(field.type) or pa.types.is_temporal(field.type):
            array = pc.cast(array, pa.string())
        elif pa.types.is_boolean(field.type):
            array = pc.cast(array, pa.int8())
        elif pa.types.is_nested(field.type):
            array = pa.array([None if v is None else str(v) for v in array.to_pylist()], pa.string())
        columns.append(array.to_pylist())
    return list(zip(*columns))


def _marks(c: sqlite3.Connection) -> list[str]:
    """The rows the watch trigger noted since the last call, as write marks: rowid ranges
    `first:last`, or `key:<json array>` per row of a WITHOUT ROWID table."""
    noted = [str(m) for (m,) in c.execute("SELECT mark FROM temp._migrator_new").fetchall()]
    c.execute("DELETE FROM temp._migrator_new")
    rowids = sorted(int(m[6:]) for m in noted if m.startswith("rowid:"))
    marks = [m for m in noted if m.startswith("key:")]
    ranges: list[list[int]] = []
    for r in rowids:
        if ranges and r == ranges[-1][1] + 1:
            ranges[-1][1] = r
        else:
            ranges.append([r, r])
    return marks + [f"{first}:{last}" for first, last in ranges]
