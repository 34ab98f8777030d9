"""Parsing PostgreSQL's COPY CSV output into Arrow, exactly.

The server writes NULL as an unquoted empty field and '' as a quoted one; pyarrow keeps the two
apart with `quoted_strings_can_be_null=False`. bytea arrives as `\\x…` hex and is decoded here.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv

from service.core.schema import TableSchema


def parse_copy_csv(payload: bytes, schema: TableSchema) -> pa.RecordBatch:
    """Rows of a `COPY … TO STDOUT (FORMAT csv)` payload as a RecordBatch of `schema`'s Arrow types."""
    target = schema.arrow_schema()
    if not payload:
        return pa.RecordBatch.from_pylist([], schema=target)
    binary_cols = {f.name for f in target if pa.types.is_binary(f.type)}
    types = {f.name: (pa.string() if f.name in binary_cols else f.type) for f in target}
    table = pacsv.read_csv(
        io.BytesIO(payload),
        read_options=pacsv.ReadOptions(column_names=target.names, use_threads=False, block_size=1 << 26),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
    for name in binary_cols:
        i = table.schema.get_field_index(name)
        values = [None if v is None else bytes.fromhex(v[2:]) for v in table.column(i).to_pylist()]
        table = table.set_column(i, pa.field(name, pa.binary()), pa.array(values, pa.binary()))
    return table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=target)
