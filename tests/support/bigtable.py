"""A PostgreSQL table big enough that a migration of it takes a while with small batches."""

from __future__ import annotations

from tests.support import pg

BIG_KEY = ("id",)


async def create_big_table(dsn: str, rows: int, table: str = "big") -> None:
    await pg.execute(
        dsn,
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, amount numeric(12,2), note text)",
        f"INSERT INTO {table} SELECT g, 'name ' || md5(g::text), g * 1.25,"
        f" CASE WHEN g % 10 = 0 THEN NULL WHEN g % 10 = 1 THEN '' ELSE E'note \"' || g || E'\",\\n' END"
        f" FROM generate_series(1, {rows}) g",
        f"ANALYZE {table}",
    )
