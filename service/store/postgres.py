"""A StateStore in PostgreSQL (`MIGRATOR_STATE_URL=postgresql://…`), for services that share state
or keep it beside their data.

Everything lives in the schema `migrator_state`, created on `open()`, so the state database may
also be a migration source or target: sources skip that schema, and no user table collides with it.
Ids are identity columns, so ordering by id is insertion order; `seq` breaks ties between
migrations created in the same millisecond. A batch's checkpoint, rejects and log entries are
written in one transaction.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence

import asyncpg
import orjson

from service.core.batch import Checkpoint, Reject
from service.core.errors import ConfigError, EndpointError, TransientError
from service.core.urls import EndpointUrl, Kind
from service.store import rows as stored
from service.store.base import UNFINISHED, LogEntry, MigrationRecord, TableState

log = logging.getLogger(__name__)

SCHEMA = "migrator_state"

# Two services opening the same fresh database at once would race on CREATE … IF NOT EXISTS
# (a unique violation in the catalog); the lock makes the second wait for the first.
_SETUP_LOCK = 0x6D69_6772_6174_6F72  # "migrator"

_SETUP = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.migrations (
  seq bigint GENERATED ALWAYS AS IDENTITY,
  id text PRIMARY KEY,
  fingerprint text NOT NULL,
  spec jsonb NOT NULL,
  source text NOT NULL,
  target text NOT NULL,
  status text NOT NULL,
  created_at text NOT NULL,
  started_at text,
  ended_at text,
  error text
);
CREATE INDEX IF NOT EXISTS migrations_fingerprint ON {SCHEMA}.migrations (fingerprint, created_at DESC, seq DESC);
CREATE INDEX IF NOT EXISTS migrations_created ON {SCHEMA}.migrations (created_at DESC, seq DESC);
CREATE TABLE IF NOT EXISTS {SCHEMA}.tables (
  seq bigint GENERATED ALWAYS AS IDENTITY,
  migration_id text NOT NULL,
  table_name text NOT NULL,
  target text NOT NULL,
  status text NOT NULL,
  total bigint,
  position text,  -- JSON as written: a resume needs the exact key back, and jsonb refuses \\u0000
  rows_written bigint,
  rows_failed bigint,
  batches bigint,
  sink_state bigint,
  PRIMARY KEY (migration_id, table_name)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.logs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  migration_id text NOT NULL,
  timestamp text NOT NULL,
  level text NOT NULL,
  message text NOT NULL,
  table_name text,
  batch bigint,
  record_id text,
  value text,
  error text
);
CREATE INDEX IF NOT EXISTS logs_migration ON {SCHEMA}.logs (migration_id, id);
CREATE TABLE IF NOT EXISTS {SCHEMA}.rejects (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  migration_id text NOT NULL,
  table_name text NOT NULL,
  row bigint,
  key text,
  column_name text,
  value text,
  rule text NOT NULL,
  message text NOT NULL,
  record text
);
ALTER TABLE {SCHEMA}.rejects ADD COLUMN IF NOT EXISTS record text;
CREATE TABLE IF NOT EXISTS {SCHEMA}.reports (
  migration_id text PRIMARY KEY,
  created_at text NOT NULL,
  report jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.sync_state (
  migration_id text PRIMARY KEY,
  updated_at text NOT NULL,
  state jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS rejects_migration ON {SCHEMA}.rejects (migration_id, table_name, id);
"""

_NEWEST = "ORDER BY created_at DESC, seq DESC"
_SELECT_MIGRATION = f"SELECT {stored.MIGRATION_COLUMNS} FROM {SCHEMA}.migrations"
_INSERT_MIGRATION = (f"INSERT INTO {SCHEMA}.migrations ({stored.MIGRATION_COLUMNS})"
                     " VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10)")
_SET_STATUS = f"""
UPDATE {SCHEMA}.migrations
   SET status = $2, error = $3,
       started_at = CASE WHEN $4 THEN coalesce(started_at, $6) ELSE started_at END,
       ended_at = CASE WHEN $5 THEN $6 END
 WHERE id = $1"""
_SAVE_TABLE = f"""
INSERT INTO {SCHEMA}.tables AS t (migration_id, table_name, target, status, total) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (migration_id, table_name)
DO UPDATE SET target = excluded.target, status = excluded.status, total = coalesce(excluded.total, t.total)"""
_SAVE_CHECKPOINT = f"""
UPDATE {SCHEMA}.tables SET position = $3, rows_written = $4, rows_failed = $5, batches = $6, sink_state = $7
 WHERE migration_id = $1 AND table_name = $2"""
