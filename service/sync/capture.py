"""Reading a PostgreSQL table's changes (INSERT / UPDATE / DELETE) from a logical replication slot.

Design: a logical slot decoded with the built-in `test_decoding` plugin, through SQL on an
ordinary asyncpg connection (no replication protocol, no extension to install).

* `read_changes` *peeks* (`pg_logical_slot_peek_changes`): nothing is consumed, so a crash
  anywhere before the target has committed simply reads the same changes again.
* The caller writes them to the target (upserts of the final rows, deletes by key — both
  idempotent) and, once the target has committed, calls `advance` with the returned LSN.
  Replaying a batch is harmless and a batch is never lost: exactly-once in effect.
* Changes are only ever cut at transaction boundaries: the returned LSN is a COMMIT's (or a
  non-transactional message's), so advancing to it never splits a source transaction.
* Within one read, the changes to a key collapse in order and the last one wins: a row ends
  up either in `upserts` (its final values) or in `deletes` (its key), never both. An UPDATE
  that changes the key is a delete of the old key plus an upsert of the new row.
* An UPDATE that leaves a TOASTed value unchanged does not carry that value
  (`unchanged-toast-datum`); such rows (and rows whose decoded tuple lacks a column of the
  schema) are re-read from the table itself, after the peek, on the same connection. A row
  that is gone by then is a delete (its DELETE will come in a later read, and is idempotent).
  The re-read may see a newer version of the row than the change did: later changes are
  applied after it, so the target still converges on the source.
* Logical decoding only sees flushed WAL: on a server with synchronous_commit=off a commit
  shows up once the WAL writer has flushed it (a fraction of a second later).
* A TRUNCATE of a followed table, and any change to a table without a key, is an EndpointError:
  neither can be expressed as upserts and deletes by key.

Values arrive as text (test_decoding prints each value with its type's output function); they
are turned into a PostgreSQL COPY-CSV payload and parsed by `parse_copy_csv`, the very parser
the table reader uses, so a value read through a change is exactly the value a full read gives.
The decoding session's settings (time zone, date and interval style, float digits, bytea
output) are pinned to the reader's for that purpose.

test_decoding's line format, as decoded here::

    BEGIN / COMMIT                                     (include-xids=0)
    table public.users: INSERT: id[integer]:1 name[text]:'O''Brien' ok[boolean]:true
    table public."Mixed Case": UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 …
    table public.users: UPDATE: id[integer]:1 bio[text]:unchanged-toast-datum …
    table public.users: DELETE: id[integer]:1           (the replica identity's columns)
    table public.t: DELETE: (no-tuple-data)              (no primary key / replica identity)
    table public.a, public.b: TRUNCATE: (no-flags)
    message: transactional: 0 prefix: p, sz: 5 content:…
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg
import pyarrow as pa

from service.connectors.postgres import connection as pgc
from service.connectors.postgres.copy_text import parse_copy_csv
from service.core.errors import EndpointError, TransientError
from service.core.schema import Column, TableSchema

PLUGIN = "test_decoding"
PENDING_CAP = 1_000_000

# The settings values are decoded with: the same as the table reader's sessions, and hex bytea.
_DECODING_SETTINGS = {
    **{k: v for k, v in pgc.SESSION_SETTINGS.items() if k not in ("application_name", "client_encoding")},
    "bytea_output": "hex",
}
_SETTINGS_SQL = "SELECT " + ", ".join(f"set_config(${2 * i + 1}, ${2 * i + 2}, true)"
                                      for i in range(len(_DECODING_SETTINGS)))
_PEEK = ("SELECT lsn::text, data FROM pg_logical_slot_peek_changes($1, NULL, $2,"
         " 'include-xids', '0', 'skip-empty-xacts', '1')")


@dataclass
class TableChanges:
    upserts: pa.RecordBatch  # the final version of each inserted/updated row, in schema.arrow_schema()
    deletes: pa.RecordBatch  # key columns only (schema.key order, their Arrow types) of deleted rows


@dataclass
class Changes:
    lsn: str | None  # just past the last change read (a COMMIT's LSN); None when nothing was read
    tables: dict[str, TableChanges]  # by table name as in the schemas passed; only tables that changed
    count: int  # change records (INSERT / UPDATE / DELETE) read, of every table


# --- slots -------------------------------------------------------------------------------------


async def slot_exists(conn: asyncpg.Connection, slot: str) -> bool:
    found = await conn.fetchval("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", slot)
    return found is not None


async def create_slot(conn: asyncpg.Connection, slot: str) -> bool:
    """Create the logical slot `slot` (test_decoding) unless it exists; True if it was created.
    Changes are recorded from this moment on."""
    wal_level = await conn.fetchval("SHOW wal_level")
    if wal_level != "logical":
        raise EndpointError(
            f"PostgreSQL change capture needs wal_level=logical (the server has wal_level={wal_level}): "
            "set it in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart the server")
    if await slot_exists(conn, slot):
        return False
    try:
        await conn.execute("SELECT pg_create_logical_replication_slot($1, $2)", slot, PLUGIN)
    except asyncpg.DuplicateObjectError:
        return False  # created concurrently
    except asyncpg.ConfigurationLimitExceededError as exc:
        limit = await conn.fetchval("SHOW max_replication_slots")
        raise EndpointError(
            f"cannot create replication slot {slot!r}: all replication slots are in use "
            f"(max_replication_slots={limit}); drop unused slots or raise max_replication_slots "
            f"and restart the server ({pgc.server_message(exc)})") from None
    except asyncpg.PostgresError as exc:
        message = pgc.server_message(exc)
        if "max_replication_slots" in message:
            message += f" (max_replication_slots={await conn.fetchval('SHOW max_replication_slots')})"
        raise EndpointError(f"cannot create replication slot {slot!r}: {message}") from None
    return True


async def drop_slot(conn: asyncpg.Connection, slot: str) -> bool:
    """Drop the slot if it exists; True if it was dropped."""
    if not await slot_exists(conn, slot):
        return False
    try:
        await conn.execute("SELECT pg_drop_replication_slot($1)", slot)
    except asyncpg.UndefinedObjectError:
        return False  # dropped concurrently
    except asyncpg.PostgresError as exc:
        raise _slot_error(slot, "dropping", exc) from None
    return True


async def advance(conn: asyncpg.Connection, slot: str, lsn: str) -> None:
    """Forget the changes up to `lsn` (one `read_changes` returned, once the target committed
    them). Advancing to an LSN the slot is already past does nothing."""
    try:
        exists = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", slot)
        if not exists:
            raise EndpointError(f"replication slot {slot!r} does not exist")
        await conn.execute(
            "SELECT pg_replication_slot_advance(slot_name, $2::text::pg_lsn) FROM pg_replication_slots"
            " WHERE slot_name = $1 AND confirmed_flush_lsn < $2::text::pg_lsn", slot, lsn)
    except asyncpg.PostgresError as exc:
        raise _slot_error(slot, "advancing", exc) from None


async def pending(conn: asyncpg.Connection, slot: str, tables: Sequence[str] | None = None) -> int:
    """Roughly how many change records wait in the slot (counted up to PENDING_CAP), for a lag
    display — of `tables` only, when given (other tables' changes pass through the slot too).
    Decodes the pending WAL: not free on a large backlog."""
    where = "data NOT IN ('BEGIN', 'COMMIT')"
    args: list[object] = [slot, PENDING_CAP]
    if tables is not None:
        # The record's head as test_decoding writes it: `table <schema>.<name>: …`, each name
        # quoted by the server's own rules (quote_ident); LIKE's own wildcards escaped.
        where = ("data LIKE ANY (SELECT 'table ' || replace(replace(replace(quote_ident(s) || '.' || quote_ident(t),"
                 " '\\', '\\\\'), '_', '\\_'), '%', '\\%') || ': %' FROM unnest($3::text[], $4::text[]) AS r(s, t))")
        relations = [_relation(name) for name in tables]
        args += [[r[0] for r in relations], [r[1] for r in relations]]
    try:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM (SELECT data FROM pg_logical_slot_peek_changes($1, NULL, $2,"
            f" 'include-xids', '0', 'skip-empty-xacts', '1') LIMIT $2) c WHERE {where}", *args)
    except asyncpg.PostgresError as exc:
        raise _slot_error(slot, "reading", exc) from None
    return n


def _slot_error(slot: str, doing: str, exc: asyncpg.PostgresError) -> EndpointError:
    message = f"{doing} replication slot {slot!r}: {pgc.server_message(exc)}"
    if isinstance(exc, asyncpg.ObjectInUseError):  # another session is reading it
        return TransientError(message)
    return EndpointError(message)


# --- reading changes -----------------------------------------------------------------------------


async def read_changes(conn: asyncpg.Connection, slot: str, schemas: Mapping[str, TableSchema], *,
                       limit: int = 100_000) -> Changes:
    """The changes waiting in `slot` (about `limit` records, always whole transactions), without
    consuming them: call `advance(conn, slot, changes.lsn)` once the target has committed them.
    Changes of tables not in `schemas` are skipped (they still count and move the LSN on)."""
    by_relation = {_relation(name): name for name in schemas}
    want: int | None = max(1, limit)
    while True:
        try:
            async with conn.transaction():
                await conn.execute(_SETTINGS_SQL, *(x for item in _DECODING_SETTINGS.items() for x in item))
                rows = await conn.fetch(_PEEK, slot, want)
                end, lsn = _last_boundary(rows)
                if end == 0 and rows and want is not None:
                    # Cut inside a transaction (PostgreSQL itself stops only after a COMMIT, but
                    # never rely on it): read again, further, up to the whole backlog.
                    want = None if want >= PENDING_CAP else want * 4
                    continue
                # Parsing takes a while for a large batch: off the event loop.
                collected = await asyncio.to_thread(_collect, schemas, by_relation, rows[:end])
                tables = {name: await collected.finish(conn, name) for name in collected.changed}
        except asyncpg.PostgresError as exc:
            raise _slot_error(slot, "reading changes from", exc) from None
        return Changes(lsn=lsn, tables=tables, count=collected.count)


def _last_boundary(rows: list[asyncpg.Record]) -> tuple[int, str | None]:
    """(how many leading rows end outside a transaction, the LSN there)."""
    end, lsn, in_tx = 0, None, False
    for i, (at, data) in enumerate(rows):
        if data == "BEGIN":
            in_tx = True
        elif data == "COMMIT":
            in_tx = False
            end, lsn = i + 1, at
        elif not in_tx:  # a non-transactional message
            end, lsn = i + 1, at
    return end, lsn


def _relation(name: str) -> tuple[str, str]:
    """(schema, table) of a table name as the readers write it: `users` or `sales.users`."""
    if "." in name:
        schema, table = name.split(".", 1)
        return schema, table
    return "public", name


# Final state of a key: ("upsert", values in schema order) | ("delete", key values) | ("reread", key values).
_Op = tuple[str, list[str | None]]
_Key = tuple[str | None, ...]


class _Collector:
    """Folds decoded change lines into the last operation per key, per table."""

    def __init__(self, schemas: Mapping[str, TableSchema], by_relation: dict[tuple[str, str], str]) -> None:
        self.schemas = schemas
        self.by_relation = by_relation
        self.ops: dict[str, dict[_Key, _Op]] = {}
        self.names: dict[str, str | None] = {}  # a relation as printed -> its name in `schemas`
        self.count = 0

    @property
    def changed(self) -> list[str]:
        return list(self.ops)

    def add(self, data: str) -> None:
        if not data.startswith("table "):
            return  # BEGIN, COMMIT, message: …
        m = _HEADER.match(data)  # one relation and a row change: the common case
        if m is None:
            self._other(data)
            return
        self.count += 1
        relation, action = m.groups()
        if relation not in self.names:
            self.names[relation] = self.by_relation.get(_Parser(relation, 0).qualified_name())
        name = self.names[relation]
        if name is None:
            return
        schema = self.schemas[name]
        p = _Parser(data, m.end())
        if p.take("(no-tuple-data)"):
            raise EndpointError(
                f"table {name} has no primary key or replica identity: change capture cannot tell which row "
                f"was {'deleted' if action == 'DELETE' else 'changed'} (add a primary key, or set "
                "REPLICA IDENTITY USING INDEX on a unique index)")
        if not schema.key:
            raise EndpointError(
                f"table {name} has no primary key or replica identity: change capture cannot tell which row "
                f"an {action} changed (add a primary key)")
        old: dict[str, str | None] | None = None
        if action == "UPDATE" and p.take("old-key: "):
            old = p.tuple()
            p.expect("new-tuple: ")
        values = p.tuple()
        ops = self.ops.setdefault(name, {})
        # The last operation on a key wins: each key holds its final one.
        key = _key_of(values, schema, name, action)
        if action == "DELETE":
            ops[key] = ("delete", list(key))
            return
        if old is not None:
            old_key = _key_of(old, schema, name, "UPDATE's old key")
            if old_key != key:
                ops[old_key] = ("delete", list(old_key))
        row = [values.get(c, _MISSING) for c in schema.column_names]
        if _MISSING in row or _UNCHANGED_TOAST in row:  # (no real value equals them: they hold a NUL)
            ops[key] = ("reread", list(key))
        else:
            ops[key] = ("upsert", row)

    def _other(self, data: str) -> None:
        """A record the common case does not cover: a TRUNCATE (of one or more tables)."""
        p = _Parser(data, 6)
        relations = [p.qualified_name()]
        while p.take(", "):
            relations.append(p.qualified_name())
        p.expect(": ")
        if p.word() != "TRUNCATE":
            # (the record's values are row contents, which are never logged: its kind only)
            raise EndpointError(f"unexpected change record from {PLUGIN} for {', '.join('.'.join(r) for r in relations)}")
        for rel in relations:
            if rel in self.by_relation:
                raise EndpointError(
                    f"table {self.by_relation[rel]} was truncated: change capture cannot follow a TRUNCATE "
                    "(copy the table again)")

    async def finish(self, conn: asyncpg.Connection, name: str) -> TableChanges:
        schema = self.schemas[name]
        key_schema = TableSchema(name, tuple(schema.column(k) for k in schema.key), schema.key)
        upserts = [v for op, v in self.ops[name].values() if op == "upsert"]
        deletes = [v for op, v in self.ops[name].values() if op == "delete"]
        reread = [v for op, v in self.ops[name].values() if op == "reread"]
        batches = [await asyncio.to_thread(_parse, upserts, schema)]
        if reread:
            found, gone = await _reread(conn, schema, reread)
            batches.append(found)
            deletes.extend(gone)
        return TableChanges(upserts=_one_batch(batches, schema.arrow_schema()),
                            deletes=await asyncio.to_thread(_parse, deletes, key_schema))


def _collect(schemas: Mapping[str, TableSchema], by_relation: dict[tuple[str, str], str],
             rows: list[asyncpg.Record]) -> _Collector:
    collected = _Collector(schemas, by_relation)
    for _, data in rows:
        collected.add(data)
    return collected


def _parse(rows: list[list[str | None]], schema: TableSchema) -> pa.RecordBatch:
    return parse_copy_csv(_csv(rows, schema.columns), schema)


def _key_of(values: Mapping[str, str | None], schema: TableSchema, name: str, what: str) -> _Key:
    key = tuple(values.get(k, _MISSING) for k in schema.key)
    if _MISSING not in key and _UNCHANGED_TOAST not in key:
        return key
    for k, v in zip(schema.key, key):
        if v == _MISSING or v == _UNCHANGED_TOAST:
            raise EndpointError(
                f"table {name}: a {what} record does not carry key column {k} (the table's replica identity "
                f"does not cover its key {', '.join(schema.key)})")
    return key


def _one_batch(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    batches = [b for b in batches if b.num_rows]
    if not batches:
        return pa.RecordBatch.from_pylist([], schema=schema)
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches(batches, schema=schema).combine_chunks()
    return table.to_batches()[0]


async def _reread(conn: asyncpg.Connection, schema: TableSchema,
                  keys: list[list[str | None]]) -> tuple[pa.RecordBatch, list[list[str | None]]]:
    """The current rows of `keys` (in the schema), and the keys no longer in the table."""
    # The key columns' real types (an enum key compares with its enum type, not the text the
    # schema describes it as), for casting the key texts back.
    types = dict(await conn.fetch(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        pgc.qualified(schema.name)))
    key_cols = [pgc.quote_ident(k) for k in schema.key]
    wanted = ", ".join(f"u.k{i}::{types[k]}" for i, k in enumerate(schema.key))
    arrays = ", ".join(f"${i + 1}::text[]" for i in range(len(schema.key)))
    names = ", ".join(f"k{i}" for i in range(len(schema.key)))
    texts = [f"{c}::text" for c in key_cols]
    query = (f"SELECT {', '.join(texts + [pgc.quote_ident(c.name) for c in schema.columns])}"
             f" FROM {pgc.qualified(schema.name)}"
             f" WHERE ({', '.join(key_cols)}) IN (SELECT {wanted} FROM unnest({arrays}) AS u({names}))")
    chunks: list[bytes] = []

    async def collect(data: bytes) -> None:
        chunks.append(data)

    args = [[k[i] for k in keys] for i in range(len(schema.key))]
    await conn.copy_from_query(query, *args, output=collect, format="csv")
    # The key texts come first, as extra string columns (their names cannot clash: NUL-prefixed).
    extra = tuple(Column(f"\0key{i}", pa.string()) for i in range(len(schema.key)))
    both = TableSchema(schema.name, extra + schema.columns)
    parsed = await asyncio.to_thread(parse_copy_csv, b"".join(chunks), both)
    present = set(zip(*(parsed.column(i).to_pylist() for i in range(len(extra))))) if parsed.num_rows else set()
    rows = pa.RecordBatch.from_arrays(parsed.columns[len(extra):], schema=schema.arrow_schema())
    gone = [k for k in keys if tuple(k) not in present]
    return rows, gone


def _csv(rows: list[list[str | None]], columns: tuple[Column, ...]) -> bytes:
    """Rows of test_decoding values as COPY CSV: NULL unquoted-empty, every other value quoted."""
    bool_cols = [pa.types.is_boolean(c.type) for c in columns]
    lines = []
    for row in rows:
        fields = []
        for value, is_bool in zip(row, bool_cols):
            if value is None:
                fields.append("")
            else:
                if is_bool:
                    value = _BOOL.get(value, value)
                fields.append('"' + value.replace('"', '""') + '"')
        lines.append(",".join(fields))
    return ("\n".join(lines) + "\n").encode() if lines else b""


_BOOL = {"true": "t", "false": "f"}


# --- test_decoding's line format -----------------------------------------------------------------

# Stand-ins for values that are not in the record (no real value equals them: text holds no NUL).
_MISSING: str = "\0missing"
_UNCHANGED_TOAST: str = "\0unchanged-toast-datum"

_IDENT = re.compile(r'"((?:[^"]|"")*)"|([^".,:\[\s]+)')
_SIMPLE_TYPE = re.compile(r'([^\[\]"]*(?:\[\])*)\]:')
_VALUE = re.compile(r"'((?:[^']|'')*)'|B'([01]*)'|([^ ]+)")
_WORD = re.compile(r"[A-Z]+")
_NAME = r'(?:"(?:[^"]|"")*"|[^".,:\s]+)'
_HEADER = re.compile(rf"table ({_NAME}\.{_NAME}): (INSERT|UPDATE|DELETE): ")
# name[type]:value in one match, when the type holds no quotes or nested brackets.
_SIMPLE_COLUMN = re.compile(r'(?:"((?:[^"]|"")*)"|([^".,:\[\s]+))\[[^\[\]"]*(?:\[\])*\]:'
                            r"(?:'((?:[^']|'')*)'|B'([01]*)'|([^ ]+)) ?")


def _bare(value: str) -> str | None:
    """An unquoted value: a number, a boolean, null or unchanged-toast-datum."""
    if value == "null":
        return None
    if value == "unchanged-toast-datum":
        return _UNCHANGED_TOAST
    return value


class _Parser:
    """A cursor over one test_decoding line."""

    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.pos = pos

    def fail(self, what: str) -> EndpointError:
        # The record's head names the table and the change; its values are row contents, never logged.
        head = self.text[: self.text.find(":", self.text.find(":") + 1) + 1] or self.text[:80]
        return EndpointError(f"cannot read a change record from {PLUGIN} ({what} at offset {self.pos}) of {head[:120]!r}")

    def take(self, literal: str) -> bool:
        if self.text.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: str) -> None:
        if not self.take(literal):
            raise self.fail(f"expected {literal!r}")

    def word(self) -> str:
        m = _WORD.match(self.text, self.pos)
        if not m:
            raise self.fail("expected an action")
        self.pos = m.end()
        return m.group(0)

    def ident(self) -> str:
        m = _IDENT.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a name")
        self.pos = m.end()
        return m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2)

    def qualified_name(self) -> tuple[str, str]:
        schema = self.ident()
        self.expect(".")
        return schema, self.ident()

    def type_end(self) -> None:
        """Skip a type name (which may hold brackets and quoted names) and its `]:`."""
        m = _SIMPLE_TYPE.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return
        depth, i, text = 1, self.pos, self.text
        while i < len(text):
            ch = text[i]
            if ch == '"':
                i = text.index('"', i + 1)
                while text.startswith('"', i + 1):  # a doubled quote inside the name
                    i = text.index('"', i + 2)
            elif ch == "[":
                depth += 1
            elif ch == "]":
                depth -= 1
                if depth == 0:
                    self.pos = i + 1
                    self.expect(":")
                    return
            i += 1
        raise self.fail("unterminated type")

    def value(self) -> str | None:
        m = _VALUE.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a value")
        self.pos = m.end()
        quoted, bits, bare = m.groups()
        if quoted is not None:
            return quoted.replace("''", "'")
        if bits is not None:
            return bits
        return _bare(bare)

    def tuple(self) -> dict[str, str | None]:
        """`name[type]:value` pairs up to the end of the line or ` new-tuple: `."""
        values: dict[str, str | None] = {}
        text, end = self.text, len(self.text)
        while self.pos < end:
            if text.startswith("new-tuple: ", self.pos):
                break
            m = _SIMPLE_COLUMN.match(text, self.pos)  # the common case in one step
            if m:
                quoted_name, name, quoted, bits, bare = m.groups()
                if quoted_name is not None:
                    name = quoted_name.replace('""', '"')
                values[name] = (quoted.replace("''", "'") if quoted is not None else bits if bits is not None
                                else _bare(bare))
                self.pos = m.end()
                continue
            name = self.ident()
            self.expect("[")
            self.type_end()
            values[name] = self.value()
            self.take(" ")
        return values
