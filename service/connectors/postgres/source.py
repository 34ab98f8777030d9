"""Reading PostgreSQL tables resumably.

Rows are read in primary-key order as key ranges `(after, upto]`: a cheap index-only probe finds
the range's last key, then one `COPY (SELECT … WHERE key range) TO STDOUT` moves the
range (its `COPY n` status counts the rows). The COPY output is either handed on as it is (binary COPY for a PostgreSQL target, CSV for a
CSV target) or parsed into Arrow by pyarrow's CSV reader in a thread. Tables without a usable key
are read by ranges of heap pages (`ctid`), exact as long as the table is not being modified.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Sequence

import asyncpg
import pyarrow as pa

from service.connectors.postgres import connection as pgc
from service.connectors.postgres.copy_text import parse_copy_csv
from service.connectors.postgres.types import arrow_type
from service.core.batch import Batch, NativeFormat, NativePayload, Position
from service.core.errors import EndpointError
from service.core.schema import Column, ForeignKey, TableSchema
from service.core.urls import EndpointUrl


class PostgresSource:
    kind = "postgresql"

    def __init__(self, url: EndpointUrl, *, timeout: float = 30.0) -> None:
        self.url = url
        self.where = pgc.describe(url)
        self._timeout = timeout
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> asyncpg.Connection:
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await pgc.connect(self.url, self._timeout)
            return self._conn

    async def check(self) -> None:
        await self._connection()

    async def list_tables(self) -> list[str]:
        conn = await self._connection()
        rows = await conn.fetch(
            """SELECT schemaname, tablename FROM pg_tables
               WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'migrator_state')
                 AND tablename NOT LIKE '\\_migrator\\_%'
               ORDER BY schemaname <> 'public', schemaname, tablename"""
        )
        return [r["tablename"] if r["schemaname"] == "public" else f"{r['schemaname']}.{r['tablename']}" for r in rows]

    async def describe(self, table: str) -> TableSchema:
        conn = await self._connection()
        oid = await pgc.require_oid(conn, table, self.where)
        cols = await pgc.columns(conn, oid)
        key = await pgc.key_columns(conn, oid)
        notes = tuple(f"{table}.{r['name']}: {r['note']}" for r in cols if r["note"])
        return TableSchema(
            name=table,
            columns=tuple(Column(r["name"], arrow_type(r["type"]), r["nullable"], r["type"]) for r in cols),
            key=tuple(key),
            native_kind=self.kind,
            notes=notes,
            indexes=tuple(await pgc.indexes(conn, oid)),
            foreign_keys=tuple(await pgc.foreign_keys(conn, oid)),
        )

    async def count(self, table: str, *, exact: bool = True) -> int:
        conn = await self._connection()
        if not exact:  # the planner's statistics, when the table has been analysed
            estimate = await conn.fetchval(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)", pgc.qualified(table))
            if estimate is not None and estimate >= 0:
                return int(estimate)
        n: int = await conn.fetchval(f"SELECT count(*) FROM {pgc.qualified(table)}")
        return n

    async def duplicate_keys(self, table: str, key: Sequence[str], limit: int) -> tuple[int, list[str]]:
        """(how many key values occur more than once in `table`, the first `limit` of them)."""
        conn = await self._connection()
        cols = ", ".join(map(pgc.quote_ident, key))
        text = " || ',' || ".join(f"coalesce({pgc.quote_ident(k)}::text, 'NULL')" for k in key)
        sql = (f"SELECT {text} AS k, count(*) OVER () AS n FROM {pgc.qualified(table)} "
               f"WHERE {' AND '.join(f'{pgc.quote_ident(k)} IS NOT NULL' for k in key)} "
               f"GROUP BY {cols} HAVING count(*) > 1 ORDER BY 1 LIMIT $1")
        return await self._keys(conn, sql, limit, f"checking the keys of {table}")

    async def _keys(self, conn: asyncpg.Connection, sql: str, limit: int, doing: str) -> tuple[int, list[str]]:
        try:
            rows = await conn.fetch(sql, limit)
        except asyncpg.PostgresError as exc:
            raise EndpointError(f"{doing} in PostgreSQL at {self.where}: {pgc.server_message(exc)}") from exc
        return (int(rows[0]["n"]) if rows else 0), [str(r["k"]) for r in rows]

    async def orphans(self, table: str, key: ForeignKey, limit: int) -> tuple[int, list[str]]:
        """(how many rows of `table` reference a row `key.table` does not have, the first `limit`
        of their referencing values)."""
        conn = await self._connection()
        child = [f"c.{pgc.quote_ident(c)}" for c in key.columns]
        text = " || ',' || ".join(f"{c}::text" for c in child)
        match = " AND ".join(f"p.{pgc.quote_ident(r)} = {c}" for r, c in zip(key.references, child))
        sql = (f"SELECT {text} AS k, count(*) OVER () AS n FROM {pgc.qualified(table)} c "
               f"WHERE {' AND '.join(f'{c} IS NOT NULL' for c in child)} "
               f"AND NOT EXISTS (SELECT 1 FROM {pgc.qualified(key.table)} p WHERE {match}) ORDER BY 1 LIMIT $1")
        return await self._keys(conn, sql, limit, f"checking foreign key {key.name} of {table}")

    def native_formats(self, schema: TableSchema) -> frozenset[NativeFormat]:
        return frozenset({NativeFormat.PG_BINARY, NativeFormat.CSV, NativeFormat.CSV_SAFE})

    async def cursor_max(self, table: str, column: str) -> str | None:
        """The highest value of `column` (as text): an incremental table's high-water mark."""
        conn = await self._connection()
        value = await conn.fetchval(f"SELECT max({pgc.quote_ident(column)})::text FROM {pgc.qualified(table)}")
        return None if value is None else str(value)

    async def count_since(self, table: str, column: str, since: object) -> int:
        """Rows whose `column` is beyond `since` (all rows when None): how far a sync is behind."""
        conn = await self._connection()
        schema = await self.describe(table)
        where = (f" WHERE {pgc.quote_ident(column)} > $1::text::{schema.column(column).native_type or 'text'}"
                 if since is not None else "")
        return int(await conn.fetchval(f"SELECT count(*) FROM {pgc.qualified(table)}{where}",
                                       *([str(since)] if since is not None else [])))

    async def read(
        self,
        schema: TableSchema,
        *,
        after: Position,
        start_row: int,
        batch_size: int,
        native: NativeFormat | None,
        since: Since | None = None,
    ) -> AsyncGenerator[Batch, None]:
        # One connection finds the ranges; READERS others COPY them, a range or two ahead of the
        # consumer, so the server works while we hand the previous batch on. Batches leave in order.
        # All are this read's own, so that tables can be read at the same time.
        *readers, probe = await self._readers(READERS + 1)
        if since is not None and not schema.key:
            raise EndpointError(f"{schema.name} has no primary key: an incremental pass reads by (cursor, key)")
        ranges = _KeyRanges(schema, since) if schema.key else _PageRanges(schema, batch_size)
        columns = (_excel_safe(c) if native is NativeFormat.CSV_SAFE else pgc.quote_ident(c.name)
                   for c in schema.columns)
        select = f"SELECT {', '.join(columns)} FROM {pgc.qualified(schema.name)} WHERE "
        fmt = "binary" if native is NativeFormat.PG_BINARY else "csv"
        ahead: deque[tuple[Step, asyncio.Task[tuple[list[bytes], int]]]] = deque()
        seq, row, planned, exhausted, position = 0, start_row, 0, False, after
        try:
            while True:
                while not exhausted and len(ahead) < READERS:
                    step = await ranges.next(probe, position, batch_size)
                    if step is None:
                        exhausted = True
                        break
                    position = step[2]
                    conn = readers[planned % READERS]  # the range READERS before has been taken
                    ahead.append((step, asyncio.ensure_future(_copy(conn, select + step[0], step[1], fmt))))
                    planned += 1
                if not ahead:
                    return
                (_, _, upto, _), task = ahead.popleft()
                payload, count = await task
                data: pa.RecordBatch | NativePayload
                if native is not None:
                    data, rows = NativePayload(native, payload), count
                else:
                    parsed = await asyncio.to_thread(parse_copy_csv, b"".join(payload), schema)
                    data, rows = parsed, parsed.num_rows
                if rows:
                    yield Batch(seq=seq, table=schema.name, upto=upto, first_row=row, data=data,
                                rows_read=rows)
                    seq += 1
                    row += rows
        finally:
            for _, task in ahead:
                task.cancel()
            await asyncio.gather(*(t for _, t in ahead), return_exceptions=True)
            for conn in (*readers, probe):
                conn.terminate()

    async def _readers(self, n: int) -> list[asyncpg.Connection]:
        """`n` connections opened together; none is left open if any of them fails."""
        # Each range's COPY may take `timeout` seconds: a stalled network fails the read, never hangs it.
        tasks = [asyncio.ensure_future(pgc.connect(self.url, self._timeout, command_timeout=self._timeout))
                 for _ in range(n)]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            for opened in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(opened, asyncpg.Connection):
                    opened.terminate()
            raise

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close(timeout=5)
            self._conn = None


