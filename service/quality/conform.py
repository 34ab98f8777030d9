"""The stage that makes each batch fit its target table, vectorized.

Columns are cast to the target's types with pyarrow; when a cast fails, bisection finds exactly
the rows that cannot convert (cost O(bad · log n) casts), and those rows become rejects naming
the column, the value and the reason. NULLs in NOT NULL target columns are rejects too. Only
rejected rows ever become Python objects.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc

from service.core.batch import Batch, NativePayload, Reject
from service.core.errors import InvalidInput
from service.core.schema import TableSchema
from service.quality.rows import Rows, failing, flags

_ZONED = r"\d:\d\d(?::\d\d(?:\.\d+)?)?\s*(?:Z|[+-]\d\d(?::?\d\d)?)$"
CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


def cast(array: pa.Array, to: pa.DataType) -> pa.Array:
    """`array` as `to`. Text without a UTC offset going into a zoned timestamp is read as UTC, as
    PostgreSQL reads it in the migrator's sessions (TimeZone=UTC)."""
    try:
        return pc.cast(array, to)
    except CAST_ERRORS:
        if not (pa.types.is_timestamp(to) and to.tz and pa.types.is_string(array.type)):
            raise
        zoned = pc.match_substring_regex(array, _ZONED)
        with_zone = pc.cast(pc.if_else(zoned, array, pa.scalar(None, array.type)), to)
        naive = pc.cast(pc.if_else(zoned, pa.scalar(None, array.type), array), pa.timestamp(to.unit))
        return pc.if_else(zoned, with_zone, pc.assume_timezone(naive, to.tz))


def failing_casts(array: pa.Array, to: pa.DataType) -> list[int]:
    """Indices of the values of `array` that do not cast to `to`."""
    return [i for i, _ in failing(partial(cast, to=to), array, CAST_ERRORS)]


class ConformStage:
    """Casts batches of `source` columns to the types of the `target` table."""

    def __init__(self, source: TableSchema, target: TableSchema) -> None:
        self.source = source
        self.target = target
        self.columns = source.column_names
        by_name = {c.name: c for c in target.columns}  # one pass: tables may have thousands of columns
        self.types = {c: by_name[c].type for c in self.columns}
        self.required = {c for c in self.columns if not by_name[c].nullable}
        checked: set[tuple[pa.DataType, pa.DataType]] = set()
        for column in source.columns:
            c, from_type = column.name, column.type
            if (from_type, self.types[c]) in checked:
                continue
            try:
                pc.cast(pa.array([None], from_type), self.types[c])
            except CAST_ERRORS:
                raise InvalidInput(
                    f"column {source.name}.{c} ({from_type}) cannot be converted to the target's type "
                    f"{by_name[c].native_type or self.types[c]}"
                ) from None
            checked.add((from_type, self.types[c]))

    async def __call__(self, batch: Batch) -> Batch:
        if isinstance(batch.data, NativePayload) or self._fits(batch.data):
            return batch
        return await asyncio.to_thread(self.conform, batch)

    def _fits(self, data: pa.RecordBatch) -> bool:
        """Already of the target's types, with no NULL where the target forbids one (O(columns))."""
        return data.schema.names == self.columns and all(
            data.column(i).type == self.types[name] and not (name in self.required and data.column(i).null_count)
            for i, name in enumerate(self.columns)
        )

    def conform(self, batch: Batch) -> Batch:
        assert isinstance(batch.data, pa.RecordBatch)
        rows = self.step(Rows.of(batch.table, batch.data, batch.first_row, self.source.key, batch.numbers))
        return replace(batch, data=rows.data, rejects=[*batch.rejects, *rows.rejects], numbers=rows.numbers)

    def step(self, rows: Rows) -> Rows:
        """The quality step: `rows` cast to the target's types, rows that cannot be rejected."""
        data = rows.data
        bad: dict[int, Reject] = {}
        arrays: list[pa.Array] = []
        for name in self.columns:
            array = data.column(name)
            to = self.types[name]
            if array.type != to:
                try:
                    array = cast(array, to)
                except CAST_ERRORS:
                    for i in failing_casts(array, to):
                        value = array[i].as_py()
                        bad.setdefault(i, rows.make_reject(i, name, value, "type",
                                                           f"cannot convert {value!r} to {self._type_name(name)}"))
                    array = cast(pc.if_else(flags(len(array), bad, value=False), array, pa.scalar(None, array.type)), to)
            if name in self.required and array.null_count:
                for i in pc.indices_nonzero(pc.is_null(array)).to_pylist():
                    bad.setdefault(i, rows.make_reject(i, name, None, "required",
                                                       f"{name} is required (NOT NULL in the target)"))
            arrays.append(array)
        out = pa.RecordBatch.from_arrays(arrays, schema=pa.schema([pa.field(c, self.types[c]) for c in self.columns]))
        return rows.with_data(out).remove(bad)

    def _type_name(self, column: str) -> str:
        return self.target.column(column).native_type or str(self.types[column])
