"""What moves through a pipeline: a Batch of rows (Arrow, or a native payload) and its position."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import pyarrow as pa

# A position in a source's read order, as stored in checkpoints: JSON-serialisable and opaque to
# everyone but the source that made it (a list of key values as text, or a byte offset).
Position = list[str | int | float | None] | int | None


class NativeFormat(StrEnum):
    """Payload formats a source can hand to a sink of its own kind without decoding rows."""

    PG_BINARY = "pg_binary"  # a complete PostgreSQL binary COPY stream (header, tuples, trailer)
    CSV = "csv"  # CSV rows without a header, in the target's dialect
    CSV_SAFE = "csv_safe"  # the same, text cells starting with = + - @ TAB CR prefixed with ' (excelSafe)
    BSON = "bson"  # one BSON document per part, exactly as MongoDB returned it


@dataclass(frozen=True)
class NativePayload:
    """A payload as the source produced it, in the pieces it arrived in (joining them would
    copy every byte once more)."""

    format: NativeFormat
    parts: list[bytes]


# The reason column of a rejects file (service.quality.rejects): a CSV source never loads it, so
# that a corrected rejects file loads again as it is.
REJECT_ERROR_COLUMN = "_migrator_error"


@dataclass(frozen=True)
class Reject:
    """A row that was not loaded, and why. `row` is the 1-based row number in the source's read
    order (the data line for CSV); `key` the row's key where the source has one."""

    table: str
    row: int | None
    key: str | None
    column: str | None
    value: str | None
    rule: str
    message: str
    # The whole row as read from the source, each value as its CSV text (None: NULL), when the
    # run still had it: what a rejects file needs to load the row again once corrected.
    record: dict[str, str | None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SourceRows:
    """A batch's rows as read, with their source row numbers (None: first_row, first_row + 1, …)."""

    data: pa.RecordBatch
    first_row: int
    numbers: pa.Array | None = None


@dataclass
class Batch:
    """A run of rows of one table in the source's read order, up to and including `upto`.

    `upto` becomes the table's checkpoint once the target has committed this batch. Invariant:
    `rows_read == rows + len(rejects)`; an Arrow batch's `data` holds exactly the `rows`.
    """

    seq: int
    table: str
    upto: Position
    first_row: int
    data: pa.RecordBatch | NativePayload
    rows_read: int
    rejects: list[Reject] = field(default_factory=list)
    read_at: float = 0.0  # time.monotonic() when reading it began (set by the pipeline)
    # The source row number of each row of an Arrow `data`, once quality steps removed rows
    # (None: the rows are first_row, first_row + 1, …).
    numbers: pa.Array | None = None
    # The rows as the source read them (before transforms), kept for the rejects' records until
    # the batch is committed; None for native payloads.
    source: SourceRows | None = None

    def number(self, i: int) -> int:
        """The source row number of row `i` of `data`."""
        return self.first_row + i if self.numbers is None else int(self.numbers[i].as_py())

    @property
    def rows(self) -> int:
        """Rows to be written: read minus rejected (whoever rejected them)."""
        return self.rows_read - len(self.rejects)


@dataclass(frozen=True)
class Checkpoint:
    """Where a table stands: every source row up to `position` is committed in the target.
    `sink_state` is the sink's own resume datum (the byte length of a CSV file being written)."""

    position: Position
    rows_written: int
    rows_failed: int
    batches: int
    sink_state: int | None = None
