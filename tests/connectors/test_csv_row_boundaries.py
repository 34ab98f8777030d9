"""Where a block of CSV may be cut: after a newline outside quotes, never inside a quoted field."""

from __future__ import annotations

import random
from pathlib import Path

from service.connectors.csv.dialect import CsvOptions
from service.connectors.csv.reader import CsvFile


def brute_force_last_row_end(data: bytes) -> int:
    end, quotes = 0, 0
    for i, byte in enumerate(data):
        quotes += byte == ord('"')
        if byte == ord("\n") and quotes % 2 == 0:
            end = i + 1
    return end


def test_the_block_is_cut_after_the_last_newline_outside_quotes() -> None:
    f = CsvFile(Path("unused.csv"), "unused", CsvOptions())
    rnd = random.Random(20261125)
    for _ in range(3000):
        data = bytes(rnd.choice(b'ab,"\n') for _ in range(rnd.randint(0, 40)))
        assert f.last_row_end(data) == brute_force_last_row_end(data), data


def brute_force_first_row_end(data: bytes) -> int:
    quotes = 0
    for i, byte in enumerate(data):
        quotes += byte == ord('"')
        if byte == ord("\n") and quotes % 2 == 0:
            return i + 1
    return 0


def test_the_header_ends_at_the_first_newline_outside_quotes() -> None:
    f = CsvFile(Path("unused.csv"), "unused", CsvOptions())
    rnd = random.Random(11)
    for _ in range(3000):
        data = bytes(rnd.choice(b'ab,"\n') for _ in range(rnd.randint(0, 40)))
        assert f.first_row_end(data) == brute_force_first_row_end(data), data


def test_without_quoting_every_newline_ends_a_row() -> None:
    f = CsvFile(Path("unused.csv"), "unused", CsvOptions(quote=None))
    assert f.last_row_end(b'a,"b\nc"\nd') == 8