_INSERT_REJECT = (f"INSERT INTO {SCHEMA}.rejects (migration_id, {stored.REJECT_COLUMNS})"
                  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
_INSERT_LOG = f"INSERT INTO {SCHEMA}.logs (migration_id, {stored.LOG_FIELDS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
# Optional filters are NULL parameters, so each query is one prepared statement whatever is asked.
_SELECT_LOGS = f"""
SELECT {stored.LOG_COLUMNS} FROM {SCHEMA}.logs
 WHERE migration_id = $1 AND level = ANY($2::text[])
   AND ($3::text IS NULL OR table_name = $3) AND ($4::bigint IS NULL OR id > $4)
 ORDER BY id LIMIT $5"""
_SELECT_REJECTS = f"""
SELECT {stored.REJECT_COLUMNS} FROM {SCHEMA}.rejects
 WHERE migration_id = $1 AND ($2::text IS NULL OR table_name = $2)
 ORDER BY id LIMIT $3"""


class PostgresStateStore:
    """The state store in a PostgreSQL database: a pool of at most four connections."""

    def __init__(self, url: str, masked: str, *, timeout: float = 10.0) -> None:
        """`url` is resolved (`${VAR}` substituted) and carries the password; `masked` is what messages show."""
        self._url = EndpointUrl(Kind.POSTGRES, url, masked)
        self._timeout = timeout
        self._pool: asyncpg.Pool | None = None

    def __repr__(self) -> str:
        return f"PostgresStateStore({self._url.masked!r})"

    async def open(self) -> PostgresStateStore:
        """Connect and create the schema and tables that are missing (idempotent).

        Raises ConfigError, naming the masked URL, when the database cannot be reached or used.
        """
        where = f"the state store {self._url.masked} (MIGRATOR_STATE_URL)"
        try:
            pool = await asyncpg.create_pool(
                self._url.secret_url, min_size=1, max_size=4, timeout=self._timeout, command_timeout=None,
                server_settings={"application_name": "migrator-state"},
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise ConfigError(f"cannot connect to {where}: {self._reason(exc)}") from None
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SETUP_LOCK)
                await conn.execute(_SETUP)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            pool.terminate()
            raise ConfigError(f"cannot create schema {SCHEMA} in {where}: {self._reason(exc)}") from None
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool
        log.info("state store opened", extra={"state_url": self._url.masked})
        return self

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return "timed out"
        if isinstance(exc, asyncpg.PostgresError):
            reason = str(getattr(exc, "message", None) or exc)
        elif isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        else:
            reason = str(exc) or type(exc).__name__
        return self._url.redact(reason.splitlines()[0] if reason else type(exc).__name__)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; database failures become EndpointError (TransientError when the
        connection was lost), as SqliteStateStore's do."""
        if self._pool is None:
            raise RuntimeError("PostgresStateStore used before open() or after close()")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
            raise TransientError(f"state store {self._url.masked}: {self._reason(exc)}") from exc
        except asyncpg.PostgresError as exc:
            raise EndpointError(f"state store {self._url.masked}: {self._reason(exc)}") from exc

    async def _execute(self, sql: str, *args: object) -> str:
        """The command's status, e.g. `UPDATE 3`."""
        async with self._connection() as conn:
            status: str = await conn.execute(sql, *args)
            return status

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        async with self._connection() as conn:
            found: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return found

    async def _fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        async with self._connection() as conn:
            return await conn.fetchrow(sql, *args)

    async def create_migration(self, record: MigrationRecord) -> None:
        await self._execute(
            _INSERT_MIGRATION, record.id, record.fingerprint, stored.to_json(record.spec), record.source,
            record.target, record.status, record.created_at, record.started_at, record.ended_at, record.error)

    async def get_migration(self, migration_id: str) -> MigrationRecord | None:
        return await self._one(f"{_SELECT_MIGRATION} WHERE id = $1", migration_id)

    async def find_unfinished(self, fingerprint: str) -> MigrationRecord | None:
        return await self._one(f"{_SELECT_MIGRATION} WHERE fingerprint = $1 AND status = ANY($2::text[])"
                               f" {_NEWEST} LIMIT 1", fingerprint, list(UNFINISHED))

    async def find_latest(self, fingerprint: str) -> MigrationRecord | None:
        return await self._one(f"{_SELECT_MIGRATION} WHERE fingerprint = $1 {_NEWEST} LIMIT 1", fingerprint)

    async def list_migrations(self, limit: int = 100) -> list[MigrationRecord]:
        return [stored.migration_record(r) for r in await self._fetch(f"{_SELECT_MIGRATION} {_NEWEST} LIMIT $1", limit)]

    async def _one(self, sql: str, *args: object) -> MigrationRecord | None:
        found = await self._fetchrow(sql, *args)
        return None if found is None else stored.migration_record(found)

    async def save_spec(self, migration_id: str, spec: dict[str, object], fingerprint: str) -> None:
        await self._execute(f"UPDATE {SCHEMA}.migrations SET spec = $2::jsonb, fingerprint = $3 WHERE id = $1",
                            migration_id, stored.to_json(spec), fingerprint)

    async def set_status(self, migration_id: str, status: str, *, error: str | None = None,
                         started: bool = False, ended: bool = False) -> None:
        await self._execute(_SET_STATUS, migration_id, status, error, started, ended, stored.now())

    async def mark_interrupted(self) -> int:
        return _count(await self._execute(
            f"UPDATE {SCHEMA}.migrations SET status = 'interrupted' WHERE status = ANY($1::text[])",
            list(stored.RUNNING)))

    async def save_table(self, migration_id: str, table: str, target: str, status: str, total: int | None) -> None:
        await self._execute(_SAVE_TABLE, migration_id, table, target, status, total)

    async def tables(self, migration_id: str) -> list[TableState]:
        found = await self._fetch(
            f"SELECT {stored.TABLE_COLUMNS} FROM {SCHEMA}.tables WHERE migration_id = $1 ORDER BY seq", migration_id)
        return [stored.table_state(migration_id, r) for r in found]

    async def save_checkpoint(self, migration_id: str, table: str, checkpoint: Checkpoint,
                              rejects: Sequence[Reject], logs: Sequence[LogEntry] = ()) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(_SAVE_CHECKPOINT, migration_id, table, stored.to_json(checkpoint.position),
                               checkpoint.rows_written, checkpoint.rows_failed, checkpoint.batches,
                               checkpoint.sink_state)
            if rejects:
                await conn.executemany(_INSERT_REJECT, [_text_safe(stored.reject_values(migration_id, r))
                                                        for r in rejects])
            if logs:
                await conn.executemany(_INSERT_LOG, [_text_safe(stored.log_values(migration_id, e)) for e in logs])

    async def load_checkpoint(self, migration_id: str, table: str) -> Checkpoint | None:
        return stored.checkpoint(await self._fetchrow(
            f"SELECT {stored.CHECKPOINT_COLUMNS} FROM {SCHEMA}.tables WHERE migration_id = $1 AND table_name = $2",
            migration_id, table))

    async def add_log(self, migration_id: str, entry: LogEntry) -> None:
        await self._execute(_INSERT_LOG, *_text_safe(stored.log_values(migration_id, entry)))

    async def logs(self, migration_id: str, *, level: str | None = None, table: str | None = None,
                   limit: int = 1000, after: int | None = None) -> list[LogEntry]:
        found = await self._fetch(_SELECT_LOGS, migration_id, stored.levels_from(level), table or None, after, limit)
        return [stored.log_entry(r) for r in found]

    async def delete_logs(self, migration_id: str) -> int:
        return _count(await self._execute(f"DELETE FROM {SCHEMA}.logs WHERE migration_id = $1", migration_id))

    async def rejects(self, migration_id: str, *, table: str | None = None, limit: int = 10_000) -> list[Reject]:
        return [stored.reject(r) for r in await self._fetch(_SELECT_REJECTS, migration_id, table or None, limit)]

    async def save_report(self, migration_id: str, report: Mapping[str, object]) -> None:
        await self._execute(f"INSERT INTO {SCHEMA}.reports (migration_id, created_at, report) VALUES ($1, $2, $3::jsonb)"
                            " ON CONFLICT (migration_id) DO UPDATE SET created_at = excluded.created_at,"
                            " report = excluded.report", migration_id, stored.now(), stored.to_json(report))

    async def report(self, migration_id: str) -> dict[str, object] | None:
        rows = await self._fetch(f"SELECT report::text FROM {SCHEMA}.reports WHERE migration_id = $1", migration_id)
        return dict(orjson.loads(str(rows[0][0]))) if rows else None

    async def save_sync(self, migration_id: str, state: Mapping[str, object]) -> None:
        await self._execute(f"INSERT INTO {SCHEMA}.sync_state (migration_id, updated_at, state) VALUES ($1, $2, $3::jsonb)"
                            " ON CONFLICT (migration_id) DO UPDATE SET updated_at = excluded.updated_at,"
                            " state = excluded.state", migration_id, stored.now(), stored.to_json(state))

    async def sync_state(self, migration_id: str) -> dict[str, object] | None:
        rows = await self._fetch(f"SELECT state::text FROM {SCHEMA}.sync_state WHERE migration_id = $1", migration_id)
        return dict(orjson.loads(str(rows[0][0]))) if rows else None

    async def count_rejects(self, migration_id: str, rule: str) -> dict[str, int]:
        rows = await self._fetch(f"SELECT table_name, count(*) FROM {SCHEMA}.rejects"
                                 " WHERE migration_id = $1 AND rule = $2 GROUP BY table_name", migration_id, rule)
        return {str(t): int(n) for t, n in rows}

    async def close(self) -> None:
        """Close the pool, waiting for queries under way (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

def _count(status: str) -> int:
    """The row count of a command status such as `UPDATE 3`."""
    return int(status.rsplit(" ", 1)[-1])


def _text_safe(values: tuple[object, ...]) -> tuple[object, ...]:
    """PostgreSQL text cannot hold NUL: a rejected value read from a CSV or SQLite source may, so it is
    kept with U+FFFD in its place rather than failing the batch's checkpoint."""
    return tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in values)
