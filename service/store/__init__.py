"""Persistent state: migrations, per-table checkpoints, logs and rejects (SQLite or PostgreSQL)."""

from service.store.base import LogEntry, MigrationRecord, StateStore, TableState
from service.store.factory import open_state_store
from service.store.postgres import PostgresStateStore
from service.store.sqlite import SqliteStateStore

__all__ = [
    "LogEntry",
    "MigrationRecord",
    "PostgresStateStore",
    "SqliteStateStore",
    "StateStore",
    "TableState",
    "open_state_store",
]
