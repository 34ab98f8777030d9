"""PostgreSQL types <-> Arrow types, losslessly.

Reading: a column's Arrow type is what its COPY text can be parsed into exactly; types with no
exact Arrow counterpart (uuid, json, interval, arrays, unconstrained numeric, ...) travel as their
PostgreSQL text form, which writes back into the same type unchanged.
Writing: Arrow types map to the PostgreSQL type a new table gets; pgpq encodes the binary COPY
for the types listed in `_BINARY_ENCODABLE`.
"""

from __future__ import annotations

import re

import pyarrow as pa

_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")

_SIMPLE: dict[str, pa.DataType] = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "date": pa.date32(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "time without time zone": pa.time64("us"),
    "bytea": pa.binary(),
    "name": pa.string(),
    '"char"': pa.string(),
}


def arrow_type(pg_type: str) -> pa.DataType:
    """The Arrow type a column of `pg_type` (as `format_type` prints it) is read into."""
    if pg_type in _SIMPLE:
        return _SIMPLE[pg_type]
    if pg_type.startswith(("character varying", "character(")) or pg_type == "character":
        return pa.string()
    m = _NUMERIC.match(pg_type)
    if m and int(m.group(1)) <= 38:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    return pa.string()  # exact text form: uuid, json(b), interval, arrays, numeric, inet, ...


def pg_type_for(arrow: pa.DataType) -> str:
    """The PostgreSQL type a new column gets for values of `arrow` type."""
    if pa.types.is_boolean(arrow):
        return "boolean"
    if pa.types.is_int8(arrow) or pa.types.is_int16(arrow) or pa.types.is_uint8(arrow):
        return "smallint"
    if pa.types.is_int32(arrow) or pa.types.is_uint16(arrow):
        return "integer"
    if pa.types.is_integer(arrow):
        return "bigint" if not pa.types.is_uint64(arrow) else "numeric(20,0)"
    if pa.types.is_float32(arrow) or pa.types.is_float16(arrow):
        return "real"
    if pa.types.is_floating(arrow):
        return "double precision"
    if pa.types.is_decimal(arrow):
        return f"numeric({arrow.precision},{arrow.scale})"
    if pa.types.is_timestamp(arrow):
        return "timestamp with time zone" if arrow.tz else "timestamp without time zone"
    if pa.types.is_date(arrow):
        return "date"
    if pa.types.is_time(arrow):
        return "time without time zone"
    if pa.types.is_duration(arrow):
        return "interval"
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow) or pa.types.is_fixed_size_binary(arrow):
        return "bytea"
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return pg_type_for(arrow.value_type) + "[]"
    if pa.types.is_struct(arrow) or pa.types.is_map(arrow):
        return "jsonb"
    return "text"


def binary_encodable(pg_type: str, arrow: pa.DataType) -> bool:
    """Whether pgpq's binary encoding of `arrow` values is exactly what a `pg_type` column reads."""
    if pg_type == "jsonb":
        return bool(pa.types.is_string(arrow))
    expected = arrow_type(pg_type)
    if pg_type in ("text", "name") or pg_type.startswith(("character varying", "character")):
        return bool(pa.types.is_string(arrow))
    if pg_type == '"char"':
        return False
    if pa.types.is_string(expected):
        return False  # travels as text: needs the server's parser
    return bool(expected == arrow)