Step = tuple[str, list[object], Position, int | None]
Since = tuple[str, object]  # (cursor column, its lowest value, as text): rows from there on
READERS = 2


async def _copy(conn: asyncpg.Connection, query: str, args: list[object], fmt: str) -> tuple[list[bytes], int]:
    """The COPY output of `query` in the pieces it arrived in, and its row count (from the
    server's `COPY n` status)."""
    chunks: list[bytes] = []

    async def collect(data: bytes) -> None:
        chunks.append(data)

    status = await conn.copy_from_query(query, *args, output=collect, format=fmt)  # the connection's timeout
    return chunks, int(str(status).rsplit(" ", 1)[-1])


class _KeyRanges:
    """Ranges of the key order: `(after, upto]` holding `batch_size` rows. With `since`
    (column, value) only rows whose column is at least the value: an incremental pass, whose
    order (the schema's key) is then (that column, primary key)."""

    def __init__(self, schema: TableSchema, since: Since | None = None) -> None:
        order = [since[0], *schema.key] if since is not None else list(schema.key)
        self.keys = [pgc.quote_ident(k) for k in order]
        self.types = [schema.column(k).native_type or "text" for k in order]
        self.tuple = f"({', '.join(self.keys)})"
        self.table = pgc.qualified(schema.name)
        self.since: list[object] = []
        self.base = "TRUE"
        if since is not None:
            column, value = since
            self.since = [str(value)]
            self.base = f"{pgc.quote_ident(column)} >= $1::text::{schema.column(column).native_type or 'text'}"

    def _bound(self, op: str, first_arg: int) -> str:
        params = ", ".join(f"${first_arg + i}::text::{t}" for i, t in enumerate(self.types))
        return f"{self.tuple} {op} ({params})"

    async def next(self, conn: asyncpg.Connection, after: Position, batch_size: int) -> Step | None:
        resumed = isinstance(after, list) and bool(after)
        after_keys = [*self.since, *after] if resumed and isinstance(after, list) else list(self.since)
        cond = self.base + (f" AND {self._bound('>', len(self.since) + 1)}" if resumed else "")
        ordered = ", ".join(self.keys)
        desc = ", ".join(f"{k} DESC" for k in self.keys)
        # Output columns are aliased k0, k1…: the key's own name would bind ORDER BY to the text.
        texts = ", ".join(f"s.{k}::text AS k{i}" for i, k in enumerate(self.keys))
        # The key `batch_size` rows on (an index-only scan), else the last key: the range's end.
        # Rows are counted by COPY itself, so the probe counts nothing.
        nth = (f"SELECT {texts} FROM (SELECT {ordered} FROM {self.table} WHERE {cond} ORDER BY {ordered}"
               f" OFFSET {int(batch_size) - 1} LIMIT 1) s")
        rec = await conn.fetchrow(nth, *after_keys)
        if rec is None:
            last = (f"SELECT {texts} FROM (SELECT {ordered} FROM {self.table} WHERE {cond}"
                    f" ORDER BY {desc} LIMIT 1) s")
            rec = await conn.fetchrow(last, *after_keys)
            if rec is None:
                return None
        upto: list[str | int | float | None] = [rec[i] for i in range(len(self.keys))]
        where = f"{cond} AND {self._bound('<=', len(after_keys) + 1)}"
        return where, [*after_keys, *upto], upto, None


