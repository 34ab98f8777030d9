"""Arrow columns as the text other systems read back exactly (shared by the CSV writers)."""

from __future__ import annotations

import orjson
import pyarrow as pa


def printable(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with columns a CSV writer cannot print turned into text: binary as `\\x`-hex (the
    form PostgreSQL reads and writes for bytea), nested values as JSON. Other columns untouched."""
    arrays, fields, changed = [], [], False
    for field, array in zip(batch.schema, batch.columns):
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            array = pa.array([None if v is None else "\\x" + v.hex() for v in array.to_pylist()], pa.string())
            field, changed = pa.field(field.name, pa.string()), True
        elif pa.types.is_nested(field.type):
            array = pa.array(
                [None if v is None else orjson.dumps(v, default=str).decode() for v in array.to_pylist()], pa.string()
            )
            field, changed = pa.field(field.name, pa.string()), True
        arrays.append(array)
        fields.append(field)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields)) if changed else batch
