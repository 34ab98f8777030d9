"""Excel-safe text (CSV exports, `csv.excelSafe`): a cell a spreadsheet would run as a formula —
one starting with = + @, TAB or CR, or with - not followed by a number — gets a leading '. The
rule is on values, so negative numbers never change, whatever the column's declared type."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

RISKY_START = r"^[=+@\t\r]"  # RE2 (Arrow) and PostgreSQL regular expressions alike
NOT_A_NUMBER_AFTER_MINUS = r"^-([^0-9.]|$)"


def risky(array: pa.Array) -> pa.Array:
    """Per value of a string array: whether a spreadsheet would take it for a formula."""
    return pc.or_(pc.match_substring_regex(array, RISKY_START),
                  pc.match_substring_regex(array, NOT_A_NUMBER_AFTER_MINUS))


def neutralised(data: pa.RecordBatch) -> pa.RecordBatch:
    """`data` with every risky text value prefixed with '; other values and columns as they are."""
    arrays = []
    for array in data.columns:
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            bad = risky(array)
            if pc.any(bad).as_py():
                array = pc.if_else(bad, pc.binary_join_element_wise("'", array, ""), array)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=data.schema)


def neutralised_text(value: str) -> str:
    """One value, as `neutralised` does it (for files written row by row)."""
    if value[:1] in ("=", "+", "@", "\t", "\r") or (value[:1] == "-" and not value[1:2].isdigit()
                                                    and value[1:2] != "."):
        return "'" + value
    return value
