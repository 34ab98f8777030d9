"""What a run tells its watchers (CLI progress bars, later the WebSocket hub). Past tense."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.core.batch import Reject
from service.pipeline.progress import TableProgress


@dataclass(frozen=True)
class StatusChanged:
    migration_id: str
    status: str
    error: str | None = None


@dataclass(frozen=True)
class TableStarted:
    migration_id: str
    progress: TableProgress
    resumed_rows: int


@dataclass(frozen=True)
class BatchCommitted:
    migration_id: str
    progress: TableProgress
    batch: int
    rows: int
    rejects: tuple[Reject, ...]


@dataclass(frozen=True)
class TableFinished:
    migration_id: str
    progress: TableProgress


Event = StatusChanged | TableStarted | BatchCommitted | TableFinished
Listener = Callable[[Event], None]
