"""A folder of CSV files (or one file) as a source; positions are byte offsets."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator
from pathlib import Path

import pyarrow as pa

from service.connectors.csv.dialect import CsvOptions, table_path
from service.connectors.csv.reader import Block, CsvFile
from service.core.batch import Batch, NativeFormat, Position, Reject
from service.core.errors import EndpointError, UnknownTable
from service.core.schema import Column, TableSchema
from service.core.urls import EndpointUrl


class CsvSource:
    kind = "csv"

    def __init__(self, url: EndpointUrl, *, options: CsvOptions | None = None) -> None:
        assert url.path is not None
        self.url = url
        self.root: Path = url.path
        self.options = options or CsvOptions()

    async def check(self) -> None:
        if not self.root.exists():
            raise EndpointError(f"CSV source {self.root} does not exist")

    async def list_tables(self) -> list[str]:
        await self.check()
        if self.root.is_file():
            return [self.root.stem]
        return sorted(p.stem for p in self.root.glob("*.csv") if p.is_file())

    def _file(self, table: str) -> CsvFile:
        if self.root.suffix.lower() == ".csv" and table != self.root.stem:
            raise UnknownTable(f"CSV source {self.root.name} holds only table {self.root.stem!r}, not {table!r}")
        return CsvFile(table_path(self.root, table), table, self.options)

    async def describe(self, table: str) -> TableSchema:
        f = self._file(table)
        await f.open()
        overrides = dict(self.options.types.get(table, {}))
        unknown = [c for c in overrides if c not in f.columns]
        if unknown:
            raise UnknownTable(f"csv.types.{table} names column(s) {', '.join(unknown)} not in {f.path.name}")
        inferred: dict[str, pa.DataType] = {}
        async for block in f.blocks(None):
            first = bytes(block.data)
            head = _head(first, self.options.sample_rows)
            head = head[: f.last_row_end(head)] or first
            sample, _ = await asyncio.to_thread(f.parse, head, None, 1)
            inferred = {name: _normalise(sample.schema.field(name).type) for name in f.columns}
            break
        cols = tuple(
            Column(name, overrides.get(name, inferred.get(name, pa.string())), True, None) for name in f.columns
        )
        return TableSchema(name=table, columns=cols, key=(), native_kind=self.kind)

    async def count(self, table: str, *, exact: bool = True) -> int:
        """Rows in the file; with `exact=False` an estimate from the first block's row size."""
        f = self._file(table)
        await f.open()
        size = f.data_path.stat().st_size - f.data_start
        as_text = dict.fromkeys(f.columns, pa.string())
        n = 0
        async with contextlib.aclosing(f.blocks(None)) as blocks:
            async for block in blocks:
                if not exact and block.end - block.start < size:
                    lines = bytes(block.data).count(b"\n")  # a newline inside quotes only skews it
                    return round(size * lines / (block.end - block.start))
                # Exact: the same parser as the read, so quoting, blank and ragged lines count alike.
                rows, rejects = await asyncio.to_thread(f.parse, block.data, as_text, 1)
                n += rows.num_rows + len(rejects)
        return n

    def native_formats(self, schema: TableSchema) -> frozenset[NativeFormat]:
        return frozenset()

    async def read(
        self,
        schema: TableSchema,
        *,
        after: Position,
        start_row: int,
        batch_size: int,
        native: NativeFormat | None,
    ) -> AsyncGenerator[Batch, None]:
        f = self._file(schema.name)
        await f.open()
        if f.columns != schema.column_names:
            raise EndpointError(f"the columns of {f.path.name} changed since the plan was made")
        types = {c.name: c.type for c in schema.columns}
        # Position: [byte offset of a block, rows of it already taken].
        block_at, skip = (int(str(after[0])), int(str(after[1]))) if isinstance(after, list) and len(after) == 2 else (None, 0)
        seq, row = 0, start_row
        async with contextlib.aclosing(f.blocks(block_at)) as blocks:
            async for block in blocks:
                # Rows are numbered from the block's first row (the `skip` rows before a resume included).
                table, rejects = await asyncio.to_thread(_parse_typed, f, block.data, types, row - skip)
                for batch in _split(schema, block, table, rejects, batch_size, skip, seq, row):
                    yield batch
                    seq, row = seq + 1, row + batch.rows_read
                skip = 0

    async def close(self) -> None:
        return None


def _split(schema: TableSchema, block: Block, table: pa.Table, rejects: list[Reject], batch_size: int, skip: int,
           seq: int, row: int) -> list[Batch]:
    """The batches of one parsed block, without its first `skip` rows (taken before a resume).
    A batch's position is [block start, rows of the block taken]; the block's last batch ends at
    [next block start, 0]. Ragged rows of the block travel, as rejects, with its last batch."""
    out: list[Batch] = []
    numbers = _data_numbers(row - skip, table.num_rows, rejects) if rejects else None
    parts = [b for b in table.to_batches(max_chunksize=batch_size) if b.num_rows]
    if not parts:
        parts = [pa.RecordBatch.from_pylist([], schema=schema.arrow_schema())] if rejects and not skip else []
    taken = 0
    for i, data in enumerate(parts):
        taken += data.num_rows
        if data.num_rows and taken <= skip:
            continue
        if taken - data.num_rows < skip:
            data = data.slice(skip - (taken - data.num_rows))
        last = i == len(parts) - 1
        mine = rejects if last else []
        upto: Position = [block.end, 0] if last else [block.start, taken]
        mine_numbers = None if numbers is None else numbers.slice(taken - data.num_rows, data.num_rows)
        out.append(Batch(seq=seq, table=schema.name, upto=upto, first_row=row, data=data,
                         rows_read=data.num_rows + len(mine), rejects=mine, numbers=mine_numbers))
        seq, row = seq + 1, row + data.num_rows + len(mine)
    return out


def _data_numbers(first: int, rows: int, ragged: list[Reject]) -> pa.Array:
    """The row numbers of a block's `rows` parsed rows, its first row numbered `first`: the
    numbers its ragged rows (rejects) do not take."""
    taken = {r.row for r in ragged}
    numbers = [n for n in range(first, first + rows + len(ragged)) if n not in taken]
    return pa.array(numbers[:rows], pa.int64())


_BAD_COLUMN = re.compile(r"In CSV column #(\d+)")


def _parse_typed(f: CsvFile, block: bytes | memoryview, types: dict[str, pa.DataType], row: int) -> tuple[pa.Table, list[Reject]]:
    """Parse `block` into `types`. A column holding a value that does not fit its type is read as
    text instead, so that the stage's cast turns exactly the offending rows into rejects."""
    types = dict(types)
    while True:
        try:
            return f.parse(block, types, row)
        except pa.ArrowInvalid as exc:
            m = _BAD_COLUMN.search(str(exc))
            names = list(types)
            if m is None or int(m.group(1)) >= len(names) or types[names[int(m.group(1))]] == pa.string():
                if all(t == pa.string() for t in types.values()):
                    raise
                types = dict.fromkeys(types, pa.string())
                continue
            types[names[int(m.group(1))]] = pa.string()


def _normalise(t: pa.DataType) -> pa.DataType:
    """Inferred types, made uniform: microsecond timestamps, text for all-null columns."""
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz=t.tz)
    if pa.types.is_null(t):
        return pa.string()
    return t


def _head(block: bytes, rows: int) -> bytes:
    """About the first `rows` lines of `block` (a type-inference sample)."""
    end = 0
    for _ in range(rows):
        nxt = block.find(b"\n", end)
        if nxt < 0:
            return block
        end = nxt + 1
    return block[:end]
