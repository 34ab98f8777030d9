"""Which target rows' keys have left the source (`detectDeletes`).

The source's keys are read once, in batches, and kept as a sorted numpy array of their 64-bit
hashes (core.hashing.hash_keys: 8 bytes a row, 80 MB for 10M rows). The target's keys then
stream past it batch by batch; those whose hash is not there are yielded, in the target's own
column names and types, for the writer to delete. Keys are compared as values: the target's are
cast to the source's key types first, so an int4 id in PostgreSQL and an INTEGER in SQLite agree.
A 64-bit collision could only keep a deleted row (never delete a live one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np
import pyarrow as pa

from service.connectors.base import Source
from service.core.errors import InvalidInput
from service.core.hashing import hash_keys
from service.core.schema import TableSchema

KEY_BATCH = 50_000


def _key_only(schema: TableSchema, key: list[str]) -> TableSchema:
    return replace(schema, columns=tuple(schema.column(k) for k in key), indexes=(), foreign_keys=())


def _hashes(data: pa.RecordBatch, key: list[str], types: list[pa.DataType]) -> np.ndarray:
    columns = [data.column(k).cast(t) for k, t in zip(key, types, strict=True)]
    hashes: np.ndarray = hash_keys(columns).to_numpy(zero_copy_only=False)
    return hashes


async def gone_keys(source: Source, schema: TableSchema, target: Source, target_table: str,
                    target_key: list[str] | None = None) -> AsyncIterator[pa.RecordBatch]:
    """Batches of the keys (named as the source's key columns) that the target holds and the
    source no longer has. `target_key`: the target's names of those columns (default the same;
    a MongoDB target holds a one-column key as `_id`)."""
    key = list(schema.key)
    if not key:
        raise InvalidInput(f"detectDeletes: {schema.name} has no primary key to compare by")
    theirs = target_key or key
    types = [schema.column(k).type for k in key]
    parts: list[np.ndarray] = []
    async for batch in source.read(_key_only(schema, key), after=None, start_row=1, batch_size=KEY_BATCH,
                                   native=None):
        assert isinstance(batch.data, pa.RecordBatch)
        parts.append(await asyncio.to_thread(_hashes, batch.data, key, types))
    have = np.sort(np.concatenate(parts)) if parts else np.empty(0, np.uint64)
    target_schema = await target.describe(target_table)
    missing = [k for k in theirs if k not in target_schema.column_names]
    if missing:
        raise InvalidInput(f"detectDeletes: target table {target_table} has no key column(s) {', '.join(missing)}")
    async for batch in target.read(_key_only(target_schema, theirs), after=None, start_row=1, batch_size=KEY_BATCH,
                                   native=None):
        assert isinstance(batch.data, pa.RecordBatch)
        data = batch.data.select(theirs).rename_columns(key)
        hashes = await asyncio.to_thread(_hashes, data, key, types)
        if have.size:
            at = np.minimum(np.searchsorted(have, hashes), have.size - 1)
            gone = have[at] != hashes
        else:
            gone = np.ones(hashes.size, bool)
        if gone.any():
            yield data.filter(pa.array(gone))
