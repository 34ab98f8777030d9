"""Validation rules: which rows a table's rules reject, warn about or fix, and why — over Arrow
batches, with the source row numbers and keys the rejects name."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pytest

from service.core.batch import Reject
from service.core.errors import InvalidSpec
from service.quality.rows import Rows
from service.quality.rules import RuleStep, compile_rules


def rules(spec: dict[str, object], table: str = "users") -> RuleStep:
    step = compile_rules(table, spec)
    assert step is not None
    return step


def rows(first_row: int = 1, table: str = "users", **columns: list[object] | pa.Array) -> Rows:
    return Rows.of(table, pa.record_batch(columns), first_row, ("id",))


def why(out: Rows) -> list[tuple[int | None, str | None, str | None, str]]:
    """Each reject as (row, column, value, rule)."""
    return [(r.row, r.column, r.value, r.rule) for r in out.rejects]


def ids(out: Rows) -> list[object]:
    return list(out.data.column("id").to_pylist())


# --- the spec ------------------------------------------------------------------------------------


def test_no_step_when_validation_is_off() -> None:
    assert compile_rules("users", {"email": {"required": True}}, enabled=False) is None


@pytest.mark.parametrize("spec", [None, {}, {"email": {}}, {"email": {"required": False, "unique": False}}])
def test_no_step_when_there_is_nothing_to_check(spec: dict[str, object] | None) -> None:
    assert compile_rules("users", spec) is None


def test_every_problem_of_the_spec_is_listed_at_once_with_its_path() -> None:
    with pytest.raises(InvalidSpec) as caught:
        compile_rules("users", {
            "email": {"format": "phone", "required": "yes", "unique": 1, "color": "red"},
            "age": {"min": "zero", "max": True, "type": "bigint"},
            "name": {"minLength": -1, "maxLength": 2.5, "pattern": "(unclosed"},
            "score": {"min": 10, "max": 1},
            "country": {"enum": ["US", False], "action": "drop"},
            "tag": {"enum": [], "fix": "x"},
            "zip": {"pattern": r"\d{5}", "action": "fix"},
            "city": "required",
        })
    problems = caught.value.problems
    expected = [
        "rules.users.email: unknown rule 'color'",
        "rules.users.email.required must be true or false",
        "rules.users.email.unique must be true or false",
        "rules.users.email.format must be one of email, url, uuid, date, datetime",
        "rules.users.age.type: unknown type 'bigint'",
        "rules.users.age.min must be a number or an ISO date/datetime",
        "rules.users.age.max must be a number or an ISO date/datetime",
        "rules.users.name.pattern is not a valid regular expression",
        "rules.users.name.minLength must be a non-negative integer",
        "rules.users.name.maxLength must be a non-negative integer",
        "rules.users.score: min 10 is greater than max 1",
        "rules.users.country.enum mixes kinds of values (bool, str); in YAML quote them",
        "rules.users.country.action must be one of reject, warn, fix",
        "rules.users.tag.enum must be a non-empty list of values",
        "rules.users.tag.fix needs action: fix",
        "rules.users.zip.action fix needs a fix value (fix: null clears the value)",
        "rules.users.city must be a mapping of rules",
    ]
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected):
        assert problem.startswith(start)


def test_a_null_fix_for_a_required_column_is_refused() -> None:
    with pytest.raises(InvalidSpec) as caught:
        compile_rules("users", {"email": {"required": True, "action": "fix", "fix": None}})
    assert caught.value.problems == ["rules.users.email.fix cannot be null: the column is required"]


def test_a_rule_on_a_column_the_table_does_not_have_is_refused_at_the_first_batch() -> None:
    step = rules({"email": {"required": True}, "mail": {"format": "email"}})

    with pytest.raises(InvalidSpec) as caught:
        step(rows(id=[1], email=["a@x.io"]))
    assert caught.value.problems == ["rules.users.mail: table users has no column 'mail' (it has id, email)"]


def test_rules_that_do_not_fit_the_column_types_are_all_refused_at_the_first_batch() -> None:
    step = rules({
        "born": {"min": 0, "pattern": "x"},
        "age": {"enum": ["old", "young"], "action": "fix", "fix": "n/a"},
        "tags": {"unique": True},
    })

    with pytest.raises(InvalidSpec) as caught:
        step(rows(id=[1], born=[date(2000, 1, 1)], age=[3], tags=[["a"]]))
    assert caught.value.problems == [
        "rules.users.born.min 0 cannot be compared with the values: column born holds date",
        "rules.users.age.enum values do not fit: column age holds integer",
        "rules.users.age.fix 'n/a' does not fit: column age holds integer",
        "rules.users.tags.unique needs single values, but column tags holds [string]",
    ]


# --- each rule ----------------------------------------------------------------------------------


def test_type_rejects_values_that_do_not_convert_and_leaves_the_data_as_it_was() -> None:
    out = rules({"age": {"type": "integer"}})(rows(id=[1, 2, 3, 4], age=["30", "abc", "4.5", "7"]))

    assert why(out) == [(2, "age", "abc", "type"), (3, "age", "4.5", "type")]
    assert out.rejects[0].message == "users.age type: 'abc' is not a valid integer"
    assert out.data.column("age").to_pylist() == ["30", "7"]
    assert out.data.schema.field("age").type == pa.string()


def test_type_rejects_every_value_when_the_column_type_cannot_convert_at_all() -> None:
    out = rules({"active": {"type": "date"}})(rows(id=[1, 2, 3], active=[True, None, False]))

    assert why(out) == [(1, "active", "True", "type"), (3, "active", "False", "type")]


def test_type_uuid_requires_the_uuid_shape() -> None:
    out = rules({"ref": {"type": "uuid"}})(rows(id=[1, 2], ref=["123e4567-e89b-12d3-a456-426614174000", "42"]))

    assert why(out) == [(2, "ref", "42", "type")]


def test_required_rejects_nulls_and_strings_blank_after_trimming() -> None:
    out = rules({"email": {"required": True}})(rows(id=[1, 2, 3, 4], email=["a@x.io", None, "", "  \t"]))

    assert why(out) == [(2, "email", None, "required"), (3, "email", "", "required"), (4, "email", "  \t", "required")]
    assert [r.message for r in out.rejects] == ["users.email required: a value is required",
                                                "users.email required: blank value ''",
                                                "users.email required: blank value '  \\t'"]
    assert ids(out) == [1]


@pytest.mark.parametrize(("fmt", "good", "bad"), [
    ("email", ["ann@example.com", "a.b+c@mail.co.uk"], ["ann", "ann@", "@x.com", "a@b", "a b@x.com", "a@x..com"]),
    ("url", ["https://example.com", "http://x.io/a?b=1#c", "FTP://host"], ["example.com", "https://", "http://a b"]),
    ("uuid", ["123e4567-e89b-12d3-a456-426614174000", "123E4567-E89B-12D3-A456-426614174000"],
     ["123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400g"]),
    ("date", ["2024-02-29", "1999-12-31"], ["2023-02-29", "2024-13-01", "2024-1-1", "31.12.1999", "2024-01-01T00:00"]),
    ("datetime", ["2024-01-01T10:00:00", "2024-01-01 10:00", "2024-01-01T10:00:00.123Z", "2024-01-01T10:00+02:00"],
     ["2024-01-01", "2024-02-30T10:00", "2024-01-01T24:00", "2024-01-01T10:00:00 UTC"]),
])
def test_format_rejects_the_values_not_in_the_format(fmt: str, good: list[str], bad: list[str]) -> None:
    values = good + bad
    out = rules({"v": {"format": fmt}})(rows(id=list(range(1, len(values) + 1)), v=values))

    assert [r.value for r in out.rejects] == bad
    assert {r.rule for r in out.rejects} == {"format"}
    assert out.rejects[0].message == f"users.v format: {bad[0]!r} is not a valid {fmt}"
    assert out.data.column("v").to_pylist() == good


def test_format_date_passes_a_date_column() -> None:
    out = rules({"born": {"format": "date"}})(rows(id=[1], born=[date(2024, 1, 1)]))

    assert out.rejects == () and out.data.num_rows == 1


def test_pattern_must_match_the_whole_value() -> None:
    out = rules({"zip": {"pattern": r"\d{5}"}})(rows(id=[1, 2, 3], zip=["12345", "123456", "x12345"]))

    assert why(out) == [(2, "zip", "123456", "pattern"), (3, "zip", "x12345", "pattern")]
    assert out.rejects[0].message == r"users.zip pattern: '123456' does not match \d{5}"


def test_pattern_reads_numbers_as_text() -> None:
    out = rules({"zip": {"pattern": r"\d{5}"}})(rows(id=[1, 2], zip=[12345, 123]))

    assert why(out) == [(2, "zip", "123", "pattern")]


def test_min_and_max_reject_numbers_out_of_range_and_keep_the_bounds() -> None:
    out = rules({"age": {"min": 0, "max": 150}})(rows(id=[1, 2, 3, 4], age=[-1, 0, 150, 151]))

    assert why(out) == [(1, "age", "-1", "min"), (4, "age", "151", "max")]
    assert [r.message for r in out.rejects] == ["users.age min: -1 is less than 0", "users.age max: 151 is greater than 150"]


def test_min_and_max_compare_decimal_bounds_with_a_float_column() -> None:
    out = rules({"score": {"min": 0.5, "max": 9.5}})(rows(id=[1, 2, 3], score=[0.4, 5.0, 9.6]))

    assert [r.rule for r in out.rejects] == ["min", "max"]


def test_min_on_text_compares_numbers_and_rejects_what_is_not_a_number() -> None:
    out = rules({"age": {"min": 18}})(rows(id=[1, 2, 3], age=["17", "18.5", "old"]))

    assert why(out) == [(1, "age", "17", "min"), (3, "age", "old", "min")]
    assert out.rejects[1].message == "users.age min: 'old' is not a number, cannot compare with 18"


def test_min_and_max_compare_iso_dates_with_a_date_column() -> None:
    out = rules({"born": {"min": "1900-01-01", "max": date(2020, 12, 31)}})(
        rows(id=[1, 2, 3], born=[date(1899, 12, 31), date(1950, 6, 1), date(2021, 1, 1)]))

    assert why(out) == [(1, "born", "1899-12-31", "min"), (3, "born", "2021-01-01", "max")]
    assert out.rejects[0].message == "users.born min: 1899-12-31 is less than 1900-01-01"


def test_min_compares_an_iso_datetime_with_a_zoned_timestamp_column() -> None:
    seen = pa.array([datetime(2024, 1, 1, 9, 59, tzinfo=UTC), datetime(2024, 1, 1, 10, 0, tzinfo=UTC)],
                    pa.timestamp("us", "UTC"))
    out = rules({"seen": {"min": "2024-01-01T12:00:00+02:00"}})(rows(id=[1, 2], seen=seen))

    assert [(r.row, r.rule) for r in out.rejects] == [(1, "min")]


def test_min_compares_a_date_with_date_texts() -> None:
    out = rules({"born": {"min": "2000-01-01"}})(rows(id=[1, 2, 3], born=["1999-12-31", "2000-01-01", "soon"]))

    assert why(out) == [(1, "born", "1999-12-31", "min"), (3, "born", "soon", "min")]
    assert out.rejects[1].message == "users.born min: 'soon' is not a date, cannot compare with 2000-01-01"


def test_min_and_max_length_count_characters() -> None:
    out = rules({"name": {"minLength": 2, "maxLength": 4}})(rows(id=[1, 2, 3, 4], name=["A", "Zoë", "Anna", "Annie"]))

    assert why(out) == [(1, "name", "A", "length"), (4, "name", "Annie", "length")]
    assert [r.message for r in out.rejects] == ["users.name length: 'A' is shorter than 2 characters",
                                                "users.name length: 'Annie' is longer than 4 characters"]


def test_enum_rejects_values_not_in_the_list() -> None:
    out = rules({"country": {"enum": ["US", "DE", "FR"]}})(rows(id=[1, 2, 3], country=["US", "UK", "us"]))

    assert why(out) == [(2, "country", "UK", "enum"), (3, "country", "us", "enum")]
    assert out.rejects[0].message == "users.country enum: 'UK' is not one of 'US', 'DE', 'FR'"


def test_enum_of_numbers_checks_a_number_column() -> None:
    out = rules({"level": {"enum": [1, 2, 3]}})(rows(id=[1, 2], level=[2, 5]))

    assert why(out) == [(2, "level", "5", "enum")]


def test_unique_rejects_the_copies_after_the_first_in_a_batch() -> None:
    out = rules({"email": {"unique": True}})(
        rows(id=[1, 2, 3, 4, 5], email=["a@x.io", "b@x.io", "a@x.io", "c@x.io", "a@x.io"]))

    assert why(out) == [(3, "email", "a@x.io", "unique"), (5, "email", "a@x.io", "unique")]
    assert out.rejects[0].message == "Duplicate key in users.email: 'a@x.io'"
    assert ids(out) == [1, 2, 4]


def test_unique_remembers_the_values_of_earlier_batches() -> None:
    step = rules({"email": {"unique": True}})
    first = step(rows(1, id=[1, 2], email=["a@x.io", "b@x.io"]))
    second = step(rows(3, id=[3, 4, 5], email=["c@x.io", "b@x.io", "a@x.io"]))

    assert first.rejects == ()
    assert why(second) == [(4, "email", "b@x.io", "unique"), (5, "email", "a@x.io", "unique")]
    assert ids(second) == [3]


def test_unique_remembers_numbers_exactly() -> None:
    step = rules({"code": {"unique": True}})
    step(rows(1, id=[1], code=[-1]))  # hash(-1) == hash(-2) in Python: numbers are kept as they are
    out = step(rows(2, id=[2, 3], code=[-2, -1]))

    assert why(out) == [(3, "code", "-1", "unique")]


def test_unique_does_not_remember_values_of_rows_rejected_by_another_rule() -> None:
    step = rules({"age": {"min": 0}, "email": {"unique": True}})
    first = step(rows(1, id=[1], age=[-5], email=["a@x.io"]))
    second = step(rows(2, id=[2], age=[30], email=["a@x.io"]))

    assert why(first) == [(1, "age", "-5", "min")]
    assert second.rejects == () and ids(second) == [2]


# --- how the rules combine ----------------------------------------------------------------------


def test_a_null_passes_every_rule_but_required() -> None:
    every = {"type": "integer", "format": "uuid", "pattern": "x", "min": 1, "max": 2, "minLength": 3,
             "maxLength": 4, "enum": ["a"], "unique": True}
    step = rules({"v": every, "w": {"required": True}})
    out = step(rows(id=[1, 2], v=pa.array([None, None], pa.string()), w=["ok", None]))

    assert why(out) == [(2, "w", None, "required")]
    assert ids(out) == [1]


def test_a_value_is_named_by_its_first_failing_rule() -> None:
    step = rules({"email": {"required": True, "format": "email", "maxLength": 8, "unique": True}})
    out = step(rows(id=[1, 2, 3, 4, 5], email=["", "a@x.io", "not-an-email-at-all", "abc@xy.io", "a@x.io"]))

    assert why(out) == [(1, "email", "", "required"), (3, "email", "not-an-email-at-all", "format"),
                        (4, "email", "abc@xy.io", "length"), (5, "email", "a@x.io", "unique")]


def test_type_is_checked_before_min() -> None:
    out = rules({"age": {"type": "integer", "min": 0}})(rows(id=[1, 2], age=["abc", "-3"]))

    assert why(out) == [(1, "age", "abc", "type"), (2, "age", "-3", "min")]


def test_a_row_failing_several_columns_is_one_reject_naming_the_first_column() -> None:
    out = rules({"email": {"format": "email"}, "age": {"min": 0}})(rows(id=[1, 2], email=["bad", "ok@x.io"],
                                                                           age=[-1, -2]))

    assert why(out) == [(1, "email", "bad", "format"), (2, "age", "-2", "min")]


def test_removed_rows_keep_their_source_row_numbers_and_keys() -> None:
    step = rules({"age": {"max": 150}})
    earlier = Rows.of("users", pa.record_batch({"id": [10, 11, 12, 13, 14], "age": [1, 200, 2, 300, 3]}), 101, ("id",))
    trimmed = earlier.reject(pa.array([True, False, False, False, False]), "age", "other", lambda v: "earlier step")

    out = step(trimmed)

    assert [(r.row, r.key, r.value) for r in out.rejects[1:]] == [(102, "11", "200"), (104, "13", "300")]
    assert out.numbers.to_pylist() == [103, 105]
    assert ids(out) == [12, 14]


def test_a_batch_of_no_rows_passes_through() -> None:
    out = rules({"email": {"required": True}})(rows(id=pa.array([], pa.int64()), email=pa.array([], pa.string())))

    assert out.rejects == () and out.data.num_rows == 0


def test_a_column_with_only_nulls_in_a_batch_fails_only_required() -> None:
    step = rules({"email": {"format": "email", "required": True}, "age": {"min": 0, "unique": True}})
    out = step(rows(id=[1, 2], email=["a@x.io", None], age=[None, None]))

    assert why(out) == [(2, "email", None, "required")]


# --- actions ------------------------------------------------------------------------------------


def test_warn_keeps_the_row_unchanged_and_records_the_finding_as_a_warning() -> None:
    step = rules({"email": {"format": "email", "action": "warn"}})
    out = step(rows(id=[1, 2], email=["a@x.io", "bad"]))

    assert out.rejects == ()
    assert out.data.column("email").to_pylist() == ["a@x.io", "bad"]
    assert step.warnings == [Reject("users", 2, "2", "email", "bad", "format", "users.email format: 'bad' is not a valid email")]


def test_warnings_accumulate_over_batches_until_the_caller_clears_them() -> None:
    step = rules({"age": {"max": 10, "action": "warn"}})
    step(rows(1, id=[1], age=[11]))
    step(rows(2, id=[2], age=[12]))

    assert [w.row for w in step.warnings] == [1, 2]


def test_a_warning_is_not_recorded_for_a_row_another_column_rejects() -> None:
    step = rules({"age": {"max": 10, "action": "warn"}, "email": {"required": True}})
    out = step(rows(id=[1, 2], age=[11, 12], email=[None, "a@x.io"]))

    assert why(out) == [(1, "email", None, "required")]
    assert [w.row for w in step.warnings] == [2]


def test_fix_replaces_the_failing_value_with_null_and_keeps_the_row() -> None:
    step = rules({"email": {"format": "email", "action": "fix", "fix": None}})
    out = step(rows(id=[1, 2], email=["a@x.io", "bad"]))

    assert out.rejects == ()
    assert out.data.column("email").to_pylist() == ["a@x.io", None]
    assert [(w.row, w.value, w.rule, w.message) for w in step.warnings] == [
        (2, "bad", "format", "users.email format: 'bad' is not a valid email; replaced by null")]


def test_fix_replaces_a_number_out_of_range_with_the_fix_value() -> None:
    out = rules({"age": {"min": 0, "action": "fix", "fix": 0}})(rows(id=[1, 2, 3], age=[5, -3, None]))

    assert out.rejects == ()
    assert out.data.column("age").to_pylist() == [5, 0, None]
    assert out.data.schema.field("age").type == pa.int64()


def test_fix_converts_the_fix_value_to_the_column_type() -> None:
    out = rules({"age": {"type": "integer", "action": "fix", "fix": 0}})(rows(id=[1, 2], age=["7", "seven"]))

    assert out.data.column("age").to_pylist() == ["7", "0"]


def test_fix_on_unique_replaces_the_later_copies() -> None:
    step = rules({"email": {"unique": True, "action": "fix", "fix": None}})
    out = step(rows(id=[1, 2, 3], email=["a@x.io", "a@x.io", "b@x.io"]))

    assert out.data.column("email").to_pylist() == ["a@x.io", None, "b@x.io"]
    assert [(w.row, w.rule) for w in step.warnings] == [(2, "unique")]


def test_warn_on_unique_keeps_the_copies() -> None:
    step = rules({"email": {"unique": True, "action": "warn"}})
    step(rows(1, id=[1], email=["a@x.io"]))
    out = step(rows(2, id=[2, 3], email=["a@x.io", "a@x.io"]))

    assert ids(out) == [2, 3]
    assert [(w.row, w.message) for w in step.warnings] == [(2, "Duplicate key in users.email: 'a@x.io'"),
                                                           (3, "Duplicate key in users.email: 'a@x.io'")]
