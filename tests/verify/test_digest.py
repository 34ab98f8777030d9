"""Order-independent digests of rows, and the spilled per-key records that name the keys missing
from, extra in and different in the target."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from service.verify.digest import Differences, Digest, Spill, compare, partitions_for, row_hashes

LONG = "x" * 100  # longer than 64 bytes: hashed by blake2b rather than by the word chain
ROWS = [
    {"id": 1, "name": "ann", "note": None},
    {"id": 2, "name": "", "note": LONG},
    {"id": 3, "name": "a much longer name than the others", "note": "n"},
    {"id": 40, "name": "bo", "note": ""},
    {"id": 500, "name": "ann", "note": "ann"},
]


def batch(rows: list[dict[str, object]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=pa.schema([("id", pa.int64()), ("name", pa.string()),
                                                              ("note", pa.string())]))


def digest(*batches: list[dict[str, object]], json: frozenset[str] = frozenset()) -> tuple[int, int]:
    d = Digest()
    for rows in batches:
        data = pa.RecordBatch.from_pylist(rows) if "doc" in rows[0] else batch(rows)
        d.add(row_hashes(data, data.schema.names, json))
    return d.rows, d.total


def changed(index: int, **values: object) -> list[dict[str, object]]:
    return [dict(row, **values) if i == index else row for i, row in enumerate(ROWS)]


def test_the_same_rows_in_any_order_and_batches_give_the_same_digest() -> None:
    whole = digest(ROWS)

    assert whole[0] == 5
    assert digest(ROWS[::-1]) == whole
    assert digest(ROWS[3:], ROWS[:1], ROWS[1:3]) == whole
    assert digest(*[[row] for row in ROWS]) == whole


@pytest.mark.parametrize("other", [
    changed(0, name="ann "),  # a changed value
    changed(2, id=4),  # a changed number
    changed(1, note=LONG + "y"),  # a changed long value
    changed(0, note=""),  # an empty string instead of NULL
    changed(3, note=None),  # NULL instead of an empty string
    ROWS + [dict(ROWS[4], id=6)],  # a row more
    ROWS[:4],  # a row missing
    ROWS + [ROWS[0]],  # a row twice
], ids=["value", "number", "long", "empty-for-null", "null-for-empty", "extra", "missing", "duplicate"])
def test_any_difference_in_the_rows_changes_the_digest(other: list[dict[str, object]]) -> None:
    assert digest(other) != digest(ROWS)


def test_values_swapped_between_two_columns_change_the_digest() -> None:
    assert digest([{"id": 1, "name": "x", "note": "y"}]) != digest([{"id": 1, "name": "y", "note": "x"}])
    assert digest(changed(4, name="bo", note="ann")) != digest(ROWS)


def test_json_columns_compare_documents_whatever_their_key_order_and_spaces() -> None:
    one, two = [{"id": 1, "doc": '{"b":1,"a":2}'}], [{"id": 1, "doc": '{"a": 2, "b": 1}'}]

    assert digest(one, json=frozenset({"doc"})) == digest(two, json=frozenset({"doc"}))
    assert digest(one) != digest(two)  # as plain text they differ
    assert digest(one, json=frozenset({"doc"})) != digest([{"id": 1, "doc": '{"a": 2, "b": 2}'}],
                                                          json=frozenset({"doc"}))


def differences(tmp_path: Path, source: list[pa.RecordBatch], target: list[pa.RecordBatch], key: list[str],
                partitions: int, limit: int = 100) -> Differences:
    spills = []
    for side, batches in (("source", source), ("target", target)):
        spill = Spill(tmp_path, side, partitions)
        for data in batches:
            spill.add(data, key, row_hashes(data, data.schema.names))
        spill.close()
        spills.append(spill)
    return compare(spills[0], spills[1], limit)


@pytest.mark.parametrize("partitions", [1, 4])
def test_compare_names_the_missing_extra_and_different_keys(tmp_path: Path, partitions: int) -> None:
    source = [batch(ROWS[:3]), batch(ROWS[3:])]
    target = [batch([ROWS[4], dict(ROWS[2], note="changed"), ROWS[0]]),
              batch([{"id": 7, "name": "new", "note": None}, dict(ROWS[3], note=None), ROWS[4] | {"id": 6}])]

    found = differences(tmp_path, source, target, ["id"], partitions)

    assert found == Differences(missing=["2"], extra=["6", "7"], different=["3", "40"],
                                missing_count=1, extra_count=2, different_count=2)


@pytest.mark.parametrize("partitions", [1, 4])
def test_multi_column_keys_are_named_as_their_values_joined_by_commas(tmp_path: Path, partitions: int) -> None:
    def rows(*values: tuple[str, int, str]) -> pa.RecordBatch:
        return pa.RecordBatch.from_pylist([{"region": r, "id": i, "v": v} for r, i, v in values])

    source = [rows(("eu", 1, "a"), ("us", 1, "b"), ("eu", 2, "c"))]
    target = [rows(("us", 1, "b"), ("eu", 2, "C"), ("us", 2, "d"))]

    found = differences(tmp_path, source, target, ["region", "id"], partitions)

    assert found == Differences(missing=["eu,1"], extra=["us,2"], different=["eu,2"],
                                missing_count=1, extra_count=1, different_count=1)


@pytest.mark.parametrize("partitions", [1, 4])
def test_limit_keeps_the_first_keys_in_text_order_and_counts_them_all(tmp_path: Path, partitions: int) -> None:
    def rows(ids: range, name: str) -> pa.RecordBatch:
        return batch([{"id": i, "name": name, "note": None} for i in ids])

    source = [rows(range(1, 13), "s"), rows(range(20, 30), "same")]  # 1…12 missing from the target
    target = [rows(range(20, 25), "same"), rows(range(25, 30), "other"),  # 25…29 different
              rows(range(100, 90, -1), "t"), rows(range(30, 35), "t")]  # 91…100 and 30…34 extra

    found = differences(tmp_path, source, target, ["id"], partitions, limit=3)

    assert found == Differences(missing=["1", "10", "11"], extra=["100", "30", "31"], different=["25", "26", "27"],
                                missing_count=12, extra_count=15, different_count=5)


def test_partitions_are_powers_of_two_of_about_a_million_rows_each() -> None:
    assert [partitions_for(n) for n in (0, 1, 1_000_000, 1_000_001, 2_000_000, 2_000_001, 10_000_000)] == \
        [1, 1, 1, 2, 2, 4, 16]
