"""Opening PostgreSQL connections with clear errors, and naming identifiers safely."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from urllib.parse import urlsplit

import asyncpg

from service.core.errors import EndpointError, TerminalError, TransientError, UnknownTable
from service.core.schema import ForeignKey, Index
from service.core.urls import EndpointUrl

# Every session reads and writes in one unambiguous text form.
SESSION_SETTINGS = {
    "application_name": "migrator",
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "client_encoding": "UTF8",
}


def describe(url: EndpointUrl) -> str:
    """`host:port/db` for messages (never the password)."""
    parts = urlsplit(url.secret_url)
    db = parts.path.lstrip("/") or "(default)"
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{db}"


async def connect(url: EndpointUrl, timeout: float, *, command_timeout: float | None = None) -> asyncpg.Connection:
    """A connection, or an EndpointError that says what went wrong and where. `command_timeout`:
    the seconds each statement may take on it (None: no limit) — a dead server or network is
    then noticed in that time, as a TimeoutError, never a hang."""
    where = describe(url)
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            url.secret_url, timeout=timeout, server_settings=SESSION_SETTINGS, command_timeout=command_timeout
        )
    except asyncpg.InvalidPasswordError:
        raise TerminalError(f"PostgreSQL at {where}: authentication failed") from None
    except asyncpg.InvalidCatalogNameError:
        raise TerminalError(f"PostgreSQL at {where}: database does not exist") from None
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise TerminalError(f"PostgreSQL at {where}: {exc.args[0] if exc.args else 'not authorized'}") from None
    except (TimeoutError, OSError, socket.gaierror) as exc:
        reason = ("timed out" if isinstance(exc, asyncio.TimeoutError)
                  else os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc))
        raise TransientError(f"cannot connect to PostgreSQL at {where}: {reason}") from None
    except asyncpg.PostgresError as exc:
        raise EndpointError(f"PostgreSQL at {where}: {server_message(exc)}") from None
    except ValueError as exc:  # malformed DSN
        raise EndpointError(f"PostgreSQL URL {url.masked}: {url.redact(str(exc))}") from None
    return conn


def server_message(exc: asyncpg.PostgresError) -> str:
    """The server's one-line message (without DETAIL, which may quote row values)."""
    message = getattr(exc, "message", None) or (exc.args[0] if exc.args else type(exc).__name__)
    return str(message).splitlines()[0]


_COPY_COLUMN = re.compile(r"column ([^:]+): ")


def refused_column(exc: asyncpg.PostgresError) -> str | None:
    """The column a refusal names: its own field, or COPY's context ("…, column code: …")."""
    column = getattr(exc, "column_name", None)
    if column:
        return str(column)
    m = _COPY_COLUMN.search(str(getattr(exc, "context", None) or ""))
    return m.group(1).strip('"') if m else None


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(table: str) -> str:
    """`schema.table` or `table`, each part quoted."""
    if "." in table:
        schema, name = table.split(".", 1)
        return f"{quote_ident(schema)}.{quote_ident(name)}"
    return quote_ident(table)


async def relation_oid(conn: asyncpg.Connection, table: str) -> int | None:
    oid: int | None = await conn.fetchval("SELECT to_regclass($1)::oid", qualified(table))
    return oid


async def require_oid(conn: asyncpg.Connection, table: str, where: str) -> int:
    oid = await relation_oid(conn, table)
    if oid is None:
        raise UnknownTable(f"table {table!r} does not exist in PostgreSQL at {where}")
    return oid


async def columns(conn: asyncpg.Connection, oid: int) -> list[asyncpg.Record]:
    """(name, type, nullable, note) of each column; enums and domains resolve to their base type."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT a.attname AS name,
               CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
                    WHEN t.typtype = 'e' THEN 'text'
                    WHEN e.typtype = 'e' THEN 'text[]'
                    WHEN e.typtype = 'd' THEN format_type(e.typbasetype, e.typtypmod) || '[]'
                    ELSE format_type(a.atttypid, a.atttypmod) END AS type,
               NOT a.attnotnull AS nullable,
               CASE WHEN t.typtype = 'd' THEN 'domain ' || format_type(a.atttypid, a.atttypmod)
                         || ' -> its base type'
                    WHEN t.typtype = 'e' OR e.typtype = 'e' THEN 'enum ' || format_type(a.atttypid, a.atttypmod)
                         || ' -> text'
                    WHEN e.typtype = 'd' THEN 'array of domain ' || format_type(a.atttypid, a.atttypmod)
                         || ' -> array of its base type'
                    END AS note
        FROM pg_attribute a
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        oid,
    )
    return rows


_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


async def foreign_keys(conn: asyncpg.Connection, oid: int) -> list[ForeignKey]:
    """The table's foreign keys, the referenced table named as list_tables names it."""
    rows = await conn.fetch(
        """
        SELECT c.conname, c.condeferrable, c.confdeltype, c.confupdtype,
               n.nspname AS ref_schema, r.relname AS ref_table,
               (SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(num, ord)
                  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num) AS cols,
               (SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(c.confkey) WITH ORDINALITY k(num, ord)
                  JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num) AS refs
        FROM pg_constraint c
        JOIN pg_class r ON r.oid = c.confrelid
        JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE c.conrelid = $1 AND c.contype = 'f'
        ORDER BY c.conname
        """,
        oid,
    )
    return [ForeignKey(r["conname"], tuple(r["cols"]),
                       r["ref_table"] if r["ref_schema"] == "public" else f"{r['ref_schema']}.{r['ref_table']}",
                       tuple(r["refs"]), bool(r["condeferrable"]), _ACTIONS.get(r["confdeltype"], "NO ACTION"),
                       _ACTIONS.get(r["confupdtype"], "NO ACTION")) for r in rows]


async def indexes(conn: asyncpg.Connection, oid: int) -> list[Index]:
    """The table's secondary btree indexes over plain key columns (not the primary key; no
    expression or partial indexes; INCLUDE columns left out), ascending or descending. Other
    access methods (hash, GIN, GiST …) are not recreated."""
    rows = await conn.fetch(
        """
        SELECT ic.relname AS name, i.indisunique AS uniq,
               array_agg(a.attname ORDER BY k.ord) AS cols,
               array_agg((i.indoption[k.ord - 1] & 1) = 1 ORDER BY k.ord) AS descending
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = $1 AND NOT i.indisprimary AND i.indpred IS NULL AND i.indexprs IS NULL
          AND k.ord <= i.indnkeyatts
        GROUP BY ic.relname, i.indisunique, i.indexrelid
        ORDER BY i.indexrelid
        """,
        oid,
    )
    return [Index(r["name"], tuple((c, -1 if d else 1) for c, d in zip(r["cols"], r["descending"])), bool(r["uniq"]))
            for r in rows]


async def key_columns(conn: asyncpg.Connection, oid: int) -> list[str]:
    """The primary key, else the first unique index over NOT NULL columns, else []."""
    rows = await conn.fetch(
        """
        SELECT i.indisprimary, array_agg(a.attname ORDER BY k.ord) AS cols,
               bool_and(a.attnotnull) AS notnull
        FROM pg_index i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
        GROUP BY i.indexrelid, i.indisprimary
        ORDER BY i.indisprimary DESC, count(*), i.indexrelid
        """,
        oid,
    )
    for r in rows:
        if r["indisprimary"] or r["notnull"]:
            return list(r["cols"])
    return []
