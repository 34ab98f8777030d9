"""The roles every connector plays: `Source` (reads a table in batches, resumably) and `Sink`
(prepares a target table and returns a `TableWriter` that commits batches with checkpoints)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Literal, Protocol, runtime_checkable

import pyarrow as pa

from service.core.batch import Batch, Checkpoint, NativeFormat, Position, Reject
from service.core.schema import ForeignKey, TableSchema

# Called by a TableWriter once its batch is ready to commit, with the rows the target refused
# (now rejects): waits for the batch's turn and returns the checkpoint the commit must record.
CommitTurn = Callable[[Sequence[Reject]], Awaitable[Checkpoint]]
# Rows the target refuses: find them and load the rest, reject the whole batch, or fail the run.
OnRefusal = Literal["reject", "skip_batch", "fail"]


class Source(Protocol):
    kind: str

    async def check(self) -> None:
        """Connect (or open), raising a clear EndpointError when that is not possible."""
        ...

    async def list_tables(self) -> list[str]:
        """Every table, collection or file this source has, in a stable order."""
        ...

    async def describe(self, table: str) -> TableSchema:
        """Columns, types and key of `table`; raises UnknownTable when it does not exist."""
        ...

    async def count(self, table: str, *, exact: bool = True) -> int:
        """Number of rows; `exact=False` allows a cheap estimate (e.g. a large CSV file)."""
        ...

    def native_formats(self, schema: TableSchema) -> frozenset[NativeFormat]:
        """Payload formats this source can emit for `schema` without decoding rows."""
        ...

    def read(
        self,
        schema: TableSchema,
        *,
        after: Position,
        start_row: int,
        batch_size: int,
        native: NativeFormat | None,
    ) -> AsyncGenerator[Batch, None]:
        """Batches of the rows strictly after `after`, in read order, each with its `upto`;
        `start_row` is the row number the first of them gets (for reject reports).

        Reads lazily: nothing is read before the consumer asks for the next batch, so a caller
        that stops asking stops the reading. Re-reading from the same position gives the same rows.
        """
        ...

    async def close(self) -> None: ...


class TableWriter(Protocol):
    """Writes one table of one migration. `write` is safe to call from `max_writers` tasks at
    once; each batch is committed atomically together with its checkpoint's position, in turn."""

    schema: TableSchema
    created: bool
    max_writers: int
    on_refusal: OnRefusal

    def native_formats(self, source: TableSchema) -> frozenset[NativeFormat]:
        """Payload formats this writer accepts from `source` as they are."""
        ...

    async def reconcile(self, stored: Checkpoint | None) -> Checkpoint | None:
        """Given the state store's checkpoint, return the exact one to resume from and make the
        target agree with it (e.g. truncate a partial file). None means start from the top."""
        ...

    async def write(self, batch: Batch, turn: CommitTurn) -> Checkpoint:
        """Stage `batch`, call `turn(refused)` with the rows the target refused, then commit the
        remaining rows and the checkpoint together."""
        ...

    async def finish(self) -> list[str]:
        """All batches are committed: make the result visible/complete (rename, the key, the
        source's indexes on a table the run created). Returns warnings for the run's log — an
        index the data does not allow (e.g. a unique one over duplicates) is one, not an error."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class KeyedWriter(Protocol):
    """A writer that can also replace rows by key and delete them (incremental sync)."""

    upsert: bool  # rows replace those with the same key
    soft_delete: str | None  # deletes set this flag column instead; writes clear it

    async def delete_keys(self, keys: pa.RecordBatch) -> int:
        """Delete (or flag) the rows with these keys (key columns only); returns how many changed."""
        ...

    async def prepare_sync(self) -> None:
        """Before a sync writes: the `soft_delete` column when missing, and whatever the target
        keeps for a rollback (made once, not by concurrent batches)."""
        ...

    async def flush(self) -> None:
        """Make every commit so far durable (before a change-capture slot moves past them)."""
        ...


class Sink(Protocol):
    kind: str

    async def check(self) -> None:
        """Connect (or open), raising a clear EndpointError when that is not possible."""
        ...

    async def open_table(self, source: TableSchema, target_name: str, migration_id: str) -> TableWriter:
        """Find or create the target table for `source` and return its writer."""
        ...

    async def rollback(self, migration_id: str) -> list[str]:
        """Return the target to its state before migration `migration_id`: drop what it created,
        delete what it inserted, restore what it overwrote. Safe to run again (an interrupted
        rollback finishes). Returns what was done, for the log."""
        ...

    def column_types(self, source: TableSchema) -> list[tuple[str, str]]:
        """(column, the target's type for it) of a table this sink would create for `source`."""
        ...

    async def probe_write(self, source: TableSchema, data: pa.RecordBatch) -> float:
        """Seconds the target takes to store `data` (rows of `source`) somewhere that leaves no
        trace — a temporary table, collection or file, dropped after: the plan's write speed."""
        ...

    async def add_foreign_keys(self, table: str, keys: Sequence[ForeignKey],
                               migration_id: str) -> list[tuple[str, str]]:
        """Once every table is loaded: add `keys` (tables and columns named as in the target) to
        target `table` if migration `migration_id` created it (a table the user made is left as it
        is). Each is validated; one the rows break (orphans) stays unvalidated. Returns what the
        run should log, as (level, message) (targets that have no such thing say so)."""
        ...

    async def close(self) -> None: ...

