"""Reading PostgreSQL back the way a user checks a migration: rows, counts, checksums."""

from __future__ import annotations

from collections import Counter

__all__ = ["Counter", "Digest", "column_types", "count_rows", "digest", "execute", "fetch", "fetchval",
           "frozen", "primary_key", "row_multiset"]
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg


def frozen(value: object) -> object:
    """A hashable form of a value as asyncpg decodes it (arrays are lists)."""
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value


async def execute(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def fetch(dsn: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(frozen(v) for v in r.values()) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def fetchval(dsn: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def row_multiset(dsn: str, table: str) -> Counter[tuple[object, ...]]:
    """Every row of a table without a key, duplicates counted."""
    return Counter(await fetch(dsn, f"SELECT * FROM {table}"))


async def assert_exact_copy(source: str, target: str, table: str = "big") -> None:
    """The target's `table` holds exactly the source's rows: none lost, none doubled."""
    got, want = await row_multiset(target, table), await row_multiset(source, table)
    assert all(n == 1 for n in got.values()), "the target holds duplicated rows"
    assert got == want


async def column_types(dsn: str, table: str) -> dict[str, str]:
    rows = await fetch(
        dsn,
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        table,
    )
    return {str(name): str(t) for name, t in rows}


async def primary_key(dsn: str, table: str) -> list[str]:
    rows = await fetch(
        dsn,
        "SELECT a.attname::text FROM pg_index i"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.ord",
        table,
    )
    return [str(r[0]) for r in rows]


async def count_rows(dsn: str, table: str) -> int:
    """Rows in `table`, 0 while it does not exist yet."""
    try:
        return int(str(await fetchval(dsn, f"SELECT count(*) FROM {table}")))
    except asyncpg.UndefinedTableError:
        return 0


@dataclass(frozen=True)
class Digest:
    rows: int
    distinct_keys: int
    checksum: str | None


async def digest(dsn: str, table: str, key: Sequence[str]) -> Digest:
    """Row count, distinct keys and an md5 over every row's text in key order."""
    keys = ", ".join(key)
    rec = await fetch(
        dsn,
        f"SELECT count(*), count(DISTINCT ({keys}, 0)), md5(string_agg(t::text, E'\\n' ORDER BY {keys}))"
        f" FROM {table} t",
    )
    rows, distinct, checksum = rec[0]
    return Digest(int(str(rows)), int(str(distinct)), None if checksum is None else str(checksum))
