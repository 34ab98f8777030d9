"""CSV dialect options shared by the reader and the writer."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from service.core.errors import InvalidInput, InvalidSpec
from service.core.types import arrow_type_from_spec

UTF8 = ("utf-8", "utf8", "utf-8-sig", "utf_8", "utf_8_sig")


@dataclass(frozen=True)
class CsvOptions:
    """`types` overrides inferred column types: {table: {column: spec type name}}."""

    delimiter: str = ","
    quote: str | None = '"'
    encoding: str = "utf-8"
    header: bool = True
    null_values: tuple[str, ...] = ("",)
    true_values: tuple[str, ...] = ("true", "True", "TRUE", "t")
    false_values: tuple[str, ...] = ("false", "False", "FALSE", "f")
    sample_rows: int = 10_000
    types: Mapping[str, Mapping[str, pa.DataType]] = field(default_factory=dict)
    # Exports: a text cell starting with = + - @, TAB or CR gets a leading ' so that spreadsheet
    # programs show it instead of running it as a formula (CSV injection). Numbers are never altered.
    excel_safe: bool = True

    @property
    def is_utf8(self) -> bool:
        return self.encoding.lower().replace("_", "-") in UTF8

    @classmethod
    def from_spec(cls, raw: Mapping[str, object] | None) -> CsvOptions:
        """Options from the spec's `csv:` section; every problem is reported at once."""
        if not raw:
            return cls()
        problems: list[str] = []
        known = {"delimiter", "quote", "encoding", "header", "nullValues", "sampleRows", "types", "excelSafe"}
        for k in raw:
            if k not in known:
                problems.append(f"csv.{k}: unknown option (known: {', '.join(sorted(known))})")
        delimiter = raw.get("delimiter", ",")
        if not isinstance(delimiter, str) or len(delimiter) != 1 or not delimiter.isascii():
            problems.append(f"csv.delimiter must be one ASCII character, not {delimiter!r}")
        quote = raw.get("quote", '"')
        if quote is not None and (not isinstance(quote, str) or len(quote) != 1 or not quote.isascii()):
            problems.append(f"csv.quote must be one ASCII character or null, not {quote!r}")
        encoding = raw.get("encoding", "utf-8")
        try:
            codecs.lookup(str(encoding))
        except LookupError:
            problems.append(f"csv.encoding {encoding!r} is not a known encoding")
        header = raw.get("header", True)
        if not isinstance(header, bool):
            problems.append("csv.header must be true or false")
        nulls = raw.get("nullValues", [""])
        if not isinstance(nulls, list) or not all(isinstance(v, str) for v in nulls):
            problems.append("csv.nullValues must be a list of strings")
        excel_safe = raw.get("excelSafe", True)
        if not isinstance(excel_safe, bool):
            problems.append("csv.excelSafe must be true or false")
        sample = raw.get("sampleRows", 10_000)
        if not isinstance(sample, int) or sample < 1:
            problems.append("csv.sampleRows must be a positive integer")
        types: dict[str, dict[str, pa.DataType]] = {}
        raw_types = raw.get("types", {})
        if not isinstance(raw_types, Mapping):
            problems.append("csv.types must map table -> {column: type}")
        else:
            for table, cols in raw_types.items():
                if not isinstance(cols, Mapping):
                    problems.append(f"csv.types.{table} must map column -> type")
                    continue
                for col, name in cols.items():
                    try:
                        types.setdefault(str(table), {})[str(col)] = arrow_type_from_spec(str(name))
                    except ValueError as exc:
                        problems.append(f"csv.types.{table}.{col}: {exc}")
        if problems:
            raise InvalidSpec(problems)
        return cls(
            delimiter=str(delimiter),
            quote=quote if quote is None else str(quote),
            encoding=str(encoding),
            header=bool(header),
            null_values=tuple(str(v) for v in nulls) if isinstance(nulls, list) else ("",),
            sample_rows=int(str(sample)),
            types=types,
            excel_safe=bool(excel_safe),
        )


def table_path(root: Path, table: str) -> Path:
    """The file of `table` under a folder URL, or the file itself for a single-file URL. A table
    name that would lead out of the folder is refused."""
    if root.suffix.lower() == ".csv":
        return root
    path = root / f"{table}.csv"
    if any(c in table for c in ("/", "\\", "\x00")) or not path.resolve().is_relative_to(root.resolve()):
        raise InvalidInput(f"table name {table!r} would lead out of the CSV folder {root}")
    return path
