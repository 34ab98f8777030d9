"""What both StateStore backends share: the stored row shapes, timestamps and log levels.

Both keep the same columns under the same names, so a row read by either turns into a record here.
Timestamps are stored as the text `now()` writes (ISO 8601 UTC, milliseconds, `Z`): they read back
unchanged and sort as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from service.core.batch import Checkpoint, Reject
from service.store.base import LogEntry, MigrationRecord, TableState

MIGRATION_COLUMNS = "id, fingerprint, spec, source, target, status, created_at, started_at, ended_at, error"
TABLE_COLUMNS = "table_name, target, status, total, position, rows_written, rows_failed, batches, sink_state"
CHECKPOINT_COLUMNS = "position, rows_written, rows_failed, batches, sink_state"
LOG_FIELDS = "timestamp, level, message, table_name, batch, record_id, value, error"
LOG_COLUMNS = f"id, {LOG_FIELDS}"
REJECT_COLUMNS = "table_name, row, key, column_name, value, rule, message, record"

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Interrupted by a restart: what was running (or stopping) when the service died.
RUNNING = ("executing", "pausing", "paused")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds_since(stamp: str | None) -> float:
    """Seconds from a `now()` time stamp to now (0 for None)."""
    if not stamp:
        return 0.0
    return max(0.0, (datetime.now(UTC) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds())


def levels_from(level: str | None) -> list[str]:
    """`level` and every level above it; all levels for None or a name not in LEVELS."""
    name = (level or "DEBUG").upper()
    return list(LEVELS[LEVELS.index(name):]) if name in LEVELS else list(LEVELS)


def to_json(value: object) -> str:
    return orjson.dumps(value).decode()


def log_values(migration_id: str, e: LogEntry) -> tuple[object, ...]:
    """`migration_id` and LOG_FIELDS of an entry, to insert."""
    return (migration_id, e.timestamp, e.level, e.message, e.table, e.batch, e.record_id, e.value, e.error)


def reject_values(migration_id: str, r: Reject) -> tuple[object, ...]:
    """`migration_id` and REJECT_COLUMNS of a reject, to insert."""
    return (migration_id, r.table, r.row, r.key, r.column, r.value, r.rule, r.message,
            None if r.record is None else to_json(r.record))


def migration_record(r: Sequence[object]) -> MigrationRecord:
    """A row of MIGRATION_COLUMNS (the spec as JSON text)."""
    return MigrationRecord(
        id=str(r[0]), fingerprint=str(r[1]), spec=orjson.loads(str(r[2])), source=str(r[3]), target=str(r[4]),
        status=str(r[5]), created_at=str(r[6]), started_at=_text(r[7]), ended_at=_text(r[8]), error=_text(r[9]),
    )


def table_state(migration_id: str, r: Sequence[object]) -> TableState:
    """A row of TABLE_COLUMNS."""
    total = r[3]
    return TableState(migration_id, str(r[0]), str(r[1]), str(r[2]), None if total is None else _int(total),
                      checkpoint(r[4:]))


def checkpoint(r: Sequence[object] | None) -> Checkpoint | None:
    """A row of CHECKPOINT_COLUMNS; None when there is no row or no batch was committed yet."""
    if r is None or r[0] is None:
        return None
    return Checkpoint(orjson.loads(str(r[0])), _int(r[1]), _int(r[2]), _int(r[3]),
                      None if r[4] is None else _int(r[4]))


def log_entry(r: Sequence[object]) -> LogEntry:
    """A row of LOG_COLUMNS."""
    return LogEntry(id=_int(r[0]), timestamp=str(r[1]), level=str(r[2]), message=str(r[3]), table=_text(r[4]),
                    batch=None if r[5] is None else _int(r[5]), record_id=_text(r[6]), value=_text(r[7]),
                    error=_text(r[8]))


def reject(r: Sequence[object]) -> Reject:
    """A row of REJECT_COLUMNS."""
    return Reject(table=str(r[0]), row=None if r[1] is None else _int(r[1]), key=_text(r[2]), column=_text(r[3]),
                  value=_text(r[4]), rule=str(r[5]), message=str(r[6]),
                  record=None if r[7] is None else orjson.loads(str(r[7])))


def _text(v: object) -> str | None:
    return None if v is None else str(v)


def _int(v: object) -> int:
    return int(str(v))
