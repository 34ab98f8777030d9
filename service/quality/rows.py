"""Rows on their way through the quality steps (transforms, rules, dedupe, conform).

A step is `Callable[[Rows], Rows]`: synchronous and vectorized over whole columns
(`pyarrow.compute`); only the rows it rejects become Python objects. `Rows` keeps, next to the
data, each row's number in the source's read order (so a reject names the right row however
many rows earlier steps removed) and the table's key columns (so it names the key too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, Self, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from service.core.batch import Reject


@dataclass(frozen=True)
class Rows:
    table: str
    data: pa.RecordBatch
    numbers: pa.Array  # int64: the source row number of each row of `data`
    key: tuple[str, ...] = ()
    rejects: tuple[Reject, ...] = field(default=())

    @classmethod
    def of(cls, table: str, data: pa.RecordBatch, first_row: int, key: Sequence[str] = (),
           numbers: pa.Array | None = None) -> Rows:
        """`numbers`: each row's source row number, when they are not first_row, first_row + 1, …"""
        if numbers is None:
            numbers = pa.array(range(first_row, first_row + data.num_rows), pa.int64())
        return cls(table, data, numbers, tuple(key))

    def with_data(self, data: pa.RecordBatch) -> Rows:
        """The same rows with changed columns (same number of rows, same order)."""
        assert data.num_rows == self.data.num_rows
        return replace(self, data=data)

    def reject(self, bad: pa.Array, column: str | None, rule: str,
               message: Callable[[object], str], value_of: pa.Array | None = None) -> Rows:
        """Remove the rows where boolean `bad` is true, as rejects of `rule` naming `column`;
        `message(value)` says why (value from `value_of`, default the column). Nulls in `bad`
        count as false."""
        bad = pc.fill_null(bad, False)
        indices = pc.indices_nonzero(bad).to_pylist()
        if not indices:
            return self
        values = value_of if value_of is not None else (self.data.column(column) if column else None)
        new = []
        for i in indices:
            value = None if values is None else values[i].as_py()
            new.append(self.make_reject(i, column, value, rule, message(value)))
        keep = pc.invert(bad)
        return replace(self, data=self.data.filter(keep), numbers=self.numbers.filter(keep),
                       rejects=(*self.rejects, *new))

    def reject_rows(self, indices: Iterable[int], column: str | None, rule: str,
                    message: Callable[[object], str]) -> Rows:
        """Like `reject`, by row indices."""
        return self.reject(flags(self.data.num_rows, indices), column, rule, message)

    def remove(self, found: dict[int, Reject]) -> Rows:
        """Remove the rows at the indices of `found`, whose rejects (made with `make_reject`) say why."""
        if not found:
            return self
        keep = flags(self.data.num_rows, found, value=False)
        return replace(self, data=self.data.filter(keep), numbers=self.numbers.filter(keep),
                       rejects=(*self.rejects, *(found[i] for i in sorted(found))))

    def make_reject(self, i: int, column: str | None, value: object, rule: str, message: str) -> Reject:
        """The reject of row `i` (its source row number and key)."""
        text = None if value is None else str(value)[:1000]
        return Reject(self.table, int(self.numbers[i].as_py()), self.key_at(i), column, text, rule, message)

    def key_at(self, i: int) -> str | None:
        if not self.key or not all(k in self.data.schema.names for k in self.key):
            return None
        return ",".join(str(self.data.column(k)[i].as_py()) for k in self.key)


Step = Callable[[Rows], Rows]
_ZERO = pa.scalar(0, pa.uint8())


def flags(n: int, indices: Iterable[int], *, value: bool = True) -> pa.BooleanArray:
    """A boolean array of `n` rows, `value` at `indices` and the opposite elsewhere: built in a
    byte buffer, so only the listed rows cost Python work."""
    buffer = bytearray(b"\x00" if value else b"\x01") * n
    for i in indices:
        buffer[i] = 1 if value else 0
    return pc.not_equal(pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(buffer)]), _ZERO)


class _Sliceable(Protocol):
    def __len__(self) -> int: ...
    def slice(self, offset: int, length: int | None = None) -> Self: ...


_T = TypeVar("_T", bound=_Sliceable)


def failing(convert: Callable[[_T], object], values: _T,
            errors: tuple[type[Exception], ...] = (pa.ArrowInvalid,)) -> list[tuple[int, str]]:
    """The rows of `values` (an array or a batch) on which `convert` raises one of `errors`, each
    with its error, found by bisection: O(bad · log n) calls."""
    try:
        convert(values)
        return []
    except errors as exc:
        n = len(values)
        if n == 1:
            return [(0, str(exc))]
    mid = n // 2
    head = failing(convert, values.slice(0, mid), errors)
    tail = failing(convert, values.slice(mid), errors)
    return head + [(mid + i, error) for i, error in tail]