class _PageRanges:
    """Ranges of heap pages, for tables with no primary key or unique NOT NULL index."""

    def __init__(self, schema: TableSchema, batch_size: int) -> None:
        self.table = pgc.qualified(schema.name)
        self.pages_per_batch: int | None = None
        self.batch_size = batch_size

    async def next(self, conn: asyncpg.Connection, after: Position, batch_size: int) -> Step | None:
        rec = await conn.fetchrow(
            "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int AS pages,"
            " (SELECT reltuples FROM pg_class WHERE oid = $1::regclass) AS tuples",
            self.table,
        )
        pages, tuples = int(rec["pages"]), float(rec["tuples"] or 0)
        if self.pages_per_batch is None:
            per_page = tuples / pages if pages and tuples > 0 else 50.0
            self.pages_per_batch = max(1, int(batch_size / max(per_page, 1.0)))
        start = int(str(after[0])) if isinstance(after, list) and after else 0
        if start >= pages:
            return None
        end = start + self.pages_per_batch
        where = f"ctid >= '({start},0)'::tid AND ctid < '({end},0)'::tid"
        return where, [], [str(end)], None


_TEXT_TYPES = ("text", "character varying", "varchar", "character", "bpchar", "char", "citext", "name")
_QUOTE = "''''"  # SQL for the text '


def _excel_safe(column: Column) -> str:
    """The column for an excel-safe CSV export (NativeFormat.CSV_SAFE), neutralised by the
    server: a text value starting with = + - @, TAB or CR gets a leading '. Other types as they are."""
    name = pgc.quote_ident(column.name)
    base = (column.native_type or "").split("(")[0].strip().lower()
    if base not in _TEXT_TYPES:
        return name
    # The first character's code decides (no string made per row): = + @ TAB CR, or - when the
    # second is not a digit or a point. Only a leading - looks further.
    first = f"ascii({name})"
    test = (f"{first} IN (61, 43, 64, 9, 13) "
            f"OR ({first} = 45 AND substr({name}, 2, 1) NOT IN ('0','1','2','3','4','5','6','7','8','9','.'))")
    return f"CASE WHEN {test} THEN {_QUOTE} || {name} ELSE {name} END AS {name}"
