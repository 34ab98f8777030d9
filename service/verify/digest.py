"""Order-independent digests of rows, and the per-key records that name what differs.

A row's hash combines the 64-bit hashes (service.core.hashing) of its values' canonical bytes in
column order; a table's digest is the row count and the sum of the row hashes modulo 2^64 —
the same whatever order the rows come in. Two sides with equal digests hold the same multiset of
rows, but for a chance of about 2^-64.

To name the rows that differ, each side's (key hash, row hash, key text) go to `Spill`: files
partitioned by key hash (Arrow IPC in a temporary folder), so that comparing them takes the
memory of one partition at a time, whatever the table's size.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from service.core.hashing import GOLDEN, U64, as_bytes, hash_bytes, hash_keys, mix, u

_NULL = u(0x5BD1E9955BD1E995)  # the hash of a NULL (a value's hash is never this but by chance)
PARTITION_ROWS = 1_000_000  # rows of one side per partition file, about


def canonical(column: pa.Array, json: bool = False) -> pa.Array:
    """The values of `column` as the bytes that are hashed: text for numbers, dates, …, the bytes
    themselves for binaries; JSON (documents, lists, structs) with sorted keys and no spaces, so
    that `{"b":1, "a":2}` and `{"a": 2, "b": 1}` are one value."""
    if not (json or pa.types.is_nested(column.type)):
        return column
    text = []
    for v in column.to_pylist():
        if v is not None and json and isinstance(v, str):
            try:
                v = orjson.loads(v)
            except orjson.JSONDecodeError:
                pass  # not JSON after all: compared as the text it is
        text.append(None if v is None else orjson.dumps(v, option=orjson.OPT_SORT_KEYS, default=str).decode())
    return pa.array(text, pa.string())


def row_hashes(data: pa.RecordBatch, columns: Sequence[str], json_columns: frozenset[str] = frozenset()) -> pa.Array:
    """One uint64 per row over `columns` of `data` (NULLs included, as a value of their own)."""
    acc: pa.Array | None = None
    for name in columns:
        h = pc.fill_null(hash_bytes(as_bytes(canonical(data.column(name), name in json_columns))), _NULL)
        acc = h if acc is None else mix(pc.add(pc.multiply(acc, GOLDEN), h))
    if acc is None:
        return pa.array([0] * data.num_rows, U64)
    return acc


def key_texts(data: pa.RecordBatch, key: Sequence[str]) -> pa.Array:
    """Each row's key as text (values joined by `,`), as rejects and reports name keys."""
    parts = [pc.cast(data.column(k), pa.string()) for k in key]
    if len(parts) == 1:
        return pc.fill_null(parts[0], "NULL")
    return pc.binary_join_element_wise(*[pc.fill_null(p, "NULL") for p in parts], ",")


@dataclass
class Digest:
    rows: int = 0
    total: int = 0  # the sum of the row hashes, modulo 2^64

    def add(self, hashes: pa.Array) -> None:
        self.rows += len(hashes)
        if len(hashes):
            self.total = (self.total + int(pc.sum(hashes).as_py() or 0)) % (1 << 64)  # Arrow's sum wraps too


_SCHEMA = pa.schema([("k", U64), ("r", U64), ("key", pa.string())])


@dataclass
class Spill:
    """One side's (key hash, row hash, key text), partitioned by key hash into files."""

    folder: Path
    side: str
    partitions: int
    _writers: list[ipc.RecordBatchFileWriter] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._writers = [ipc.new_file(str(self.path(p)), _SCHEMA) for p in range(self.partitions)]

    def path(self, partition: int) -> Path:
        return self.folder / f"{self.side}-{partition}.arrow"

    def add(self, data: pa.RecordBatch, key: Sequence[str], hashes: pa.Array) -> None:
        k = pc.fill_null(hash_keys([data.column(c) for c in key]), _NULL)
        batch = pa.record_batch([k, hashes, key_texts(data, key)], schema=_SCHEMA)
        if self.partitions == 1:
            self._writers[0].write_batch(batch)
            return
        part = pc.bit_wise_and(k, u(self.partitions - 1))
        for p in range(self.partitions):
            chosen = batch.filter(pc.equal(part, u(p)))
            if chosen.num_rows:
                self._writers[p].write_batch(chosen)

    def close(self) -> None:
        for w in self._writers:
            w.close()

    def read(self, partition: int) -> pa.Table:
        with ipc.open_file(str(self.path(partition))) as f:
            return f.read_all()


def partitions_for(rows: int) -> int:
    """A power of two: about PARTITION_ROWS rows of one side per partition."""
    n = 1
    while n * PARTITION_ROWS < rows:
        n *= 2
    return n


@dataclass
class Differences:
    missing: list[str] = field(default_factory=list)  # keys in the source (minus rejects), not in the target
    extra: list[str] = field(default_factory=list)  # keys in the target, not in the source
    different: list[str] = field(default_factory=list)  # keys on both sides whose rows differ
    missing_count: int = 0
    extra_count: int = 0
    different_count: int = 0


def compare(source: Spill, target: Spill, limit: int) -> Differences:
    """Keys missing from, extra in and different in the target: the first `limit` of each in key
    text order, and how many in all. One partition in memory at a time."""
    found = Differences()
    missing: list[str] = []
    extra: list[str] = []
    different: list[str] = []
    for p in range(source.partitions):
        s, t = source.read(p), target.read(p)
        joined = s.join(t, keys="k", join_type="full outer", left_suffix="_s", right_suffix="_t")
        r_s, r_t = joined.column("r_s"), joined.column("r_t")
        gone = pc.and_(pc.is_valid(r_s), pc.is_null(r_t))
        new = pc.and_(pc.is_null(r_s), pc.is_valid(r_t))
        changed = pc.fill_null(pc.not_equal(r_s, r_t), False)
        found.missing_count += int(pc.sum(pc.cast(gone, pa.int64())).as_py() or 0)
        found.extra_count += int(pc.sum(pc.cast(new, pa.int64())).as_py() or 0)
        found.different_count += int(pc.sum(pc.cast(changed, pa.int64())).as_py() or 0)
        missing += _first(joined.filter(gone).column("key_s"), limit)
        extra += _first(joined.filter(new).column("key_t"), limit)
        different += _first(joined.filter(changed).column("key_s"), limit)
    found.missing, found.extra, found.different = (sorted(missing)[:limit], sorted(extra)[:limit],
                                                   sorted(different)[:limit])
    return found


def _first(keys: pa.ChunkedArray, limit: int) -> list[str]:
    """The first `limit` of `keys` in text order (sorted by Arrow: only those become Python)."""
    if not len(keys):
        return []
    return [str(k) for k in keys.take(pc.sort_indices(keys).slice(0, limit)).to_pylist()]


class Workspace:
    """A temporary folder for spills, removed on exit."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="migrator-verify-"))
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
