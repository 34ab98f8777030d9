"""The `summary` of a migration (DESIGN.md §3) — from a live run, or from the state store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from service.pipeline.progress import TableProgress
from service.store.base import MigrationRecord, TableState


@dataclass(frozen=True)
class TableCounts:
    name: str
    target: str
    status: str
    total: int | None
    migrated: int
    failed: int
    skipped: int = 0

    @classmethod
    def live(cls, p: TableProgress) -> TableCounts:
        return cls(p.table, p.target, p.status.value, p.total, p.written, p.failed, p.skipped)

    @classmethod
    def stored(cls, t: TableState, skipped: int = 0) -> TableCounts:
        cp = t.checkpoint
        return cls(t.table, t.target, t.status, t.total, cp.rows_written if cp else 0, cp.rows_failed if cp else 0,
                   skipped if cp else 0)


def summarize(record: MigrationRecord, status: str, tables: Sequence[TableCounts], *,
              started_at: str | None, ended_at: str | None, error: str | None,
              estimated_seconds: float | None = None,
              sync: Mapping[str, object] | None = None) -> dict[str, object]:
    """The accounting, per table and in total: readCount = migratedCount + failedCount, and
    failedCount = rejectedCount (rows a rule, a cast or the target refused) + skippedCount (rows
    of a batch skipped whole by `onError: skip_batch`).

    With the plan's `estimated_seconds`: `estimatedSeconds`, and `estimateRatio` — the actual
    duration (finished) or the projected one (elapsed + ETA, running) over the estimate."""
    total = sum(t.total or 0 for t in tables)
    migrated = sum(t.migrated for t in tables)
    failed = sum(t.failed for t in tables)
    skipped = sum(t.skipped for t in tables)
    done = migrated + failed
    seconds = _seconds(started_at, ended_at)
    throughput = done / seconds if seconds and seconds > 0 else 0.0
    remaining = max(0, total - done)
    running = status in ("executing", "pausing")
    eta = round(remaining / throughput, 1) if running and throughput > 0 else None
    projected: float | None = None  # the run's whole duration: as it was, or as it will be at this pace
    if seconds is not None and not running:
        projected = seconds
    elif seconds is not None and eta is not None:
        projected = seconds + eta
    ratio = round(projected / estimated_seconds, 2) if projected is not None and estimated_seconds else None
    return {
        "id": record.id,
        "status": status,
        "source": record.source,
        "target": record.target,
        "totalRecords": total,
        "migratedCount": migrated,
        "failedCount": failed,
        "rejectedCount": failed - skipped,
        "skippedCount": skipped,
        "readCount": done,
        "progress": _percent(done, total, status),
        "duration": human_duration(seconds),
        "durationSeconds": round(seconds, 3) if seconds is not None else None,
        "startTime": started_at,
        "endTime": ended_at,
        "createdTime": record.created_at,
        "throughput": round(throughput, 1),
        "etaSeconds": eta,
        "estimatedSeconds": estimated_seconds,
        "estimateRatio": ratio,
        "error": error,
        "tables": [
            {"name": t.name, "target": t.target, "status": t.status, "totalRecords": t.total or 0,
             "migratedCount": t.migrated, "failedCount": t.failed, "rejectedCount": t.failed - t.skipped,
             "skippedCount": t.skipped, "readCount": t.migrated + t.failed,
             "progress": _percent(t.migrated + t.failed, t.total or 0, t.status)}
            for t in tables
        ],
        **({"sync": dict(sync)} if sync is not None else {}),
    }


def _percent(done: int, total: int, status: str) -> float:
    if total <= 0:
        return 100.0 if status == "completed" else 0.0
    return round(min(100.0, 100.0 * done / total), 1)


def _seconds(started_at: str | None, ended_at: str | None) -> float | None:
    if not started_at:
        return None
    start = datetime.fromisoformat(started_at)
    end = datetime.fromisoformat(ended_at) if ended_at else datetime.now(UTC)
    return max(0.0, (end - start).total_seconds())


def human_duration(seconds: float | None) -> str | None:
    """`"45 minutes"`, `"1 hour 5 minutes"`, `"12 seconds"`."""
    if seconds is None:
        return None
    s = int(round(seconds))
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''}"
    minutes, _ = divmod(s, 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    out = f"{hours} hour{'s' if hours != 1 else ''}"
    return out + (f" {minutes} minute{'s' if minutes != 1 else ''}" if minutes else "")
