"""Which target rows' keys have left the source (`detectDeletes`).

The source's keys are read once, in batches, and kept as a sorted numpy array of their 64-bit
hashes (core.hashing.hash_keys: 8 bytes a row, 80 MB for 10M rows). The target's keys stream
past it batch by batch (read at the same time as the source's, up to BUFFER_ROWS of them); those whose hash is not there are yielded, in the target's own
column names and types, for the writer to delete. Keys are compared as values: the target's are
cast to the source's key types first, so an int4 id in PostgreSQL and an INTEGER in SQLite agree.
A 64-bit collision could only keep a deleted row (never delete a live one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import replace

import numpy as np
import pyarrow as pa

from service.connectors.base import Source
from service.core.errors import InvalidInput
from service.core.hashing import hash_keys
from service.core.schema import TableSchema

KEY_BATCH = 250_000
BUFFER_ROWS = 4_000_000  # target keys held while the source's are read (ints: about 32 MB)


def _key_only(schema: TableSchema, key: list[str]) -> TableSchema:
    return replace(schema, columns=tuple(schema.column(k) for k in key), indexes=(), foreign_keys=())


def _hashes(data: pa.RecordBatch, key: list[str], types: list[pa.DataType]) -> np.ndarray:
    columns = [data.column(k).cast(t) for k, t in zip(key, types, strict=True)]
    hashes: np.ndarray = hash_keys(columns).to_numpy(zero_copy_only=False)
    return hashes


async def gone_keys(source: Source, schema: TableSchema, target: Source, target_table: str,
                    target_key: list[str] | None = None) -> AsyncGenerator[pa.RecordBatch, None]:
    """Batches of the keys (named as the source's key columns) that the target holds and the
    source no longer has. `target_key`: the target's names of those columns (default the same;
    a MongoDB target holds a one-column key as `_id`).

    Both sides are read at once: the target's first BUFFER_ROWS keys wait in memory until the
    source's hashes are complete."""
    key = list(schema.key)
    if not key:
        raise InvalidInput(f"detectDeletes: {schema.name} has no primary key to compare by")
    theirs = target_key or key
    types = [schema.column(k).type for k in key]
    target_schema = await target.describe(target_table)
    missing = [k for k in theirs if k not in target_schema.column_names]
    if missing:
        raise InvalidInput(f"detectDeletes: target table {target_table} has no key column(s) {', '.join(missing)}")

    async def source_hashes() -> np.ndarray:
        parts: list[np.ndarray] = []
        async for batch in source.read(_key_only(schema, key), after=None, start_row=1, batch_size=KEY_BATCH,
                                       native=None):
            assert isinstance(batch.data, pa.RecordBatch)
            parts.append(await asyncio.to_thread(_hashes, batch.data, key, types))
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.uint64)

    def gone(have: np.ndarray, data: pa.RecordBatch) -> pa.RecordBatch | None:
        hashes = _hashes(data, key, types)
        if not have.size:
            return data
        order = np.argsort(hashes)  # sorted needles: the search walks `have` in order
        at = np.minimum(np.searchsorted(have, hashes[order]), have.size - 1)
        missing = np.empty(hashes.size, bool)
        missing[order] = have[at] != hashes[order]
        return data.filter(pa.array(missing)) if missing.any() else None

    reading = asyncio.ensure_future(source_hashes())
    waiting: list[pa.RecordBatch] = []
    buffered = 0
    try:
        async for batch in target.read(_key_only(target_schema, theirs), after=None, start_row=1,
                                       batch_size=KEY_BATCH, native=None):
            assert isinstance(batch.data, pa.RecordBatch)
            data = batch.data.select(theirs).rename_columns(key)
            if not reading.done() and buffered < BUFFER_ROWS:
                waiting.append(data)
                buffered += data.num_rows
                continue
            have = await reading
            for held in [*waiting, data]:
                if (found := await asyncio.to_thread(gone, have, held)) is not None:
                    yield found
            waiting, buffered = [], 0
        have = await reading
        for held in waiting:
            if (found := await asyncio.to_thread(gone, have, held)) is not None:
                yield found
    finally:
        if not reading.done():
            reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
