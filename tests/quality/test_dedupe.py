"""Duplicate keys across a whole table (the spec's `dedupe`): which copies each `keep` policy
rejects or fixes, inside a batch and across batches, and what the rejects say (row number, key,
column, value, rule, message)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from service.core.errors import InvalidSpec
from service.quality.dedupe import Dedupe, HashSet, compile_dedupe
from service.quality.rows import Rows, Step


def dedupe(key: Sequence[str] | str = ("email",), keep: str = "first", table: str = "users") -> Step:
    step = compile_dedupe(table, {"key": list(key) if not isinstance(key, str) else key, "keep": keep})
    assert step is not None
    return step


def batch(first_row: int = 1, key: Sequence[str] = ("id",), **columns: list[object] | pa.Array) -> Rows:
    return Rows.of("users", pa.record_batch(columns), first_row, key)


def ids(out: Rows) -> list[object]:
    return list(out.data.column("id").to_pylist())


def later_copies(values: Sequence[str]) -> list[int]:
    """The 1-based rows whose value an earlier row already had: what `keep: first` rejects."""
    seen: set[str] = set()
    rows = []
    for row, value in enumerate(values, 1):
        if value in seen:
            rows.append(row)
        seen.add(value)
    return rows


def why(out: Rows) -> list[tuple[int | None, str | None, str | None, str | None, str]]:
    """Each reject as (row, key, column, value, rule)."""
    return [(r.row, r.key, r.column, r.value, r.rule) for r in out.rejects]


def problems(spec: dict[str, object] | None, given: Rows | None = None) -> list[str]:
    with pytest.raises(InvalidSpec) as caught:
        step = compile_dedupe("users", spec)
        assert step is not None
        step(given or batch(id=[1], email=["a@x.org"]))
    return caught.value.problems


# --- the spec ------------------------------------------------------------------------------------


def test_no_entry_compiles_to_no_step() -> None:
    assert compile_dedupe("users", None) is None
    assert compile_dedupe("users", {}) is None


def test_every_problem_of_an_entry_is_listed_at_once_with_its_path() -> None:
    found = problems({"key": ["email", 3, "email"], "keep": "newest", "by": "id"})

    assert found == [
        "dedupe.users.by is not an option of dedupe (use key or keep or againstTarget)",
        "dedupe.users.key[1] must be a column name, not 3",
        "dedupe.users.key names column 'email' twice",
        "dedupe.users.keep must be one of first, last, reject, fix, not 'newest'",
    ]


def test_an_entry_without_a_key_is_refused() -> None:
    assert problems({"keep": "first"}) == [
        "dedupe.users.key is required: the column, or list of columns, that makes a row's key"]


def test_an_empty_key_list_is_refused() -> None:
    assert problems({"key": []}) == ["dedupe.users.key must be a column name or a non-empty list of column names"]


def test_a_key_given_as_one_column_name_works_like_a_list_of_one() -> None:
    out = dedupe("email")(batch(id=[1, 2], email=["a@x.org", "a@x.org"]))

    assert ids(out) == [1]


def test_key_columns_the_table_does_not_have_are_refused_at_the_first_batch() -> None:
    found = problems({"key": ["mail", "email", "nick"]}, batch(id=[1], email=["a@x.org"]))

    assert found == ["dedupe.users.key: table users has no column 'mail' (it has id, email)",
                     "dedupe.users.key: table users has no column 'nick' (it has id, email)"]


def test_a_column_without_a_text_form_cannot_be_a_key() -> None:
    found = problems({"key": ["tags"]}, batch(id=[1], tags=pa.array([["a"]], pa.list_(pa.string()))))

    assert found == ["dedupe.users.key: column 'tags' of type list<item: string> cannot be a key"]


def test_fix_needs_a_string_column_in_the_key_to_suffix() -> None:
    found = problems({"key": ["id"], "keep": "fix"}, batch(id=[1]))

    assert found == ["dedupe.users.keep: fix suffixes the key's first string column, and none of id is a string"]


# --- keep: first -----------------------------------------------------------------------------------


def test_rows_with_distinct_keys_pass_unchanged() -> None:
    given = batch(id=[1, 2, 3], email=["a@x.org", "b@x.org", "c@x.org"])

    out = dedupe()(given)

    assert out.data.equals(given.data)
    assert out.rejects == ()


def test_later_copies_in_a_batch_are_rejected_naming_row_key_column_value_and_rule() -> None:
    out = dedupe()(batch(id=[1, 2, 3, 4], email=["a@x.org", "b@x.org", "a@x.org", "a@x.org"]))

    assert ids(out) == [1, 2]
    assert why(out) == [(3, "3", "email", "a@x.org", "duplicate"), (4, "4", "email", "a@x.org", "duplicate")]


def test_the_message_names_table_column_and_key() -> None:
    out = dedupe()(batch(id=[1234, 1235], email=["test@example.com", "test@example.com"]))

    assert [r.message for r in out.rejects] == ["Duplicate key in users.email: test@example.com"]


def test_a_copy_in_a_later_batch_is_rejected_with_its_own_row_number() -> None:
    step = dedupe()
    first = step(batch(1, id=[1, 2], email=["a@x.org", "b@x.org"]))
    second = step(batch(3, id=[3, 4, 5], email=["c@x.org", "b@x.org", "a@x.org"]))

    assert ids(first) == [1, 2]
    assert ids(second) == [3]
    assert why(second) == [(4, "4", "email", "b@x.org", "duplicate"), (5, "5", "email", "a@x.org", "duplicate")]


def test_rejects_keep_the_source_row_numbers_of_rows_an_earlier_step_removed_around_them() -> None:
    given = batch(10, id=[10, 11, 12, 13], email=["a@x.org", "bad", "b@x.org", "a@x.org"])
    earlier_step = given.reject(pc.equal(given.data.column("email"), "bad"), "email", "format", lambda v: "bad")

    out = dedupe()(earlier_step)

    assert [(r.row, r.rule) for r in out.rejects] == [(11, "format"), (13, "duplicate")]
    assert ids(out) == [10, 12]


def test_a_key_in_several_columns_is_a_duplicate_only_when_every_column_matches() -> None:
    out = dedupe(["first", "last"])(batch(id=[1, 2, 3, 4], first=["Ann", "Ann", "Bob", "Ann"],
                                          last=["Lee", "Ray", "Lee", "Lee"]))

    assert ids(out) == [1, 2, 3]
    assert why(out) == [(4, "4", "first,last", "Ann,Lee", "duplicate")]
    assert out.rejects[0].message == "Duplicate key in users.first,last: Ann,Lee"


def test_values_are_not_confused_across_the_columns_of_a_key() -> None:
    out = dedupe(["a", "b"])(batch(id=[1, 2, 3], a=["xy", "x", "x,y"], b=["z", "yz", ""]))

    assert ids(out) == [1, 2, 3]


def test_null_keys_are_never_duplicates() -> None:
    out = dedupe(["email", "tenant"])(batch(id=[1, 2, 3, 4, 5], email=[None, None, "a@x.org", "a@x.org", "a@x.org"],
                                            tenant=[1, 1, None, None, 1]))

    assert ids(out) == [1, 2, 3, 4, 5]


def test_numbers_and_dates_are_keys_by_value() -> None:
    out = dedupe(["n", "day"])(batch(id=[1, 2, 3], n=[7, 7, 7],
                                     day=[date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 1)]))

    assert ids(out) == [1, 2]
    assert why(out) == [(3, "3", "n,day", "7,2024-01-01", "duplicate")]


def test_keys_longer_than_a_few_words_are_compared_whole() -> None:
    long = "x" * 200
    out = dedupe()(batch(id=[1, 2, 3, 4], email=[long + "a", long + "b", long + "a", "short"]))

    assert ids(out) == [1, 2, 4]
    assert why(out) == [(3, "3", "email", long + "a", "duplicate")]


def test_keys_that_differ_only_in_trailing_nul_bytes_or_length_are_different() -> None:
    out = dedupe(["b"])(batch(id=[1, 2, 3, 4], b=pa.array([b"", b"\0", b"a", b"a\0\0"], pa.binary())))

    assert ids(out) == [1, 2, 3, 4]


def test_an_empty_batch_passes() -> None:
    given = batch(id=pa.array([], pa.int64()), email=pa.array([], pa.string()))

    assert dedupe()(given).data.num_rows == 0


def test_over_many_batches_exactly_the_later_copies_are_rejected() -> None:
    rng = random.Random(5)
    emails = [f"user{rng.randrange(30_000)}@example.com" for _ in range(40_000)]
    step = dedupe()
    rejected: list[int | None] = []
    kept: list[object] = []
    for start in range(0, len(emails), 3_000):
        part = emails[start:start + 3_000]
        out = step(batch(start + 1, id=list(range(start + 1, start + 1 + len(part))), email=part))
        rejected += [r.row for r in out.rejects]
        kept += ids(out)

    assert rejected == later_copies(emails)
    assert len(kept) == len(set(emails))


def test_a_key_is_the_same_key_in_batches_whose_longest_values_differ() -> None:
    step = dedupe()
    step(batch(1, id=[1, 2], email=["a@x.org", "a-much-longer-address@example.org"]))

    out = step(batch(3, id=[3, 4], email=["a@x.org", "b"]))

    assert why(out) == [(3, "3", "email", "a@x.org", "duplicate")]


def test_over_many_batches_of_keys_of_every_length_exactly_the_later_copies_are_rejected() -> None:
    rng = random.Random(7)
    pool = ["x" * rng.randrange(0, 90) + str(i) for i in range(3_000)]  # 1 to 93 bytes: short, long, hashed
    emails = [rng.choice(pool) for _ in range(8_000)]
    step = dedupe()
    rejected: list[int | None] = []
    start = 0
    while start < len(emails):  # batches of random sizes, so of random longest values
        part = emails[start:start + rng.randrange(1, 400)]
        rejected += [r.row for r in step(batch(start + 1, id=list(range(start + 1, start + 1 + len(part))),
                                               email=part)).rejects]
        start += len(part)
    assert rejected == later_copies(emails)


def test_a_step_sized_up_front_finds_the_same_copies() -> None:
    step = Dedupe("users", ["email"], expected_keys=100_000)
    step(batch(1, id=[1, 2], email=["a@x.org", "b@x.org"]))

    out = step(batch(3, id=[3, 4], email=["b@x.org", "c@x.org"]))

    assert ids(out) == [4]
    assert step.distinct_keys == 3


# --- keep: last, reject, fix ----------------------------------------------------------------------


def test_keep_last_keeps_the_last_copy_in_a_batch() -> None:
    out = dedupe(keep="last")(batch(id=[1, 2, 3, 4], email=["a@x.org", "b@x.org", "a@x.org", "a@x.org"]))

    assert ids(out) == [2, 4]
    assert why(out) == [(1, "1", "email", "a@x.org", "duplicate"), (3, "3", "email", "a@x.org", "duplicate")]


def test_keep_last_rejects_copies_of_a_key_an_earlier_batch_let_through() -> None:
    step = dedupe(keep="last")
    step(batch(1, id=[1], email=["a@x.org"]))

    out = step(batch(2, id=[2, 3], email=["a@x.org", "a@x.org"]))

    assert ids(out) == []
    assert [r.row for r in out.rejects] == [2, 3]


def test_keep_reject_rejects_every_copy_in_a_batch() -> None:
    out = dedupe(keep="reject")(batch(id=[1, 2, 3, 4], email=["a@x.org", "b@x.org", "a@x.org", "a@x.org"]))

    assert ids(out) == [2]
    assert [(r.row, r.value, r.rule) for r in out.rejects] == [
        (1, "a@x.org", "duplicate"), (3, "a@x.org", "duplicate"), (4, "a@x.org", "duplicate")]


def test_keep_reject_rejects_later_copies_of_a_key_an_earlier_batch_let_through() -> None:
    step = dedupe(keep="reject")
    first = step(batch(1, id=[1, 2], email=["a@x.org", "b@x.org"]))

    second = step(batch(3, id=[3, 4], email=["a@x.org", "c@x.org"]))

    assert ids(first) == [1, 2]  # handed on before its copy came: it stays
    assert ids(second) == [4]
    assert [r.row for r in second.rejects] == [3]


def test_keep_fix_keeps_later_copies_with_a_numbered_suffix_across_batches() -> None:
    step = dedupe(keep="fix")
    first = step(batch(1, id=[1, 2, 3], email=["a@x.org", "a@x.org", "b@x.org"]))
    second = step(batch(4, id=[4, 5], email=["a@x.org", "b@x.org"]))

    assert first.data.column("email").to_pylist() == ["a@x.org", "a@x.org-2", "b@x.org"]
    assert second.data.column("email").to_pylist() == ["a@x.org-3", "b@x.org-2"]
    assert first.rejects == () and second.rejects == ()


def test_keep_fix_skips_a_suffix_whose_key_is_taken() -> None:
    out = dedupe(keep="fix")(batch(id=[1, 2, 3], email=["a", "a-2", "a"]))

    assert out.data.column("email").to_pylist() == ["a", "a-2", "a-3"]


def test_a_key_a_fix_made_counts_as_taken() -> None:
    step = dedupe(keep="fix")
    step(batch(1, id=[1, 2], email=["a", "a"]))

    out = step(batch(3, id=[3], email=["a-2"]))

    assert out.data.column("email").to_pylist() == ["a-2-2"]


def test_keep_fix_suffixes_the_first_string_column_of_the_key() -> None:
    out = dedupe(["tenant", "name", "nick"], keep="fix")(
        batch(id=[1, 2], tenant=[7, 7], name=["Ann", "Ann"], nick=["A", "A"]))

    assert out.data.to_pydict() == {"id": [1, 2], "tenant": [7, 7], "name": ["Ann", "Ann-2"], "nick": ["A", "A"]}


# --- the set of hashes ----------------------------------------------------------------------------


def test_the_set_finds_every_hash_it_holds_after_growing_and_no_other() -> None:
    rng = random.Random(7)
    held = [rng.getrandbits(64) | 1 for _ in range(150_000)]
    others = pa.array([rng.getrandbits(64) | 1 for _ in range(5_000)], pa.uint64())
    seen = HashSet(bits=8)
    for start in range(0, len(held), 25_000):
        seen.add(pa.array(held[start:start + 25_000], pa.uint64()))

    assert len(seen) == len(held)
    assert pc.all(seen.add(pa.array(held, pa.uint64()))).as_py()
    assert not pc.any(seen.probe(others)[0]).as_py()


def test_the_set_wraps_hashes_past_its_last_slot_around_to_the_first_also_when_growing() -> None:
    top = [(1 << 64) - k for k in range(1, 1_000)]  # all want the last slot
    seen = HashSet(bits=10)
    seen.add(pa.array(top[:600], pa.uint64()))
    seen.reserve(1 << 11)  # grows: the same cluster, laid out anew

    found = seen.add(pa.array(top, pa.uint64()))

    assert found.to_pylist() == [True] * 600 + [False] * 399
    assert len(seen) == len(top)


def test_a_cluster_of_hashes_wanting_one_slot_stays_whole_when_the_set_grows_in_pieces() -> None:
    # Growing lays hashes out 65,536 at a time; these 16 share a first slot across such a boundary.
    first = [3 * i if not 65_530 <= i < 65_546 else 3 * 65_530 for i in range(70_000)]
    hashes = pa.array([(f << 46) | (i + 1) for i, f in enumerate(first)], pa.uint64())  # top 18 bits: f
    seen = HashSet(bits=17)
    seen.add(hashes)

    seen.reserve(100_000)  # to 2^18 slots

    assert pc.all(seen.probe(hashes)[0]).as_py()
    assert len(seen) == 70_000
