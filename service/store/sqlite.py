"""The default StateStore: one SQLite file (WAL), private to the service's user (mode 0600).

Checkpoint and rejects of a batch are saved in one transaction. WAL with synchronous=NORMAL is
durable across a crash of the process (`kill -9`), which is what resuming relies on.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson

from service.core.batch import Checkpoint, Reject
from service.core.sqlite_thread import SqliteDatabase
from service.store import rows as stored
from service.store.base import UNFINISHED, LogEntry, MigrationRecord, TableState
from service.store.rows import now

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
  row INTEGER, key TEXT, column_name TEXT, value TEXT, rule TEXT NOT NULL, message TEXT NOT NULL, record TEXT);
CREATE INDEX IF NOT EXISTS rejects_migration ON rejects (migration_id, table_name, id);
CREATE TABLE IF NOT EXISTS reports (
  migration_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, report TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sync_state (
  migration_id TEXT PRIMARY KEY, updated_at TEXT NOT NULL, state TEXT NOT NULL);
"""


class SqliteStateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = SqliteDatabase(path, read_only=False, timeout=30.0)
        self._ready = False

    async def open(self) -> SqliteStateStore:
        # Owner-only from the start: SQLite gives its -wal and -shm files the database file's mode.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        for path in (self.path, *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm", "-journal"))):
            if path.exists():
                os.chmod(path, 0o600)

        def setup(c: sqlite3.Connection) -> None:
            c.executescript(_SCHEMA)
            if "record" not in {r[1] for r in c.execute("PRAGMA table_info(rejects)")}:  # a store from before it
                c.execute("ALTER TABLE rejects ADD COLUMN record TEXT")

        await self.db.run(setup)
        self._ready = True
        return self

    async def create_migration(self, record: MigrationRecord) -> None:
        await self.db.run(lambda c: c.execute(
            f"INSERT INTO migrations ({stored.MIGRATION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (record.id, record.fingerprint, stored.to_json(record.spec), record.source, record.target,
             record.status, record.created_at, record.started_at, record.ended_at, record.error)))

    async def get_migration(self, migration_id: str) -> MigrationRecord | None:
        row = await self.db.run(lambda c: c.execute(
            f"SELECT {stored.MIGRATION_COLUMNS} FROM migrations WHERE id = ?", (migration_id,)).fetchone())
        return stored.migration_record(row) if row else None

    async def find_unfinished(self, fingerprint: str) -> MigrationRecord | None:
        marks = ",".join("?" * len(UNFINISHED))
        row = await self.db.run(lambda c: c.execute(
            f"SELECT {stored.MIGRATION_COLUMNS} FROM migrations WHERE fingerprint = ? AND status IN ({marks})"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1", (fingerprint, *UNFINISHED)).fetchone())
        return stored.migration_record(row) if row else None

    async def find_latest(self, fingerprint: str) -> MigrationRecord | None:
        row = await self.db.run(lambda c: c.execute(
            f"SELECT {stored.MIGRATION_COLUMNS} FROM migrations WHERE fingerprint = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (fingerprint,)).fetchone())
        return stored.migration_record(row) if row else None

    async def list_migrations(self, limit: int = 100) -> list[MigrationRecord]:
        rows = await self.db.run(lambda c: c.execute(
            f"SELECT {stored.MIGRATION_COLUMNS} FROM migrations ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall())
        return [stored.migration_record(r) for r in rows]

    async def save_spec(self, migration_id: str, spec: dict[str, object], fingerprint: str) -> None:
        await self.db.run(lambda c: c.execute(
            "UPDATE migrations SET spec = ?, fingerprint = ? WHERE id = ?",
            (stored.to_json(spec), fingerprint, migration_id)))

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
            f"UPDATE migrations SET status = 'interrupted' WHERE status IN ({','.join('?' * len(stored.RUNNING))})",
            stored.RUNNING))
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
            f"SELECT {stored.TABLE_COLUMNS} FROM tables WHERE migration_id = ? ORDER BY ord", (migration_id,)).fetchall())
        return [stored.table_state(migration_id, r) for r in rows]

    async def save_checkpoint(self, migration_id: str, table: str, checkpoint: Checkpoint,
                              rejects: Sequence[Reject], logs: Sequence[LogEntry] = ()) -> None:
        def save(c: sqlite3.Connection) -> None:
            with c:
                c.execute("BEGIN")
                c.execute(
                    "UPDATE tables SET position = ?, rows_written = ?, rows_failed = ?, batches = ?, sink_state = ?"
                    " WHERE migration_id = ? AND table_name = ?",
                    (stored.to_json(checkpoint.position), checkpoint.rows_written, checkpoint.rows_failed,
                     checkpoint.batches, checkpoint.sink_state, migration_id, table))
                if rejects:
                    c.executemany(
                        f"INSERT INTO rejects (migration_id, {stored.REJECT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                        [stored.reject_values(migration_id, r) for r in rejects])
                _insert_logs(c, migration_id, logs)
        await self.db.run(save)

    async def load_checkpoint(self, migration_id: str, table: str) -> Checkpoint | None:
        row = await self.db.run(lambda c: c.execute(
            f"SELECT {stored.CHECKPOINT_COLUMNS} FROM tables WHERE migration_id = ? AND table_name = ?",
            (migration_id, table)).fetchone())
        return stored.checkpoint(row)

    async def add_log(self, migration_id: str, entry: LogEntry) -> None:
        await self.db.run(lambda c: _insert_logs(c, migration_id, [entry]))

    async def logs(self, migration_id: str, *, level: str | None = None, table: str | None = None,
                   limit: int = 1000, after: int | None = None) -> list[LogEntry]:
        wanted = stored.levels_from(level)
        sql = (f"SELECT {stored.LOG_COLUMNS} FROM logs"
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
        return [stored.log_entry(r) for r in rows]

    async def delete_logs(self, migration_id: str) -> int:
        cur = await self.db.run(lambda c: c.execute("DELETE FROM logs WHERE migration_id = ?", (migration_id,)))
        return int(cur.rowcount)

    async def rejects(self, migration_id: str, *, table: str | None = None, limit: int = 10_000) -> list[Reject]:
        sql = f"SELECT {stored.REJECT_COLUMNS} FROM rejects WHERE migration_id = ?"
        args: list[object] = [migration_id]
        if table:
            sql += " AND table_name = ?"
            args.append(table)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        rows = await self.db.run(lambda c: c.execute(sql, args).fetchall())
        return [stored.reject(r) for r in rows]

    async def save_report(self, migration_id: str, report: Mapping[str, object]) -> None:
        await self.db.run(lambda c: c.execute(
            "INSERT INTO reports (migration_id, created_at, report) VALUES (?, ?, ?) ON CONFLICT (migration_id) "
            "DO UPDATE SET created_at = excluded.created_at, report = excluded.report",
            (migration_id, stored.now(), stored.to_json(report))))

    async def report(self, migration_id: str) -> dict[str, object] | None:
        row = await self.db.run(lambda c: c.execute(
            "SELECT report FROM reports WHERE migration_id = ?", (migration_id,)).fetchone())
        return None if row is None else dict(orjson.loads(str(row[0])))

    async def save_sync(self, migration_id: str, state: Mapping[str, object]) -> None:
        await self.db.run(lambda c: c.execute(
            "INSERT INTO sync_state (migration_id, updated_at, state) VALUES (?, ?, ?) ON CONFLICT (migration_id) "
            "DO UPDATE SET updated_at = excluded.updated_at, state = excluded.state",
            (migration_id, stored.now(), stored.to_json(state))))

    async def sync_state(self, migration_id: str) -> dict[str, object] | None:
        row = await self.db.run(lambda c: c.execute(
            "SELECT state FROM sync_state WHERE migration_id = ?", (migration_id,)).fetchone())
        return None if row is None else dict(orjson.loads(str(row[0])))

    async def count_rejects(self, migration_id: str, rule: str) -> dict[str, int]:
        rows = await self.db.run(lambda c: c.execute(
            "SELECT table_name, count(*) FROM rejects WHERE migration_id = ? AND rule = ? GROUP BY table_name",
            (migration_id, rule)).fetchall())
        return {str(t): int(n) for t, n in rows}

    async def close(self) -> None:
        await self.db.close()


def _insert_logs(c: sqlite3.Connection, migration_id: str, entries: Sequence[LogEntry]) -> None:
    if entries:
        c.executemany(
            f"INSERT INTO logs (migration_id, {stored.LOG_FIELDS}) VALUES (?,?,?,?,?,?,?,?,?)",
            [stored.log_values(migration_id, e) for e in entries])

