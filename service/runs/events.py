"""What a run tells its watchers (CLI progress bars, the WebSocket hub, metrics). Past tense."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from service.core.batch import Reject
from service.pipeline.progress import TableProgress
from service.store.base import LogEntry


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
    seconds: float  # from the start of reading the batch to its commit


@dataclass(frozen=True)
class TableFinished:
    migration_id: str
    progress: TableProgress


@dataclass(frozen=True)
class LogWritten:
    migration_id: str
    entry: LogEntry


@dataclass(frozen=True)
class PlanMade:
    migration_id: str
    plan: dict[str, object]


@dataclass(frozen=True)
class ReportMade:
    """A verification report (service.verify) was made and saved."""

    migration_id: str
    report: dict[str, object]
    # Made by the run itself, before its final status: watchers get it with that status (the
    # final `report` event carries the summary and this report); else sent at once.
    in_run: bool = False


@dataclass(frozen=True)
class SyncPassed:
    """An incremental sync's pass ended, or its lag was measured again (the summary's `sync`)."""

    migration_id: str
    sync: dict[str, object]


Event = (StatusChanged | TableStarted | BatchCommitted | TableFinished | LogWritten | PlanMade | ReportMade
         | SyncPassed)
Listener = Callable[[Event], None]


def notify(listeners: Iterable[Listener], event: Event) -> None:
    """Tell every listener; a listener's bug is logged and never breaks the run or the caller."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            logging.getLogger(__name__).exception("event listener failed on %s", type(event).__name__)
