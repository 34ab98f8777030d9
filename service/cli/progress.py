"""Progress bars per table (rich), fed by the run's events."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.runs.events import BatchCommitted, Event, StatusChanged, SyncPassed, TableFinished, TableStarted
from service.runs.migration import Migration


class ProgressView:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._pass: object = None  # the last sync pass printed

    def __call__(self, event: Event) -> None:
        if isinstance(event, TableStarted):
            p = event.progress
            self._tasks[p.table] = self.progress.add_task(
                f"{p.table} → {p.target}", total=p.total or None, completed=p.done, failed=p.failed)
        elif isinstance(event, (BatchCommitted, TableFinished)):
            p = event.progress
            task = self._tasks.get(p.table)
            if task is not None:
                total = p.total if p.total is not None and p.total >= p.done else p.done
                self.progress.update(task, completed=p.done, total=total, failed=p.failed)
        elif isinstance(event, StatusChanged) and event.status in ("paused", "pausing"):
            self.console.print(f"[yellow]{event.status}")
        elif isinstance(event, SyncPassed):
            history = event.sync.get("history")
            last = history[-1] if isinstance(history, list) and history else None
            if isinstance(last, dict) and last.get("pass") != self._pass:
                self._pass = last.get("pass")
                self.console.print(f"sync pass {last.get('pass')}: {last.get('rows')} row(s) copied, "
                                   f"{last.get('deleted')} deleted; behind by {event.sync.get('lagRows')} row(s)")


def summary_table(migration: Migration, seconds: float) -> Table:
    table = Table(title=f"Migration {migration.id}: {migration.status}")
    for col in ("table", "target", "records", "migrated", "failed", "status"):
        table.add_column(col, justify="right" if col in ("records", "migrated", "failed") else "left")
    for p in migration.tables.values():
        table.add_row(p.table, p.target, str(p.total if p.total is not None else "?"), str(p.written),
                      str(p.failed), p.status.value)
    written = sum(p.written for p in migration.tables.values())
    failed = sum(p.failed for p in migration.tables.values())
    rate = written / seconds if seconds > 0 else 0.0
    table.caption = f"{written} migrated, {failed} failed in {seconds:.1f} s ({rate:,.0f} records/s)"
    return table
