"""Persistent state: migrations, per-table checkpoints, logs and rejects."""

from service.store.base import LogEntry, MigrationRecord, StateStore, TableState
from service.store.sqlite import SqliteStateStore, open_state_store

__all__ = ["LogEntry", "MigrationRecord", "SqliteStateStore", "StateStore", "TableState", "open_state_store"]
