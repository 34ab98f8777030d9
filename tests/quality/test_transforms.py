"""The spec's transforms, one table's list applied in order: what each op does to the rows, which
rows become rejects (row number, key, column, value, rule) and which specs are refused."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa
import pytest

from service.core.errors import InvalidSpec
from service.quality.rows import Rows
from service.quality.transforms import compile_transforms


def rows(columns: dict[str, list[object]] | pa.RecordBatch, first_row: int = 1, key: Sequence[str] = ()) -> Rows:
    data = columns if isinstance(columns, pa.RecordBatch) else pa.RecordBatch.from_pydict(columns)
    return Rows.of("users", data, first_row, key)


def run(spec: list[object], given: Rows) -> Rows:
    step = compile_transforms("users", spec)
    assert step is not None
    return step(given)


def columns(out: Rows) -> dict[str, list[object]]:
    data: dict[str, list[object]] = out.data.to_pydict()
    return data


def rejects(out: Rows) -> list[tuple[object, ...]]:
    return [(r.row, r.key, r.column, r.value, r.rule) for r in out.rejects]


def problems(spec: list[object], given: Rows | None = None) -> list[str]:
    with pytest.raises(InvalidSpec) as caught:
        step = compile_transforms("users", spec)
        assert step is not None
        step(given or rows({"a": ["x"]}))
    return caught.value.problems


# --- the list -------------------------------------------------------------------------------------


def test_no_transforms_compile_to_no_step() -> None:
    assert compile_transforms("users", None) is None
    assert compile_transforms("users", []) is None


def test_entries_apply_in_order_so_lowercase_reaches_a_renamed_column_by_its_new_name() -> None:
    out = run([{"rename": {"Mail": "email"}}, {"lowercase": ["email"]}], rows({"Mail": ["Ann@X.org"]}))

    assert columns(out) == {"email": ["ann@x.org"]}


def test_an_entry_before_the_rename_that_makes_its_column_is_refused() -> None:
    found = problems([{"lowercase": ["email"]}, {"rename": {"Mail": "email"}}], rows({"Mail": ["Ann@X.org"]}))

    assert found == ["transforms.users[0].lowercase: users has no column 'email' (it has Mail)"]


def test_an_unknown_op_is_refused_listing_the_known_ops() -> None:
    found = problems([{"upcase": ["a"]}])

    assert found == ["transforms.users[0]: unknown transform 'upcase'; expected one of rename, drop, cast, "
                     "lowercase, uppercase, trim, default, dateFormat, replace, concat, split, map, compute"]


def test_an_entry_with_two_ops_is_refused() -> None:
    assert problems([{"lowercase": ["a"], "trim": ["a"]}]) == [
        "transforms.users[0] must be a mapping of one op to its arguments, e.g. {lowercase: [email]}"]


def test_every_problem_of_the_spec_is_listed_at_once() -> None:
    found = problems([{"cast": {"a": "integr"}}, {"drop": 3}, {"compute": {"into": "b"}}])

    assert found == [
        "transforms.users[0].cast.a: unknown type 'integr'; expected one of binary, bool, boolean, date, float, int, "
        "integer, json, objectid, string, text, timestamp, timestamptz, uuid, decimal(p,s), [type]",
        "transforms.users[1].drop must be a list of column names",
        "transforms.users[2].compute.expr is required",
    ]


def test_every_missing_column_is_listed_at_the_first_batch_naming_table_op_and_column() -> None:
    found = problems([{"trim": ["b"]}, {"drop": ["c"]}, {"uppercase": ["a"]}])

    assert found == ["transforms.users[0].trim: users has no column 'b' (it has a)",
                     "transforms.users[1].drop: users has no column 'c' (it has a)"]


def test_a_later_batch_of_the_same_schema_is_transformed_alike() -> None:
    step = compile_transforms("users", [{"uppercase": ["a"]}])
    assert step is not None

    step(rows({"a": ["x"]}))
    out = step(rows({"a": ["y", None]}, first_row=2))

    assert columns(out) == {"a": ["Y", None]}


# --- rename, drop ---------------------------------------------------------------------------------


def test_rename_renames_columns_and_keeps_their_values_and_places() -> None:
    out = run([{"rename": {"fullName": "name", "id": "user_id"}}], rows({"id": [1, 2], "fullName": ["A", "B"]}))

    assert columns(out) == {"user_id": [1, 2], "name": ["A", "B"]}


def test_rename_onto_an_existing_column_is_refused() -> None:
    found = problems([{"rename": {"a": "b"}}], rows({"a": [1], "b": [2]}))

    assert found == ["transforms.users[0].rename.a: there is already a column 'b'"]


def test_a_reject_after_a_rename_of_the_key_still_names_the_key() -> None:
    out = run([{"rename": {"id": "user_id"}}, {"cast": {"age": "integer"}}],
              rows({"id": [7, 8], "age": ["x", "3"]}, key=["id"]))

    assert rejects(out) == [(1, "7", "age", "x", "cast")]


def test_drop_removes_columns() -> None:
    out = run([{"drop": ["legacy_id", "tmp"]}], rows({"id": [1], "legacy_id": [9], "tmp": ["t"]}))

    assert columns(out) == {"id": [1]}


# --- cast -----------------------------------------------------------------------------------------


def test_cast_converts_a_column_to_the_spec_type() -> None:
    out = run([{"cast": {"score": "decimal(10,3)", "age": "integer"}}],
              rows({"score": ["1.5", "2.25"], "age": ["30", None]}))

    assert out.data.schema.field("score").type == pa.decimal128(10, 3)
    assert columns(out) == {"score": [pytest.approx(1.5), pytest.approx(2.25)], "age": [30, None]}


def test_cast_rejects_the_rows_that_do_not_cast_naming_row_key_and_value() -> None:
    given = rows({"id": [10, 11, 12, 13, 14], "age": ["30", "abc", "41", "1.5", "7"]}, first_row=21, key=["id"])

    out = run([{"cast": {"age": "integer"}}], given)

    assert rejects(out) == [(22, "11", "age", "abc", "cast"), (24, "13", "age", "1.5", "cast")]
    assert out.rejects[0].message == "cannot cast 'abc' to integer"
    assert columns(out) == {"id": [10, 12, 14], "age": [30, 41, 7]}


def test_cast_rejects_keep_source_row_numbers_after_earlier_rejects() -> None:
    given = rows({"born": ["01/01/2000", "bad", "02/01/2000", "03/01/2000"], "age": ["1", "2", "x", "4"]})

    out = run([{"dateFormat": {"born": "%d/%m/%Y"}}, {"cast": {"age": "integer"}}], given)

    assert rejects(out) == [(2, None, "born", "bad", "dateFormat"), (3, None, "age", "x", "cast")]
    assert columns(out)["age"] == [1, 4]


def test_cast_between_types_that_never_convert_is_refused() -> None:
    found = problems([{"cast": {"d": "boolean"}}], rows({"d": [dt.date(2020, 1, 1)]}))

    assert found == ["transforms.users[0].cast.d: date cannot be cast to boolean"]


# --- lowercase, uppercase, trim -------------------------------------------------------------------


def test_lowercase_uppercase_and_trim_change_text_and_keep_nulls() -> None:
    out = run([{"lowercase": ["a"]}, {"uppercase": ["b"]}, {"trim": ["c"]}],
              rows({"a": ["ÄbC", None], "b": ["xY", "z"], "c": ["  p q ", None]}))

    assert columns(out) == {"a": ["äbc", None], "b": ["XY", "Z"], "c": ["p q", None]}


def test_a_text_op_on_a_number_column_is_refused() -> None:
    found = problems([{"trim": ["age"]}], rows({"age": [1]}))

    assert found == ["transforms.users[0].trim: age is integer, not text"]


# --- default --------------------------------------------------------------------------------------


def test_default_fills_nulls() -> None:
    out = run([{"default": {"country": "US", "age": 0}}], rows({"country": ["DE", None], "age": [None, 5]}))

    assert columns(out) == {"country": ["DE", "US"], "age": [0, 5]}


def test_default_of_a_missing_column_adds_it_with_the_value_in_every_row() -> None:
    out = run([{"default": {"active": True}}], rows({"id": [1, 2]}))

    assert columns(out) == {"id": [1, 2], "active": [True, True]}


def test_a_default_that_does_not_fit_the_column_is_refused() -> None:
    found = problems([{"default": {"age": "none"}}], rows({"age": [1]}))

    assert found == ["transforms.users[0].default.age: 'none' is not a integer"]


# --- dateFormat -----------------------------------------------------------------------------------


def test_date_format_parses_text_to_dates() -> None:
    out = run([{"dateFormat": {"born": "%d/%m/%Y"}}], rows({"born": ["31/12/1999", None, "1/2/2020"]}))

    assert out.data.schema.field("born").type == pa.date32()
    assert columns(out) == {"born": [dt.date(1999, 12, 31), None, dt.date(2020, 2, 1)]}


def test_date_format_with_a_time_parses_to_timestamps() -> None:
    out = run([{"dateFormat": {"at": "%d.%m.%Y %H:%M"}}], rows({"at": ["02.01.2020 10:30"]}))

    assert columns(out) == {"at": [dt.datetime(2020, 1, 2, 10, 30)]}


def test_date_format_rejects_text_that_does_not_parse_or_names_no_such_day() -> None:
    given = rows({"born": ["31/12/1999", "1999-12-31", "31/02/2020", "", "29/02/2020"]})

    out = run([{"dateFormat": {"born": "%d/%m/%Y"}}], given)

    assert rejects(out) == [(2, None, "born", "1999-12-31", "dateFormat"), (3, None, "born", "31/02/2020", "dateFormat"),
                            (4, None, "born", "", "dateFormat")]
    assert out.rejects[0].message == "'1999-12-31' is not a date in the format '%d/%m/%Y'"
    assert columns(out) == {"born": [dt.date(1999, 12, 31), dt.date(2020, 2, 29)]}


# --- replace --------------------------------------------------------------------------------------


def test_replace_substitutes_regex_matches() -> None:
    out = run([{"replace": {"phone": {"pattern": r"[^0-9+]", "with": ""}}}],
              rows({"phone": ["+49 (30) 123-45", None]}))

    assert columns(out) == {"phone": ["+493012345", None]}


def test_replace_with_an_invalid_regex_is_refused() -> None:
    found = problems([{"replace": {"a": {"pattern": "(", "with": ""}}}])

    assert found == ["transforms.users[0].replace.a.pattern '(': Invalid regular expression: missing ): (()"]


# --- concat, split --------------------------------------------------------------------------------


def test_concat_joins_columns_skipping_nulls() -> None:
    given = rows({"first": ["Ann", None, "Cy", None], "last": ["Lee", "Bo", None, None], "n": [1, 2, 3, 4]})

    out = run([{"concat": {"into": "name", "columns": ["first", "last", "n"], "separator": " "}}], given)

    assert columns(out)["name"] == ["Ann Lee 1", "Bo 2", "Cy 3", "4"]


def test_concat_of_nulls_only_is_null() -> None:
    out = run([{"concat": {"into": "name", "columns": ["first", "last"]}}],
              rows({"first": [None, "A"], "last": [None, "B"]}))

    assert columns(out)["name"] == [None, "A B"]


def test_split_fills_the_columns_in_order_and_leaves_missing_parts_null() -> None:
    out = run([{"split": {"column": "name", "into": ["first", "last"], "separator": " "}}],
              rows({"name": ["Ann Lee", "Bo", "Cy de Vries", None]}))

    assert columns(out) == {"name": ["Ann Lee", "Bo", "Cy de Vries", None], "first": ["Ann", "Bo", "Cy", None],
                            "last": ["Lee", None, "de Vries", None]}


def test_split_into_an_existing_column_replaces_it() -> None:
    out = run([{"split": {"column": "name", "into": ["name", "rest"], "separator": ","}}], rows({"name": ["a,b"]}))

    assert columns(out) == {"name": ["a"], "rest": ["b"]}


# --- map ------------------------------------------------------------------------------------------


def test_map_looks_values_up_and_keeps_unmapped_values() -> None:
    out = run([{"map": {"country": {"Germany": "DE", "France": "FR", None: "US"}}}],
              rows({"country": ["Germany", "Spain", None, "France"]}))

    assert columns(out) == {"country": ["DE", "Spain", "US", "FR"]}


def test_map_of_number_codes_to_labels_gives_text() -> None:
    out = run([{"map": {"status": {"1": "active", "0": "inactive"}}}], rows({"status": [1, 0, 2]}))

    assert columns(out) == {"status": ["active", "inactive", "2"]}


def test_map_keeps_the_column_type_when_the_new_values_fit_it() -> None:
    out = run([{"map": {"n": {-1: None, 99: 100}}}], rows({"n": [1, -1, 99]}))

    assert out.data.schema.field("n").type == pa.int64()
    assert columns(out) == {"n": [1, None, 100]}


# --- compute --------------------------------------------------------------------------------------


def test_compute_multiplies_before_it_adds() -> None:
    out = run([{"compute": {"into": "total", "expr": "price + qty * 2"}}], rows({"price": [10, 1], "qty": [3, None]}))

    assert columns(out)["total"] == [16, None]


def test_compute_parentheses_group() -> None:
    out = run([{"compute": {"into": "total", "expr": "(price + qty) * 2 - -1"}}], rows({"price": [10], "qty": [3]}))

    assert columns(out)["total"] == [27]


def test_compute_divides_integers_as_numbers_with_fractions() -> None:
    out = run([{"compute": {"into": "half", "expr": "a / 2"}}], rows({"a": [7]}))

    assert columns(out)["half"] == [3.5]


def test_compute_joins_text_with_double_bar_and_quoted_literals() -> None:
    out = run([{"compute": {"into": "label", "expr": "name || ' (' || age || ')' || 'it''s'"}}],
              rows({"name": ["Ann", "Bo"], "age": [30, None]}))

    assert columns(out)["label"] == ["Ann (30)it's", None]


def test_compute_into_an_existing_column_replaces_it() -> None:
    out = run([{"compute": {"into": "a", "expr": "a * 10"}}], rows({"a": [1, 2], "b": [0, 0]}))

    assert columns(out) == {"a": [10, 20], "b": [0, 0]}


def test_compute_rejects_the_rows_it_cannot_compute() -> None:
    out = run([{"compute": {"into": "ratio", "expr": "a / b"}}], rows({"a": [1, 2, 3], "b": [2, 0, 4]}, first_row=5))

    assert rejects(out) == [(6, None, "ratio", "a=2, b=0", "compute")]
    assert out.rejects[0].message == "cannot compute ratio = a / b: divide by zero"
    assert columns(out) == {"a": [1, 3], "b": [2, 4], "ratio": [0.5, 0.75]}


def test_compute_refuses_anything_but_its_expression_language() -> None:
    found = problems([{"compute": {"into": "x", "expr": "__import__('os')"}}])

    assert found == ["transforms.users[0].compute.expr \"__import__('os')\" is not a valid expression (unexpected "
                     "'(' at 11); expected columns, numbers, 'texts', + - * / ( ) and ||"]


@pytest.mark.parametrize("expr", ["a +", "(a", "a.b", "a ** 2", "'open", "a b", ""])
def test_compute_refuses_malformed_expressions(expr: str) -> None:
    found = problems([{"compute": {"into": "x", "expr": expr}}])

    assert len(found) == 1 and found[0].startswith("transforms.users[0].compute.expr")


def test_compute_of_a_missing_column_is_refused() -> None:
    found = problems([{"compute": {"into": "x", "expr": "a + nope"}}], rows({"a": [1]}))

    assert found == ["transforms.users[0].compute: users has no column 'nope' (it has a)"]


def test_compute_adding_text_to_a_number_is_refused() -> None:
    found = problems([{"compute": {"into": "x", "expr": "a + 1"}}], rows({"a": ["t"]}))

    assert len(found) == 1 and found[0].startswith("transforms.users[0].compute: ")
    assert "add_checked" in found[0]
