"""A folder of CSV files (or one file) as a source; positions are byte offsets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles
import pyarrow as pa

from service.connectors.csv.dialect import CsvOptions, table_path
from service.connectors.csv.reader import CHUNK, CsvFile, row_ends
from service.core.batch import Batch, NativeFormat, Position
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
        unknown = [c for c in overrides if c not in f.names]
        if unknown:
            raise UnknownTable(f"csv.types.{table} names column(s) {', '.join(unknown)} not in {f.path.name}")
        inferred: dict[str, pa.DataType] = {}
        async for block in f.blocks(None, self.options.sample_rows):
            sample, _ = await asyncio.to_thread(f.parse, block.data, None, 1)
            inferred = {name: _normalise(sample.schema.field(name).type) for name in f.names}
            break
        cols = tuple(
            Column(name, overrides.get(name, inferred.get(name, pa.string())), True, None) for name in f.names
        )
        return TableSchema(name=table, columns=cols, key=(), native_kind=self.kind)

    async def count(self, table: str) -> int:
        f = self._file(table)
        await f.open()
        n, tail = 0, b""
        async with aiofiles.open(f.path, "rb") as fh:
            await fh.seek(f.data_start)
            while chunk := await fh.read(CHUNK):
                buf = tail + chunk
                ends = await asyncio.to_thread(row_ends, buf, self.options.quote)
                n += int(ends.size)
                tail = buf[int(ends[-1]):] if ends.size else buf
        return n + (1 if tail.strip() else 0)

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
    ) -> AsyncIterator[Batch]:
        f = self._file(schema.name)
        await f.open()
        if f.names != schema.column_names:
            raise EndpointError(f"the columns of {f.path.name} changed since the plan was made")
        types = {c.name: c.type for c in schema.columns}
        start = after if isinstance(after, int) else None
        seq, row = 0, start_row
        async for block in f.blocks(start, batch_size):
            try:
                table, rejects = await asyncio.to_thread(f.parse, block.data, types, row)
            except pa.ArrowInvalid:
                # A value that does not fit its column's type: hand the batch on as text, so
                # the stage's cast turns exactly the offending rows into rejects.
                table, rejects = await asyncio.to_thread(f.parse, block.data, dict.fromkeys(types, pa.string()), row)
            data = table.combine_chunks().to_batches()
            batch = data[0] if data else pa.RecordBatch.from_pylist([], schema=table.schema)
            rows = batch.num_rows + len(rejects)
            yield Batch(seq=seq, table=schema.name, after=block.start, upto=block.end, first_row=row,
                        data=batch, rows_read=rows, rejects=rejects)
            seq += 1
            row += rows

    async def close(self) -> None:
        return None


def _normalise(t: pa.DataType) -> pa.DataType:
    """Inferred types, made uniform: microsecond timestamps, text for all-null columns."""
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz=t.tz)
    if pa.types.is_null(t):
        return pa.string()
    return t
