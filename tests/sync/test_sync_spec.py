"""Bad incremental options are refused with messages that name what is wrong, before any row moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.errors import InvalidInput, InvalidSpec
from service.runs.spec import MigrationSpec
from service.store.base import StateStore
from tests.support.pg import execute, fetch
from tests.sync.support import sync_pass

BASE = {"source": "postgresql://u@h/db", "target": "sqlite:///t.db"}


@pytest.mark.parametrize(("options", "named"), [
    ({"incremental": ["orders"]}, "incremental must map table"),
    ({"incremental": {"orders": {}}}, "incremental.orders: give either a cursor column"),
    ({"incremental": {"orders": {"cursor": "u", "capture": True}}}, "not both or neither"),
    ({"incremental": {"orders": {"cursor": ""}}}, "incremental.orders.cursor must be a column name"),
    ({"incremental": {"orders": {"capture": "yes"}}}, "incremental.orders.capture must be true or false"),
    ({"incremental": {"orders": {"cursor": "u", "since": 3}}}, "incremental.orders has no option since"),
    ({"incremental": {"orders": {"cursor": "u"}}, "detectDeletes": "soft"}, "detectDeletes must be true, false or"),
    ({"detectDeletes": True}, "detectDeletes needs incremental tables"),
    ({"tables": ["users"], "incremental": {"orders": {"cursor": "u"}}}, "incremental.orders: not among the spec's tables"),
    ({"incremental": {"orders": {"cursor": "u"}}, "dedupe": {"orders": {"key": ["email"]}}},
     "dedupe.orders: an incremental table is written by key"),
    ({"incremental": {"orders": {"cursor": "u"}}, "rules": {"orders": {"email": {"unique": True}}}},
     "rules.orders.email.unique: an incremental table's rows come back"),
    ({"incremental": {"orders": {"capture": True}}, "transforms": {"orders": [{"lowercase": ["email"]}]}},
     "transforms.orders: deletes are found by the source's keys"),
])
def test_bad_options_are_named(options: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        MigrationSpec.from_dict({**BASE, **options})
    assert named in str(caught.value)


async def test_what_the_tables_do_not_allow_fails_the_first_pass_naming_it_and_writes_nothing(
    store: StateStore, data_dir: Path, new_pg_db
) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await execute(source, "CREATE TABLE keyless (a int, b text)", "CREATE TABLE items (id int PRIMARY KEY, v text)",
                  "INSERT INTO items VALUES (1, 'x')")
    await execute(target, "CREATE TABLE items (id int, v text)")  # no key to replace rows by
    cases = [
        ({"tables": ["keyless"], "incremental": {"keyless": {"cursor": "a"}}}, "incremental.keyless: the table has no primary key"),
        ({"tables": ["items"], "incremental": {"items": {"cursor": "nope"}}}, "incremental.items.cursor: the table has no column 'nope'"),
        ({"tables": ["items"], "incremental": {"items": {"cursor": "id"}}}, "target table items has no primary key"),
    ]
    for options, named in cases:
        with pytest.raises(InvalidInput) as caught:
            await sync_pass(store, {"source": source, "target": target, **options}, data_dir)
        assert named in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        await sync_pass(store, {"source": source, "target": "csv:///out", "incremental": {"items": {"cursor": "id"}},
                                "tables": ["items"]}, data_dir)
    assert "a CSV target cannot replace rows by key" in caught.value.message
    assert await fetch(target, "SELECT count(*) FROM items") == [(0,)]
    assert not (data_dir / "out").exists() or not list((data_dir / "out").iterdir())
