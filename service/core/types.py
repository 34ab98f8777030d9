"""The spec's type names (`string, integer, float, decimal(p,s), boolean, date, timestamp, json,
binary, uuid, objectid`, and `[type]` arrays) as Arrow types."""

from __future__ import annotations

import re

import pyarrow as pa

_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_SIMPLE = {
    "string": pa.string(),
    "text": pa.string(),
    "integer": pa.int64(),
    "int": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
    "binary": pa.binary(),
    "uuid": pa.string(),
    "objectid": pa.string(),
}
NAMES = sorted(_SIMPLE) + ["decimal(p,s)", "[type]"]


def arrow_type_from_spec(name: str) -> pa.DataType:
    """Raises ValueError naming the accepted types when `name` is not one of them."""
    key = name.strip().lower()
    if key in _SIMPLE:
        return _SIMPLE[key]
    m = _DECIMAL.match(key)
    if m and 1 <= int(m.group(1)) <= 38 and int(m.group(2)) <= int(m.group(1)):
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    if key.startswith("[") and key.endswith("]"):
        return pa.list_(arrow_type_from_spec(key[1:-1]))
    raise ValueError(f"unknown type {name!r}; expected one of {', '.join(NAMES)}")


_SPEC_NAMES = (
    (pa.types.is_integer, "integer"),
    (pa.types.is_floating, "float"),
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_date, "date"),
    (pa.types.is_string, "string"),
    (pa.types.is_large_string, "string"),
    (pa.types.is_binary, "binary"),
    (pa.types.is_large_binary, "binary"),
    (pa.types.is_fixed_size_binary, "binary"),
)


def spec_type_name(t: pa.DataType) -> str:
    """The spec's name for an Arrow type (what plans show)."""
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"[{spec_type_name(t.value_type)}]"
    return next((name for test, name in _SPEC_NAMES if test(t)), str(t))
