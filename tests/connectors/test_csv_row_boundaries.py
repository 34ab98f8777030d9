"""Where a block of CSV may be cut: after a line feed that ends a row, never inside a quoted field —
where "quoted" follows pyarrow's parser: a quote opens a field only at the field's start; a quote
anywhere else outside quotes (`5" tall`, `12"`) is an ordinary character."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from service.connectors.csv.dialect import CsvOptions
from service.connectors.csv.reader import CsvFile
from service.connectors.csv.rows import RowEnds

ALPHABET = b'ab,"""\n\r'


def row_ends_one_byte_at_a_time(data: bytes) -> tuple[list[int], bool]:
    """The plain character-by-character reading: the offsets after row-ending line feeds, and
    whether the data ends inside a quoted field."""
    ends, state, i = [], "field start", 0
    while i < len(data):
        c = data[i : i + 1]
        if state == "quoted":
            if c == b'"':
                if data[i + 1 : i + 2] == b'"':
                    i += 2
                    continue
                state = "unquoted"
        elif c == b'"' and state == "field start":
            state = "quoted"
        elif c in (b",", b"\r"):
            state = "field start"
        elif c == b"\n":
            state = "field start"
            ends.append(i + 1)
        else:
            state = "unquoted"
        i += 1
    return ends, state == "quoted"


def fed_in_pieces(data: bytes, rnd: random.Random) -> tuple[list[int], bool]:
    cuts = sorted(rnd.sample(range(len(data) + 1), rnd.randint(0, min(5, len(data) + 1))))
    rows, ends, pos = RowEnds(b",", b'"'), [], 0
    for cut in [*cuts, len(data)]:
        ends += [int(e) + pos for e in rows.feed(data[pos:cut])]
        pos = cut
    return ends, rows.finish()


def test_row_ends_match_a_byte_by_byte_reading_however_the_bytes_are_split() -> None:
    rnd = random.Random(20261125)
    for _ in range(20_000):
        data = bytes(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 40)))
        assert fed_in_pieces(data, rnd) == row_ends_one_byte_at_a_time(data), data


def _parse(data: bytes) -> list[str | None]:
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=["x"]),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=lambda row: "skip"),
        convert_options=pacsv.ConvertOptions(column_types={"x": pa.string()}),
    ).column(0).to_pylist()


def test_the_rules_are_pyarrows_parsing_the_rows_one_by_one_gives_the_same_values_as_the_whole() -> None:
    rnd = random.Random(7)
    compared = 0
    for _ in range(2_000):
        data = bytes(rnd.choice(b'ab,"\n') for _ in range(rnd.randint(1, 30))) + b"\n"
        ends, inside = row_ends_one_byte_at_a_time(data)
        if inside:
            continue
        pieces = [data[s:e] for s, e in zip([0, *ends[:-1]], ends, strict=True)]
        assert [v for p in pieces if p.strip(b"\n") for v in _parse(p)] == _parse(data), (data, pieces)
        compared += 1
    assert compared > 1_000


def test_the_block_is_cut_after_the_last_row_end_and_the_header_at_the_first() -> None:
    f = CsvFile(Path("unused.csv"), "unused", CsvOptions())
    rnd = random.Random(11)
    for _ in range(3000):
        data = bytes(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 40)))
        ends, _ = row_ends_one_byte_at_a_time(data)
        assert (f.first_row_end(data), f.last_row_end(data)) == ((ends[0], ends[-1]) if ends else (0, 0)), data


def test_a_quote_inside_an_unquoted_field_does_not_hide_the_row_ends_after_it() -> None:
    f = CsvFile(Path("unused.csv"), "unused", CsvOptions())
    data = b'1,5" tall\n2,12"\n3,"a\nb"\n4,x\n'
    assert f.last_row_end(data) == len(data)
    assert f.first_row_end(data) == len(b'1,5" tall\n')


def test_another_delimiter_and_quote() -> None:
    f = CsvFile(Path("unused.csv"), "unused", CsvOptions(delimiter=";", quote="'"))
    assert f.last_row_end(b"1;'a\nb'\n2;x'y\n3;'c\n") == len(b"1;'a\nb'\n2;x'y\n")


def test_without_quoting_every_newline_ends_a_row() -> None:
    f = CsvFile(Path("unused.csv"), "unused", CsvOptions(quote=None))
    assert f.last_row_end(b'a,"b\nc"\nd') == 8
