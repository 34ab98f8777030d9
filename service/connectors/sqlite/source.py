"""Reading SQLite tables in rowid (or primary key) order, resumably."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncGenerator, Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from service.connectors.sqlite.types import SqliteDatabase, arrow_type, quote_ident
from service.core.batch import Batch, NativeFormat, Position
from service.core.errors import UnknownTable
from service.core.schema import Column, ForeignKey, TableSchema
from service.core.urls import EndpointUrl


class SqliteSource:
    kind = "sqlite"

    def __init__(self, url: EndpointUrl, *, timeout: float = 30.0) -> None:
        assert url.path is not None
        self.url = url
        self.db = SqliteDatabase(url.path, read_only=True, timeout=timeout)
        self._order: dict[str, list[str]] = {}

    async def check(self) -> None:
        await self.db.run(lambda c: c.execute("SELECT 1").fetchone())

    async def list_tables(self) -> list[str]:
        rows = await self.db.run(
            lambda c: c.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                " AND name NOT LIKE '\\_migrator\\_%' ESCAPE '\\' ORDER BY name"
            ).fetchall()
        )
        return [r[0] for r in rows]

    async def describe(self, table: str) -> TableSchema:
        def info(c: sqlite3.Connection) -> tuple[list[tuple[object, ...]], bool, list[tuple[object, ...]]]:
            cols = c.execute(f"PRAGMA table_info({quote_ident(table)})").fetchall()
            try:
                c.execute(f"SELECT rowid FROM {quote_ident(table)} LIMIT 0")
                has_rowid = True
            except sqlite3.OperationalError:
                has_rowid = False
            # id, seq, referenced table, from, to, on_update, on_delete, match
            fks = c.execute(f"PRAGMA foreign_key_list({quote_ident(table)})").fetchall()
            return cols, has_rowid, fks

        cols, has_rowid, fks = await self.db.run(info)
        if not cols:
            raise UnknownTable(f"table {table!r} does not exist in SQLite file {self.db.path}")
        pk = [str(r[1]) for r in sorted((r for r in cols if int(str(r[5]))), key=lambda r: int(str(r[5])))]
        self._order[table] = ["rowid"] if has_rowid else pk
        columns = tuple(Column(str(r[1]), arrow_type(str(r[2] or "")), not int(str(r[3])) and str(r[1]) not in pk,
                               str(r[2] or "")) for r in cols)
        return TableSchema(name=table, columns=columns, key=tuple(pk), native_kind=self.kind,
                           foreign_keys=_foreign_keys(table, fks))

    async def count(self, table: str, *, exact: bool = True) -> int:
        n = await self.db.run(lambda c: c.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone())
        return int(n[0])

    def native_formats(self, schema: TableSchema) -> frozenset[NativeFormat]:
        return frozenset()

    async def cursor_max(self, table: str, column: str) -> object:
        """The highest value of `column`: an incremental table's high-water mark."""
        row = await self.db.run(lambda c: c.execute(
            f"SELECT max({quote_ident(column)}) FROM {quote_ident(table)}").fetchone())
        return row[0]

    async def count_since(self, table: str, column: str, since: object) -> int:
        """Rows whose `column` is beyond `since` (all rows when None): how far a sync is behind."""
        where, args = (f" WHERE {quote_ident(column)} > ?", [since]) if since is not None else ("", [])
        row = await self.db.run(lambda c: c.execute(
            f"SELECT count(*) FROM {quote_ident(table)}{where}", args).fetchone())
        return int(row[0])

    async def read(
        self,
        schema: TableSchema,
        *,
        after: Position,
        start_row: int,
        batch_size: int,
        native: NativeFormat | None,
        since: tuple[str, object] | None = None,
    ) -> AsyncGenerator[Batch, None]:
        """With `since` (cursor column, value): only rows whose cursor is at least the value, in
        (cursor, rowid or key) order — an incremental pass."""
        if schema.name not in self._order:
            await self.describe(schema.name)
        order = self._order[schema.name]
        base, base_args = "1", []
        if since is not None:
            order = [since[0], *order]
            base, base_args = f"{quote_ident(since[0])} >= ?", [since[1]]
        keys = ", ".join(quote_ident(k) if k != "rowid" else "rowid" for k in order)
        cols = ", ".join(quote_ident(c) for c in schema.column_names)
        table = quote_ident(schema.name)
        seq, row = 0, start_row
        while True:
            last = list(after) if isinstance(after, list) else None
            cond = base + (f" AND ({keys}) > ({', '.join('?' * len(order))})" if last else "")
            sql = f"SELECT {keys}, {cols} FROM {table} WHERE {cond} ORDER BY {keys} LIMIT {int(batch_size)}"
            rows = await self.db.run(_fetch(sql, [*base_args, *(last or [])]))
            if not rows:
                return
            n = len(order)
            upto: list[str | int | float | None] = [v if isinstance(v, (str, int, float)) else str(v)
                                                   for v in rows[-1][:n]]
            columns = list(zip(*rows))[n:]
            arrays = [_to_arrow(list(values), col.type) for values, col in zip(columns, schema.columns)]
            data = pa.RecordBatch.from_arrays(arrays, names=schema.column_names)
            yield Batch(seq=seq, table=schema.name, upto=upto, first_row=row, data=data,
                        rows_read=len(rows))
            seq += 1
            row += len(rows)
            after = upto

    async def close(self) -> None:
        await self.db.close()


def _fetch(sql: str, args: Sequence[object]) -> Callable[[sqlite3.Connection], list[tuple[object, ...]]]:
    def fetch(c: sqlite3.Connection) -> list[tuple[object, ...]]:
        return c.execute(sql, args).fetchall()

    return fetch


def _to_arrow(values: list[object], t: pa.DataType) -> pa.Array:
    """Values of one column (SQLite is dynamically typed) as `t`, or as text when some value does
    not fit, so that the stage's cast turns exactly those rows into rejects."""
    try:
        if pa.types.is_boolean(t) and all(v is None or isinstance(v, int) for v in values):
            return pa.array([None if v is None else bool(v) for v in values], t)
        if pa.types.is_decimal(t) or pa.types.is_temporal(t):
            return pc.cast(pa.array([None if v is None else str(v) for v in values], pa.string()), t)
        return pa.array(values, t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, OverflowError, ValueError):
        return pa.array([None if v is None else v.hex() if isinstance(v, bytes) else str(v) for v in values],
                        pa.string())


def _foreign_keys(table: str, rows: list[tuple[object, ...]]) -> tuple[ForeignKey, ...]:
    """PRAGMA foreign_key_list rows, one per column, grouped by key id. SQLite names no keys:
    they are named `<table>_<columns>_fkey`, as PostgreSQL would."""
    by_id: dict[object, list[tuple[object, ...]]] = {}
    for r in rows:
        by_id.setdefault(r[0], []).append(r)
    keys = []
    for parts in by_id.values():
        parts.sort(key=lambda r: int(str(r[1])))
        cols = tuple(str(r[3]) for r in parts)
        # `to` is NULL when the key references the parent's primary key implicitly: () then (the
        # run takes the parent's key).
        refs = () if any(r[4] is None for r in parts) else tuple(str(r[4]) for r in parts)
        first = parts[0]
        keys.append(ForeignKey(f"{table}_{'_'.join(cols)}_fkey", cols, str(first[2]), refs,
                               on_update=str(first[5]), on_delete=str(first[6])))
    return tuple(keys)
