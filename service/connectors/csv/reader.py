"""Streaming CSV reading with exact byte positions.

The file is read in chunks of about 4 MiB, each cut after its last row (rows.py tells the line
feeds that end rows from those inside quoted fields, by the parser's own rules) and handed whole
to pyarrow's C++ CSV parser in a thread. Every block therefore starts at a known byte offset, which with a row count inside it is the resumable checkpoint.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import os
import tempfile
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiofiles
import pyarrow as pa
import pyarrow.csv as pacsv

from service.connectors.csv.dialect import UTF8, CsvOptions
from service.connectors.csv.rows import RowEnds
from service.core.batch import REJECT_ERROR_COLUMN, Reject
from service.core.errors import EndpointError, UnknownTable

CHUNK = 4 << 20
_BOM = codecs.BOM_UTF8


@dataclass(frozen=True)
class Block:
    start: int  # byte offset of the first row
    end: int  # byte offset just past the last row
    data: bytes | memoryview


class CsvFile:
    """One CSV file: its header, its data start offset, and its rows as byte blocks."""

    def __init__(self, path: Path, table: str, options: CsvOptions) -> None:
        self.path = path
        self.table = table
        self.options = options
        self._names: list[str] | None = None
        self._data_start = 0
        # What is read: the file itself, or — for encodings whose line feed is not the byte \n
        # (UTF-16, UTF-32) — a UTF-8 copy made once (positions are the copy's, which every run
        # makes alike).
        self.data_path = path
        self._encoding = options.encoding

    @property
    def _utf8(self) -> bool:
        return self._encoding.lower().replace("_", "-") in UTF8

    async def open(self) -> None:
        """Read the header (or count the columns when there is none)."""
        if not self.path.is_file():
            raise UnknownTable(f"CSV file {self.path} for table {self.table!r} does not exist")
        if _wide(self.options.encoding):
            self.data_path = await asyncio.to_thread(self._utf8_copy)
            self._encoding = "utf-8"
        try:
            async with aiofiles.open(self.data_path, "rb") as f:
                head = await f.read(1 << 20)
                while not self.first_row_end(head) and (more := await f.read(1 << 20)):
                    head += more
        except OSError as exc:
            raise EndpointError(f"cannot read CSV file {self.path}: {exc.strerror}") from None
        bom = len(_BOM) if head.startswith(_BOM) else 0
        first_end = (self.first_row_end(head[bom:]) or len(head) - bom) + bom
        line = self._decode(head[bom:first_end]).rstrip("\r\n")
        try:
            fields = next(csv.reader([line], delimiter=self.options.delimiter, quotechar=self.options.quote or '"',
                                     quoting=csv.QUOTE_MINIMAL if self.options.quote else csv.QUOTE_NONE), [])
        except csv.Error as exc:
            raise EndpointError(f"CSV file {self.path}: the header row cannot be read ({exc}); check its quotes, "
                                "and that rows end with \\n or \\r\\n") from None
        if self.options.header:
            if not fields or all(not f.strip() for f in fields):
                raise EndpointError(f"CSV file {self.path} has no header row")
            seen = Counter(fields)
            dupes = sorted(f for f, n in seen.items() if n > 1)
            if dupes:
                raise EndpointError(f"CSV file {self.path}: duplicate column name(s) in header: {', '.join(dupes)}")
            self._names = [f.strip() if f.strip() else f"column_{i + 1}" for i, f in enumerate(fields)]
            self._data_start = first_end
        else:
            if not fields:
                raise EndpointError(f"CSV file {self.path} is empty: it has no row to count the columns of")
            self._names = [f"column_{i + 1}" for i in range(len(fields))]
            self._data_start = bom

    def _utf8_copy(self) -> Path:
        """The file as UTF-8 (its BOM dropped), in a cache folder, named by the file's path, size
        and modification time: made once, and again only when the file changes."""
        stat = self.path.stat()
        tag = hashlib.sha256(f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.options.encoding}"
                             .encode()).hexdigest()[:24]
        folder = Path(tempfile.gettempdir()) / "migrator-utf8"
        folder.mkdir(mode=0o700, exist_ok=True)
        copy = folder / f"{tag}.csv"
        if copy.exists():
            return copy
        scratch = copy.with_suffix(f".{os.getpid()}.tmp")
        decoder = codecs.getincrementaldecoder(self.options.encoding)(errors="strict")
        try:
            with open(self.path, "rb") as src, open(scratch, "wb") as out:
                first = True
                while chunk := src.read(CHUNK):
                    text = decoder.decode(chunk)
                    if first and text.startswith("\ufeff"):
                        text = text[1:]
                    first = False
                    out.write(text.encode())
                out.write(decoder.decode(b"", final=True).encode())
        except UnicodeDecodeError as exc:
            scratch.unlink(missing_ok=True)
            raise EndpointError(f"CSV file {self.path}: bytes at offset {exc.start} are not valid "
                                f"{self.options.encoding}; set csv.encoding") from None
        os.replace(scratch, copy)
        return copy

    def _decode(self, data: bytes) -> str:
        try:
            return data.decode(self._encoding)
        except UnicodeDecodeError as exc:
            raise EndpointError(
                f"CSV file {self.path}: bytes at offset {exc.start} are not valid {self._encoding}; "
                "set csv.encoding (for example latin-1)"
            ) from None

    @property
    def names(self) -> list[str]:
        assert self._names is not None, "open() first"
        return self._names

    @property
    def columns(self) -> list[str]:
        """The columns that are loaded: all but a rejects file's reason column."""
        return [n for n in self.names if n != REJECT_ERROR_COLUMN]

    @property
    def data_start(self) -> int:
        return self._data_start

    def _row_ends(self) -> RowEnds:
        return RowEnds(self.options.delimiter.encode(), self.options.quote.encode() if self.options.quote else None)

    def first_row_end(self, buf: bytes) -> int:
        """Offset just past the first complete row in `buf` (which starts at a row boundary), or 0."""
        ends = self._row_ends().feed(buf)
        return int(ends[0]) if ends.size else 0

    def last_row_end(self, buf: bytes) -> int:
        """Offset just past the last complete row in `buf` (which starts at a row boundary), or 0."""
        ends = self._row_ends().feed(buf)
        return int(ends[-1]) if ends.size else 0

    async def blocks(self, start: int | None) -> AsyncGenerator[Block, None]:
        """Runs of whole rows of about CHUNK bytes from byte offset `start` (None: the first data
        row). Block boundaries depend only on `start`, so a resumed read sees the same rows.

        Each chunk is read once by a RowEnds lexer, which carries whether it is inside a quoted
        field from chunk to chunk. A row longer than a chunk is gathered piece by piece and the
        pieces are joined once — linear in the row's length, however long."""
        pos = self._data_start if start is None else start
        rows = self._row_ends()
        tail: list[bytes] = []  # the start of a row the last chunks cut off
        tail_len = 0
        async with aiofiles.open(self.data_path, "rb") as f:
            await f.seek(pos)
            while True:
                chunk = await f.read(CHUNK)
                if not chunk:  # EOF: the rest, including a last row without a newline
                    buf = b"".join(tail)
                    if buf.strip(b"\r\n"):
                        if rows.finish():
                            raise EndpointError(
                                f"CSV file {self.path}: a quoted field opened after byte {pos} is never closed, "
                                "so every row after it would be read as part of it; close the quote")
                        # A row end of its own: Arrow reads an empty last field as NULL only before one.
                        yield Block(pos, pos + len(buf), buf if buf.endswith(b"\n") else buf + b"\n")
                    return
                ends = await asyncio.to_thread(rows.feed, chunk)
                if not ends.size:
                    tail.append(chunk)
                    tail_len += len(chunk)
                    if tail_len > 256 << 20:
                        raise EndpointError(f"CSV file {self.path}: a row longer than 256 MiB at byte {pos}")
                    continue
                end = int(ends[-1])
                if tail:
                    block: bytes | memoryview = b"".join([*tail, chunk[:end]])
                else:
                    block = memoryview(chunk)[:end]  # a view: no copy of the block
                yield Block(pos, pos + len(block), block)
                pos += len(block)
                rest = chunk[end:]
                tail, tail_len = ([rest], len(rest)) if rest else ([], 0)

    def parse(self, block: bytes | memoryview, types: dict[str, pa.DataType] | None, first_row: int) -> tuple[pa.Table, list[Reject]]:
        """Parse `block` into columns of `types` (None: infer). Ragged rows become rejects.

        Raises pa.ArrowInvalid when a value does not convert to its column's type.
        """
        rejects: list[Reject] = []
        expected = len(self.names)

        def on_invalid(row: pacsv.InvalidRow) -> str:
            number = None if row.number is None else first_row + row.number - 1
            rejects.append(
                Reject(self.table, number, None, None, row.text[:1000], "csv_format",
                       f"expected {expected} fields, found {row.actual_columns}")
            )
            return "skip"

        data = pa.py_buffer(block) if self._utf8 else self._decode(bytes(block)).encode()
        if bytes(data[:3]) == _BOM:
            # Arrow skips a BOM that starts its input; here it is a value's first character. An
            # empty line first (Arrow skips those) keeps it.
            data = pa.py_buffer(b"\n" + bytes(data))
        try:
            table = self._read(data, types, on_invalid, threads=True)
        except pa.ArrowInvalid as exc:
            if "invalid UTF8" not in str(exc):
                raise
            raise EndpointError(f"CSV file {self.path}: rows from {first_row} on hold bytes that are not valid "
                                f"{self.options.encoding}; set csv.encoding (for example latin-1)") from None
        if rejects and any(r.row is None for r in rejects):
            # Arrow numbers invalid rows only when it parses in one thread: read this block again so.
            rejects.clear()
            table = self._read(data, types, on_invalid, threads=False)
        return table, rejects

    def _read(self, data: pa.Buffer, types: dict[str, pa.DataType] | None,
              on_invalid: Callable[[pacsv.InvalidRow], str], *, threads: bool) -> pa.Table:
        o = self.options
        return pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=self.names, use_threads=threads,
                                           block_size=max(1 << 20, len(data) + 1)),
            parse_options=pacsv.ParseOptions(
                delimiter=o.delimiter,
                quote_char=o.quote if o.quote else False,
                double_quote=True,
                newlines_in_values=o.quote is not None,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                null_values=list(o.null_values),
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=list(o.true_values),
                false_values=list(o.false_values),
                include_columns=self.columns,
            ),
        )


def _wide(encoding: str) -> bool:
    """An encoding whose line feed is not the single byte \\n (UTF-16, UTF-32)."""
    try:
        return "\n".encode(codecs.lookup(encoding).name) != b"\n"
    except LookupError:
        return False
