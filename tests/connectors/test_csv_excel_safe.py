"""CSV exports are excel-safe by default: a text cell starting with = + - @, TAB or CR gets a
leading ' (so a spreadsheet shows it instead of running it); numbers are never altered;
`csv.excelSafe: false` writes every value as it is. The same through the Arrow path and the
PostgreSQL → CSV pass-through."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from service.store.base import StateStore
from tests.support import pg
from tests.support.runs import migrate

VALUES = ["=1+2", "+cmd", "-x", "@SUM(A1)", "\tindent", "\rcr", "plain", "a=b", "", None]


def rows_of(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


@pytest.fixture
async def source(pg_dsn: str) -> str:
    await pg.execute(pg_dsn, "CREATE TABLE cells (id integer PRIMARY KEY, v text, n numeric, i integer)")
    for i, v in enumerate(VALUES, 1):
        await pg.execute(pg_dsn, f"INSERT INTO cells VALUES ({i}, {'NULL' if v is None else pg_literal(v)}, "
                                 f"{-i}.5, {-i})")
    return pg_dsn


def pg_literal(value: str) -> str:
    return "E'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\t", "\\t").replace("\r", "\\r") + "'"


@pytest.mark.parametrize("transform", [False, True], ids=["pass-through", "arrow"])
async def test_risky_text_cells_are_neutralised_and_numbers_never(
    store: StateStore, data_dir: Path, source: str, transform: bool
) -> None:
    spec: dict[str, object] = {"source": source, "target": "csv:///out"}
    if transform:  # a transform makes the rows go through Arrow
        spec["transforms"] = {"cells": [{"rename": {"i": "i"}}]}
    run = await migrate(store, spec, data_dir)
    assert run.status == "completed"

    rows = rows_of(data_dir / "out" / "cells.csv")[1:]
    assert [r[1] for r in rows] == ["'=1+2", "'+cmd", "'-x", "'@SUM(A1)", "'\tindent", "'\rcr", "plain", "a=b", "",
                                    ""]
    assert [r[2] for r in rows] == [f"-{i}.5" for i in range(1, 11)]  # negative numbers as they are
    assert [r[3] for r in rows] == [str(-i) for i in range(1, 11)]


async def test_excel_safe_false_writes_values_as_they_are(store: StateStore, data_dir: Path, source: str) -> None:
    run = await migrate(store, {"source": source, "target": "csv:///raw", "csv": {"excelSafe": False}}, data_dir)
    assert run.status == "completed"
    assert [r[1] for r in rows_of(data_dir / "raw" / "cells.csv")[1:6]] == ["=1+2", "+cmd", "-x", "@SUM(A1)",
                                                                            "\tindent"]


async def test_risky_text_in_a_column_of_any_declared_type_is_neutralised(
    store: StateStore, data_dir: Path
) -> None:
    import sqlite3

    db = data_dir / "in.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, amount NUMERIC, doc JSON, v TEXT)")
        c.execute("INSERT INTO t VALUES (1, '=HYPERLINK(\"x\")', '@SUM(A1)', '-5'), (2, '-7.5', '{}', '-minus')")
    run = await migrate(store, {"source": f"sqlite:///{db}", "target": "csv:///out"}, data_dir)
    assert run.status == "completed"
    rows = rows_of(data_dir / "out" / "t.csv")[1:]
    assert rows == [["1", "'=HYPERLINK(\"x\")", "'@SUM(A1)", "-5"], ["2", "-7.5", "{}", "'-minus"]]


async def test_an_excel_safe_export_verifies_ok_deep(store: StateStore, data_dir: Path, source: str) -> None:
    run = await migrate(store, {"source": source, "target": "csv:///out", "verify": "deep"}, data_dir)
    report = await store.report(run.id)
    assert report is not None and report["ok"] is True, report
