"""Property: whatever well-formed RFC 4180 rows a CSV file holds — fields with quotes, delimiters,
LF, CR, tabs, NUL and any Unicode — mixed with ragged rows (too few or too many fields), a CSV ->
SQLite migration loads every well-formed row unchanged and rejects every ragged row, so that
loaded + rejected == the rows in the file, each reject numbered as its row.

The same property is checked with the reader's 4 MiB read size (reader.CHUNK) shrunk to 1-64
bytes, so that the cuts between blocks land everywhere: inside quoted fields, between a CR and its
LF, in the middle of a multi-byte character.

Every column is read as text (`csv.types`), so that type inference does not turn "01" into 1: the
property is about the reader, not about inference.

Both properties currently FAIL because of service bugs they found, each pinned by a deterministic
test in test_csv_hostile.py: a NULL last field after a quoted one becomes '' when the file does not
end with a newline (`c0,c1<LF>"",`); a U+FEFF starting a block's first row is dropped (a value
loses it, a row of only that character vanishes); a last line of spaces without a newline vanishes.
In exploratory runs, files always ending with a newline and no row starting with U+FEFF passed
1,000 examples of each property, and 500 with random final newlines found only those two end-of-file bugs.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.connectors.csv import reader
from service.store.base import StateStore
from tests.support.csvtext import field
from tests.support.runs import migrate

Cell = str | None

SPECIAL = st.sampled_from([",", '"', "\n", "\r", "\r\n", '""', " ", "\t", "\x00", "'", "\ufeff", "é", "€", "😀"])
TEXT = st.lists(st.one_of(SPECIAL, st.characters(codec="utf-8", exclude_categories=["Cs"])), max_size=8).map("".join)
CELL = st.none() | TEXT
EXAMPLES = settings(max_examples=60, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
_seq = itertools.count()


@dataclass(frozen=True)
class CsvCase:
    columns: int
    rows: list[list[Cell]]  # every data row, ragged ones included
    ragged: frozenset[int]  # 0-based indices of the ragged rows
    newline: str
    final_newline: bool
    batch_size: int

    def text(self) -> str:
        lines = [",".join(f"c{i}" for i in range(self.columns))]
        for row in self.rows:
            # A row of one NULL would be an empty line, which is no row at all: write "" instead.
            lines.append('""' if row == [None] else ",".join(field(v) for v in row))
        return self.newline.join(lines) + (self.newline if self.final_newline else "")

    @property
    def good(self) -> list[tuple[Cell, ...]]:
        return [tuple(r) for i, r in enumerate(self.rows) if i not in self.ragged]


@st.composite
def csv_cases(draw: st.DrawFn) -> CsvCase:
    columns = draw(st.integers(2, 5))
    rows: list[list[Cell]] = []
    ragged: set[int] = set()
    for i in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 3)) == 0:
            width = draw(st.integers(1, columns + 3).filter(lambda n: n != columns))
            ragged.add(i)
        else:
            width = columns
        rows.append(draw(st.lists(CELL, min_size=width, max_size=width)))
    return CsvCase(columns, rows, frozenset(ragged), draw(st.sampled_from(["\n", "\r\n"])), draw(st.booleans()),
                   draw(st.sampled_from([1, 2, 3, 5000])))


def sqlite_rows(path: Path, columns: int) -> list[tuple[Cell, ...]]:
    names = ", ".join(f"c{i}" for i in range(columns))
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"SELECT {names} FROM t").fetchall()


async def check_loaded_plus_rejected_is_every_row(store: StateStore, data_dir: Path, case: CsvCase) -> None:
    folder = data_dir / f"example{next(_seq)}"  # a spec of its own: no run resumes another's
    folder.mkdir()
    (folder / "t.csv").write_bytes(case.text().encode("utf-8"))
    spec = {"source": f"csv:///{folder.name}/t.csv", "target": f"sqlite:///{folder / 'out.db'}",
            "batchSize": case.batch_size,
            "csv": {"types": {"t": {f"c{i}": "string" for i in range(case.columns)}}}}

    run = await migrate(store, spec, data_dir)

    shown = f"file {case.text()!r}"
    assert run.status == "completed", shown
    assert (run.tables["t"].written, run.tables["t"].failed) == (len(case.good), len(case.ragged)), shown
    assert Counter(sqlite_rows(folder / "out.db", case.columns)) == Counter(case.good), shown
    rejects = await store.rejects(run.id, table="t")
    assert sorted(r.row or 0 for r in rejects) == sorted(i + 1 for i in case.ragged), shown
    assert all(r.rule == "csv_format" for r in rejects), shown


@pytest.mark.timeout(60)
@EXAMPLES
@given(case=csv_cases())
async def test_every_row_of_a_random_csv_file_is_loaded_unchanged_or_rejected(
    store: StateStore, data_dir: Path, case: CsvCase
) -> None:
    await check_loaded_plus_rejected_is_every_row(store, data_dir, case)


@pytest.mark.timeout(60)
@EXAMPLES
@given(case=csv_cases(), chunk=st.integers(1, 64))
async def test_every_row_is_loaded_or_rejected_wherever_the_reader_cuts_its_blocks(
    store: StateStore, data_dir: Path, case: CsvCase, chunk: int
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reader, "CHUNK", chunk)
        await check_loaded_plus_rejected_is_every_row(store, data_dir, case)


def test_a_case_writes_rfc4180_text_and_expects_only_its_well_formed_rows() -> None:
    """The ground truth of the properties: quoting as RFC 4180 wants it (a NULL unquoted and empty,
    '' quoted), a lone NULL field written as "" (an empty line is no row), ragged rows not expected."""
    case = CsvCase(3, [["a,b", 'say "x"', "l1\r\nl2"], [None], ["", None, "\x00"]], frozenset({1}), "\n", True, 1)
    assert case.text() == 'c0,c1,c2\n"a,b","say ""x""","l1\r\nl2"\n""\n"",,\x00\n'
    assert case.good == [("a,b", 'say "x"', "l1\r\nl2"), ("", None, "\x00")]
