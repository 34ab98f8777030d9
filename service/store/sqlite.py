"""The default StateStore: one SQLite file (WAL), private to the service's user (mode 0600).

Checkpoint and rejects of a batch are saved in one transaction. WAL with synchronous=NORMAL is
durable across a crash of the process (`kill -9`), which is what resuming relies on.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson

from service.core.batch import Checkpoint, Reject
from service.core.errors import ConfigError
from service.core.sqlite_thread import SqliteDatabase
from service.store.base import UNFINISHED, LogEntry, MigrationRecord, TableState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS migrations (
  id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, spec TEXT NOT NULL, source TEXT NOT NULL,
  target TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, started_at TEXT,
  ended_at TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS migrations_fingerprint ON migrations (fingerprint, created_at);
CREATE TABLE IF NOT EXISTS tables (
  migration_id TEXT NOT NULL, table_name TEXT NOT NULL, target TEXT NOT NULL, status TEXT NOT NULL,
  total INTEGER, position TEXT, rows_written INTEGER, rows_failed INTEGER, batches INTEGER,
  sink_state INTEGER, ord INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (migration_id, table_name));
CREATE TABLE IF NOT EXISTS logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, migration_id TEXT NOT NULL, timestamp TEXT NOT NULL,
  level TEXT NOT NULL, message TEXT NOT NULL, table_name TEXT, batch INTEGER, record_id TEXT,
  value TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS logs_migration ON logs (migration_id, id);
CREATE TABLE IF NOT EXISTS rejects (
  id INTEGER PRIMARY KEY AUTOINCREMENT, migration_id TEXT NOT NULL, table_name TEXT NOT NULL,
  row INTEGER, key TEXT, column_name TEXT, value TEXT, rule TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rejects_migration ON rejects (migration_id, table_name, id);
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def open_state_store(url: str, *, base: Path | None = None) -> SqliteStateStore:
    """The store named by MIGRATOR_STATE_URL (relative sqlite paths resolve from `base`, the cwd)."""
    if url.startswith("sqlite://"):
        rest = url.split("://", 1)[1]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"MIGRATOR_STATE_URL {url!r} must look like sqlite:///var/state.db")
        raw = rest[1:]
        path = Path(raw) if raw.startswith("/") else (base or Path.cwd()) / raw
        return SqliteStateStore(path)
    raise ConfigError("a PostgreSQL state store is not available yet; use MIGRATOR_STATE_URL=sqlite:///…")


def _record(r: tuple[object, ...]) -> MigrationRecord:
    return MigrationRecord(
        id=str(r[0]), fingerprint=str(r[1]), spec=orjson.loads(str(r[2])), source=str(r[3]), target=str(r[4]),
        status=str(r[5]), created_at=str(r[6]), started_at=_text(r[7]), ended_at=_text(r[8]), error=_text(r[9]),
    )


def _text(v: object) -> str | None:
    return None if v is None else str(v)


_MIGRATION_COLS = "id, fingerprint, spec, source, target, status, created_at, started_at, ended_at, error"


class SqliteStateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = SqliteDatabase(path, read_only=False, timeout=30.0)
        self._ready = False

    async def open(self) -> SqliteStateStore:
        def setup(c: sqlite3.Connection) -> None:
            c.executescript(_SCHEMA)
            os.chmod(self.path, 0o600)

        await self.db.run(setup)
        self._ready = True
        return self

    async def create_migration(self, record: MigrationRecord) -> None:
        await self.db.run(lambda c: c.execute(
            f"INSERT INTO migrations ({_MIGRATION_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (record.id, record.fingerprint, orjson.dumps(record.spec).decode(), record.source, record.target,
             record.status, record.created_at, record.started_at, record.ended_at, record.error)))

    async def get_migration(self, migration_id: str) -> MigrationRecord | None:
        row = await self.db.run(lambda c: c.execute(
            f"SELECT {_MIGRATION_COLS} FROM migrations WHERE id = ?", (migration_id,)).fetchone())
        return _record(row) if row else None

    async def find_unfinished(self, fingerprint: str) -> MigrationRecord | None:
        marks = ",".join("?" * len(UNFINISHED))
        row = await self.db.run(lambda c: c.execute(
            f"SELECT {_MIGRATION_COLS} FROM migrations WHERE fingerprint = ? AND status IN ({marks})"
            " ORDER BY created_at DESC LIMIT 1", (fingerprint, *UNFINISHED)).fetchone())
        return _record(row) if row else None

    async def find_latest(self, fingerprint: str) -> MigrationRecord | None:
        row = await self.db.run(lambda c: c.execute(
            f"SELECT {_MIGRATION_COLS} FROM migrations WHERE fingerprint = ? ORDER BY created_at DESC LIMIT 1",
            (fingerprint,)).fetchone())
        return _record(row) if row else None

    async def list_migrations(self, limit: int = 100) -> list[MigrationRecord]:
        rows = await self.db.run(lambda c: c.execute(
            f"SELECT {_MIGRATION_COLS} FROM migrations ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall())
        return [_record(r) for r in rows]

    async def set_status(self, migration_id: str, status: str, *, error: str | None = None,
                         started: bool = False, ended: bool = False) -> None:
        ts = now()
        await self.db.run(lambda c: c.execute(
            "UPDATE migrations SET status = ?, error = ?,"
            " started_at = CASE WHEN ? THEN coalesce(started_at, ?) ELSE started_at END,"
            " ended_at = CASE WHEN ? THEN ? ELSE NULL END WHERE id = ?",
            (status, error, started, ts, ended, ts, migration_id)))

    async def mark_interrupted(self) -> int:
        cur = await self.db.run(lambda c: c.execute(
            "UPDATE migrations SET status = 'interrupted' WHERE status IN ('executing', 'pausing', 'paused')"))
        return int(cur.rowcount)

    async def save_table(self, migration_id: str, table: str, target: str, status: str, total: int | None) -> None:
        await self.db.run(lambda c: c.execute(
            "INSERT INTO tables (migration_id, table_name, target, status, total, ord) VALUES (?,?,?,?,?,"
            " (SELECT count(*) FROM tables WHERE migration_id = ?))"
            " ON CONFLICT (migration_id, table_name) DO UPDATE SET target = excluded.target,"
            " status = excluded.status, total = coalesce(excluded.total, tables.total)",
            (migration_id, table, target, status, total, migration_id)))

    async def tables(self, migration_id: str) -> list[TableState]:
        rows = await self.db.run(lambda c: c.execute(
            "SELECT table_name, target, status, total, position, rows_written, rows_failed, batches, sink_state"
            " FROM tables WHERE migration_id = ? ORDER BY ord", (migration_id,)).fetchall())
        return [TableState(migration_id, r[0], r[1], r[2], r[3], _checkpoint(r[4:])) for r in rows]

    async def save_checkpoint(self, migration_id: str, table: str, checkpoint: Checkpoint,
                              rejects: Sequence[Reject], logs: Sequence[LogEntry] = ()) -> None:
        def save(c: sqlite3.Connection) -> None:
            with c:
                c.execute("BEGIN")
                c.execute(
                    "UPDATE tables SET position = ?, rows_written = ?, rows_failed = ?, batches = ?, sink_state = ?"
                    " WHERE migration_id = ? AND table_name = ?",
                    (orjson.dumps(checkpoint.position).decode(), checkpoint.rows_written, checkpoint.rows_failed,
                     checkpoint.batches, checkpoint.sink_state, migration_id, table))
                if rejects:
                    c.executemany(
                        "INSERT INTO rejects (migration_id, table_name, row, key, column_name, value, rule, message)"
                        " VALUES (?,?,?,?,?,?,?,?)",
                        [(migration_id, r.table, r.row, r.key, r.column, r.value, r.rule, r.message) for r in rejects])
                _insert_logs(c, migration_id, logs)
        await self.db.run(save)

    async def load_checkpoint(self, migration_id: str, table: str) -> Checkpoint | None:
        row = await self.db.run(lambda c: c.execute(
            "SELECT position, rows_written, rows_failed, batches, sink_state FROM tables"
            " WHERE migration_id = ? AND table_name = ?", (migration_id, table)).fetchone())
        return _checkpoint(row) if row else None

    async def add_log(self, migration_id: str, entry: LogEntry) -> None:
        await self.db.run(lambda c: _insert_logs(c, migration_id, [entry]))

    async def logs(self, migration_id: str, *, level: str | None = None, table: str | None = None,
                   limit: int = 1000, after: int | None = None) -> list[LogEntry]:
        levels = {"DEBUG": 0, "INFO": 1, "WARNING": 2, "ERROR": 3}
        wanted = [k for k, v in levels.items() if v >= levels.get((level or "DEBUG").upper(), 0)]
        sql = (f"SELECT id, timestamp, level, message, table_name, batch, record_id, value, error FROM logs"
               f" WHERE migration_id = ? AND level IN ({','.join('?' * len(wanted))})")
        args: list[object] = [migration_id, *wanted]
        if table:
            sql += " AND table_name = ?"
            args.append(table)
        if after is not None:
            sql += " AND id > ?"
            args.append(after)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        rows = await self.db.run(lambda c: c.execute(sql, args).fetchall())
        return [LogEntry(timestamp=r[1], level=r[2], message=r[3], table=r[4], batch=r[5], record_id=r[6],
                         value=r[7], error=r[8], id=r[0]) for r in rows]

    async def rejects(self, migration_id: str, *, table: str | None = None, limit: int = 10_000) -> list[Reject]:
        sql = "SELECT table_name, row, key, column_name, value, rule, message FROM rejects WHERE migration_id = ?"
        args: list[object] = [migration_id]
        if table:
            sql += " AND table_name = ?"
            args.append(table)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        rows = await self.db.run(lambda c: c.execute(sql, args).fetchall())
        return [Reject(*r) for r in rows]

    async def close(self) -> None:
        await self.db.close()


def _insert_logs(c: sqlite3.Connection, migration_id: str, entries: Sequence[LogEntry]) -> None:
    if entries:
        c.executemany(
            "INSERT INTO logs (migration_id, timestamp, level, message, table_name, batch, record_id, value, error)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            [(migration_id, e.timestamp, e.level, e.message, e.table, e.batch, e.record_id, e.value, e.error)
             for e in entries])


def _checkpoint(r: tuple[object, ...] | None) -> Checkpoint | None:
    if r is None or r[0] is None:
        return None
    return Checkpoint(orjson.loads(str(r[0])), int(str(r[1])), int(str(r[2])), int(str(r[3])),
                      None if r[4] is None else int(str(r[4])))
