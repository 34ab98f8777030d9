"""The StateStore role and the records it keeps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from service.core.batch import Checkpoint, Reject


@dataclass(frozen=True)
class MigrationRecord:
    """One migration. `spec` holds the URLs as the user wrote them (`${VAR}` unexpanded)."""

    id: str
    fingerprint: str
    spec: dict[str, object]
    source: str  # masked
    target: str  # masked
    status: str
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class TableState:
    migration_id: str
    table: str
    target: str
    status: str
    total: int | None
    checkpoint: Checkpoint | None


@dataclass(frozen=True)
class LogEntry:
    timestamp: str
    level: str
    message: str
    table: str | None = None
    batch: int | None = None
    record_id: str | None = None
    value: str | None = None
    error: str | None = None
    id: int | None = None


UNFINISHED = ("initialized", "planned", "executing", "pausing", "paused", "interrupted", "failed", "cancelled")


class StateStore(Protocol):
    async def create_migration(self, record: MigrationRecord) -> None: ...
    async def get_migration(self, migration_id: str) -> MigrationRecord | None: ...
    async def find_unfinished(self, fingerprint: str) -> MigrationRecord | None: ...
    async def find_latest(self, fingerprint: str) -> MigrationRecord | None: ...
    async def list_migrations(self, limit: int = 100) -> list[MigrationRecord]:
        """Newest first."""
        ...
    async def save_spec(self, migration_id: str, spec: dict[str, object], fingerprint: str) -> None:
        """Replace the migration's stored spec (a plan refines it)."""
        ...
    async def set_status(self, migration_id: str, status: str, *, error: str | None = None,
                         started: bool = False, ended: bool = False) -> None: ...
    async def mark_interrupted(self) -> int: ...
    async def save_table(self, migration_id: str, table: str, target: str, status: str, total: int | None) -> None: ...
    async def tables(self, migration_id: str) -> list[TableState]: ...
    async def save_checkpoint(self, migration_id: str, table: str, checkpoint: Checkpoint,
                              rejects: Sequence[Reject], logs: Sequence[LogEntry] = ()) -> None:
        """The checkpoint, the batch's rejects and its log entries, in one transaction."""
        ...
    async def load_checkpoint(self, migration_id: str, table: str) -> Checkpoint | None: ...
    async def add_log(self, migration_id: str, entry: LogEntry) -> None: ...
    async def logs(self, migration_id: str, *, level: str | None = None, table: str | None = None,
                   limit: int = 1000, after: int | None = None) -> list[LogEntry]: ...
    async def delete_logs(self, migration_id: str) -> int:
        """Delete the migration's log entries; the number deleted."""
        ...
    async def rejects(self, migration_id: str, *, table: str | None = None, limit: int = 10_000) -> list[Reject]: ...
    async def save_report(self, migration_id: str, report: Mapping[str, object]) -> None:
        """Keep `report` as the migration's latest verification report."""
        ...
    async def report(self, migration_id: str) -> dict[str, object] | None:
        """The migration's latest verification report, if it has one."""
        ...
    async def save_sync(self, migration_id: str, state: Mapping[str, object]) -> None:
        """The incremental sync's state (passes, watermarks, lag), replaced whole."""
        ...

    async def sync_state(self, migration_id: str) -> dict[str, object] | None: ...

    async def count_rejects(self, migration_id: str, rule: str) -> dict[str, int]:
        """Per table, how many of the migration's rejects have `rule` (tables with none left out)."""
        ...
    async def close(self) -> None: ...
