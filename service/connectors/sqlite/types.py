"""SQLite type names <-> Arrow types, and identifier quoting."""

from __future__ import annotations

import re

import pyarrow as pa

from service.core.sqlite_thread import SqliteDatabase

__all__ = ["SqliteDatabase", "arrow_type", "declared_type", "quote_ident"]

_DECIMAL = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def arrow_type(declared: str) -> pa.DataType:
    """Arrow type for a column declared as `declared` (SQLite affinity rules, plus the names this
    tool writes: BOOLEAN, DATE, TIMESTAMP, DECIMAL TEXT(p,s), ...)."""
    t = declared.upper()
    if "INT" in t:
        return pa.int64()
    if t.startswith(("DECIMAL", "NUMERIC")):
        m = _DECIMAL.search(t)
        if m and 1 <= int(m.group(1)) <= 38:
            return pa.decimal128(int(m.group(1)), int(m.group(2)))
        return pa.string()
    if t.startswith("BOOL"):
        return pa.bool_()
    if t.startswith("TIMESTAMPTZ"):
        return pa.timestamp("us", tz="UTC")
    if t.startswith(("TIMESTAMP", "DATETIME")):
        return pa.timestamp("us")
    if t == "DATE":
        return pa.date32()
    if any(w in t for w in ("REAL", "FLOA", "DOUB")):
        return pa.float64()
    if "BLOB" in t:
        return pa.binary()
    return pa.string()


def declared_type(arrow: pa.DataType) -> str:
    """Declared type of a new column for `arrow` values; round-trips through `arrow_type`."""
    if pa.types.is_boolean(arrow):
        return "BOOLEAN"
    if pa.types.is_integer(arrow):
        return "INTEGER"
    if pa.types.is_floating(arrow):
        return "REAL"
    if pa.types.is_decimal(arrow):
        # TEXT affinity keeps the exact digits (NUMERIC affinity would turn them into floats).
        return f"DECIMAL TEXT({arrow.precision},{arrow.scale})"
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMPTZ" if arrow.tz else "TIMESTAMP"
    if pa.types.is_date(arrow):
        return "DATE"
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
        return "BLOB"
    return "TEXT"
