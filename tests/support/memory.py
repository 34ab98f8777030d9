"""In-memory implementations of the connector roles (service/connectors/base.py), for pipeline
mechanics: real `Source` and `TableWriter`s, not mocks. Rows are dicts; positions are row offsets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

import pyarrow as pa

from service.connectors.base import CommitTurn
from service.core.batch import Batch, Checkpoint, NativeFormat, Position
from service.core.errors import UnknownTable
from service.core.schema import Column, TableSchema

Row = dict[str, object]


class ListSource:
    """Tables held as lists of rows. `batches_read` counts the batches handed out so far;
    `fail_at` makes reading the batch with that number (0-based) raise `error`."""

    kind = "memory"

    def __init__(self, tables: dict[str, list[Row]], *, fail_at: int | None = None,
                 error: BaseException | None = None) -> None:
        self.tables = tables
        self.batches_read = 0
        self.fail_at = fail_at
        self.error = error

    async def check(self) -> None:
        return None

    async def list_tables(self) -> list[str]:
        return list(self.tables)

    async def describe(self, table: str) -> TableSchema:
        if table not in self.tables:
            raise UnknownTable(f"no table {table!r} in memory")
        schema = pa.Table.from_pylist(self.tables[table]).schema
        return TableSchema(name=table, columns=tuple(Column(f.name, f.type) for f in schema), native_kind=self.kind)

    async def count(self, table: str) -> int:
        return len(self.tables[table])

    def native_formats(self, schema: TableSchema) -> frozenset[NativeFormat]:
        return frozenset()

    async def read(self, schema: TableSchema, *, after: Position, start_row: int, batch_size: int,
                   native: NativeFormat | None) -> AsyncGenerator[Batch, None]:
        rows = self.tables[schema.name]
        start = after if isinstance(after, int) else 0
        for seq, lo in enumerate(range(start, len(rows), batch_size)):
            await asyncio.sleep(0)  # a real source awaits I/O here
            if self.fail_at is not None and self.batches_read == self.fail_at:
                assert self.error is not None
                raise self.error
            chunk = rows[lo:lo + batch_size]
            self.batches_read += 1
            yield Batch(seq=seq, table=schema.name, upto=lo + len(chunk), first_row=start_row + lo - start,
                        data=pa.RecordBatch.from_pylist(chunk, schema=schema.arrow_schema()), rows_read=len(chunk))

    async def close(self) -> None:
        return None


class ListTableWriter:
    """Commits batches into `rows`, recording each checkpoint in `checkpoints` (in commit order).

    `hold` (set by default) stalls every write before it commits while cleared; `delay(seq)`
    seconds are spent preparing batch `seq`; `fail_on` makes the write of that batch raise `error`.
    """

    def __init__(self, schema: TableSchema, *, max_writers: int = 1, delay: Callable[[int], float] | None = None,
                 fail_on: int | None = None, error: BaseException | None = None) -> None:
        self.schema = schema
        self.created = True
        self.max_writers = max_writers
        self.rows: list[Row] = []
        self.checkpoints: list[Checkpoint] = []
        self.finished = False
        self.hold = asyncio.Event()
        self.hold.set()
        self._delay = delay
        self._fail_on = fail_on
        self._error = error

    def native_formats(self, source: TableSchema) -> frozenset[NativeFormat]:
        return frozenset()

    async def reconcile(self, stored: Checkpoint | None) -> Checkpoint | None:
        return stored

    async def write(self, batch: Batch, turn: CommitTurn) -> Checkpoint:
        await self.hold.wait()
        if self._delay is not None:
            await asyncio.sleep(self._delay(batch.seq))
        if self._fail_on == batch.seq:
            assert self._error is not None
            raise self._error
        checkpoint = await turn(())
        assert isinstance(batch.data, pa.RecordBatch)
        self.rows.extend(batch.data.to_pylist())
        self.checkpoints.append(checkpoint)
        return checkpoint

    async def finish(self) -> None:
        self.finished = True

    async def close(self) -> None:
        return None
