"""The spec's validation rules for one table, as a vectorized quality step.

    rules:
      users:
        email:   {type: string, required: true, format: email, unique: true}
        age:     {type: integer, min: 0, max: 150, action: warn}
        country: {enum: [US, DE, FR], action: fix, fix: null}

Per column the checks run in a fixed order — type, required, format, pattern, min, max, length
(minLength/maxLength), enum, unique — and a failing value is named by its first failing rule.
A null passes every rule but `required` (which also refuses strings that are empty after trimming).
The column's `action` says what a failing value does: `reject` (default) removes the row as a
reject; `warn` keeps the row unchanged and records the finding in `RuleStep.warnings`; `fix`
replaces the value by the column's `fix` value, keeps the row and records the finding there too.
A row is rejected once, for its first failing column in spec order; warnings are not recorded for
rows that are rejected. The data of kept rows is never changed except by `fix` (a fix value is not
checked again against the column's other rules).

Everything is computed over whole columns with pyarrow.compute; only failing rows become Python
objects. `unique` runs after the other rules, over the rows they kept, and remembers the values it
let through across batches: exact values for numbers, dates and booleans, 64-bit hashes of strings
and bytes (a false duplicate is possible: about a 1 in 400,000 chance over 10M distinct values).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from itertools import compress
from typing import Literal, cast

import pyarrow as pa
import pyarrow.compute as pc

from service.core.batch import Reject
from service.core.errors import InvalidSpec
from service.core.types import arrow_type_from_spec, spec_type_name
from service.quality.conform import CAST_ERRORS, failing_casts
from service.quality.conform import cast as convert
from service.quality.rows import Rows, flags

Action = Literal["reject", "warn", "fix"]
Format = Literal["email", "url", "uuid", "date", "datetime"]
Bound = int | float | Decimal | date | datetime  # a datetime is a date too: test it first
Value = str | int | float | bool | Decimal | date | datetime | None

ACTIONS: tuple[Action, ...] = ("reject", "warn", "fix")
FORMATS: tuple[Format, ...] = ("email", "url", "uuid", "date", "datetime")
KEYS = ("type", "required", "format", "pattern", "min", "max", "minLength", "maxLength", "enum", "unique",
        "action", "fix")

_EMAIL = (r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
          r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_URL = r"^(?i:https?|ftp)://[^\s/?#]+(?:[/?#]\S*)?$"
_UUID = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
_OBJECTID = r"^[0-9A-Fa-f]{24}$"
# a day of the calendar, leap years included (one regex pass: cheaper than parsing)
_DAY = (r"(?:\d{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
        r"|(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)")
_DATE = rf"^{_DAY}$"
_DATETIME = (rf"^{_DAY}[Tt ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d{{1,9}})?)?"
             r"(?:[Zz]|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?$")
# Arrow scalars for pc calls: a Python constant costs a conversion (tens of µs) on every call
_ZERO = pa.scalar(0, pa.uint8())
_EMPTY = pa.scalar("", pa.string())

_SHAPES: dict[str, str] = {"email": _EMAIL, "url": _URL, "uuid": _UUID, "date": _DATE, "datetime": _DATETIME,
                           "objectid": _OBJECTID}


@dataclass(frozen=True)
class ColumnRules:
    """The rules the spec sets on one column, checked and normalised."""

    column: str
    type: str | None = None
    required: bool = False
    format: Format | None = None
    pattern: str | None = None
    min: Bound | None = None
    max: Bound | None = None
    min_length: int | None = None
    max_length: int | None = None
    enum: tuple[Value, ...] | None = None
    unique: bool = False
    action: Action = "reject"
    fix: Value = None

    @property
    def checks_anything(self) -> bool:
        return (self.type is not None or self.required or self.format is not None or self.pattern is not None
                or self.min is not None or self.max is not None or self.min_length is not None
                or self.max_length is not None or self.enum is not None or self.unique)


def compile_rules(table: str, spec: Mapping[str, object] | None, *, enabled: bool = True) -> RuleStep | None:
    """The step that checks `table`'s rows against `spec` (the spec's `rules.<table>` entry:
    `{column: {rule: value, …}}`), or None when validation is off or there is nothing to check.

    Raises InvalidSpec listing every problem of the entry at once. Problems that need the data
    (a column the table does not have, a bound or enum that does not fit the column's type) are
    raised by the step at the first batch."""
    if not enabled or not spec:
        return None
    problems: list[str] = []
    columns: list[ColumnRules] = []
    for column, raw in spec.items():
        rules = _parse_column(table, str(column), raw, problems)
        if rules is not None and rules.checks_anything:
            columns.append(rules)
    if problems:
        raise InvalidSpec(problems)
    return RuleStep(table, columns) if columns else None


class RuleStep:
    """A table's rules as a quality step (`Rows -> Rows`): rows failing a `reject` rule leave as
    rejects; findings of `warn` and `fix` rules accumulate in `warnings` (in row order per batch)
    for the caller to log and clear.

    Stateful only through `unique`: each call remembers the values it let through, so batches must
    be passed once each, in read order."""

    def __init__(self, table: str, rules: Sequence[ColumnRules]) -> None:
        self.table = table
        self.rules = tuple(rules)
        self.warnings: list[Reject] = []
        self._plans: tuple[pa.Schema, list[_ColumnPlan]] | None = None
        self._seen: dict[str, set[object]] = {r.column: set() for r in self.rules if r.unique}

    def __call__(self, rows: Rows) -> Rows:
        plans = self._plan(rows.data.schema)
        if rows.data.num_rows == 0:
            return rows
        run = _Run(self.table, rows)
        for plan in plans:
            run.check(plan)
        for plan in plans:
            if plan.rules.unique:
                run.check_unique(plan, self._seen[plan.rules.column])
        run.remember_unique(self._seen)
        self.warnings.extend(run.kept_findings())
        return rows.with_data(run.data).remove(run.rejected)

    def _plan(self, schema: pa.Schema) -> list[_ColumnPlan]:
        """The checks fitted to the batch's column types; made at the first batch (and again only
        if the types change). Raises InvalidSpec listing every rule that does not fit the data."""
        if self._plans is not None and self._plans[0].equals(schema):
            return self._plans[1]
        problems: list[str] = []
        plans: list[_ColumnPlan] = []
        for rules in self.rules:
            path = f"rules.{self.table}.{rules.column}"
            index = schema.get_field_index(rules.column)
            if index < 0:
                problems.append(f"{path}: table {self.table} has no column {rules.column!r} "
                                f"(it has {', '.join(schema.names) or 'no columns'})")
                continue
            plan = _plan_column(rules, index, schema.field(index).type, path, problems)
            if plan is not None:
                plans.append(plan)
        if problems:
            raise InvalidSpec(problems)
        self._plans = (schema, plans)
        return plans


# --- one batch ------------------------------------------------------------------------------------


class _Values:
    """One column of one batch, with the views of it that several checks share (computed once)."""

    def __init__(self, array: pa.Array) -> None:
        self.array = array
        self._text: pa.Array | None = None
        self._as: dict[pa.DataType, tuple[pa.Array, pa.Array]] = {}

    @property
    def text(self) -> pa.Array:
        if self._text is None:
            t = self.array.type
            self._text = self.array if _is_string(t) else pc.cast(self.array, pa.string())
        return self._text

    def converted(self, to: pa.DataType) -> tuple[pa.Array, pa.Array]:
        """The values as `to` (null where they do not convert), and a mask of those that do not."""
        if to not in self._as:
            self._as[to] = self._convert(to)
        return self._as[to]

    def _convert(self, to: pa.DataType) -> tuple[pa.Array, pa.Array]:
        array = self.array
        if array.type == to:
            return array, flags(len(array), ())
        try:
            return convert(array, to), flags(len(array), ())
        except CAST_ERRORS:
            pass
        try:
            convert(pa.nulls(1, array.type), to)
        except CAST_ERRORS:  # the types do not convert at all: every value fails
            return pa.nulls(len(array), to), pc.is_valid(array)
        bad = flags(len(array), failing_casts(array, to))
        return convert(pc.if_else(bad, pa.scalar(None, array.type), array), to), bad


@dataclass(frozen=True)
class _Check:
    rule: str
    bad: Callable[[_Values], pa.Array]  # true where a value fails
    why: Callable[[object], str]  # what is wrong with a failing value
    nulls_fail: bool = False

    def failing(self, values: _Values) -> pa.Array:
        bad = pc.fill_null(self.bad(values), False)
        return bad if self.nulls_fail else pc.and_(bad, pc.is_valid(values.array))


@dataclass(frozen=True)
class _ColumnPlan:
    rules: ColumnRules
    index: int
    checks: tuple[_Check, ...]
    fix: pa.Scalar | None  # the replacement value, of the column's type, when action is fix
    hashed: bool  # unique remembers hashes of the values (strings, bytes) rather than the values


@dataclass(frozen=True)
class _Candidates:
    """The rows of a batch a unique column checked, and their keys (values, or hashes of them)."""

    column: str
    positions: pa.Array
    keys: list[object]
    distinct: set[object]
    hashed: bool
    rejected_before: int  # how many rows of the batch were rejected when they were taken


class _Run:
    """The findings of one batch: rows to reject (at most one reject per row), findings on kept
    rows, and `data` with the fixes made."""

    def __init__(self, table: str, rows: Rows) -> None:
        self.table = table
        self.rows = rows
        self.data = rows.data
        self.rejected: dict[int, Reject] = {}
        self._kept: list[tuple[int, Reject]] = []
        self._named: dict[str, pa.Array] = {}  # per column: the rows one of its rules already named
        self._fixed: dict[str, object] = {}  # per column: the fix value, when one was used
        self._unique: list[_Candidates] = []

    def check(self, plan: _ColumnPlan) -> None:
        column = plan.rules.column
        values = _Values(self.data.column(plan.index))
        named: pa.Array | None = None
        for check in plan.checks:
            bad = check.failing(values)
            if named is not None:
                bad = pc.and_(bad, pc.invert(named))
            if not pc.any(bad).as_py():
                continue
            for i in pc.indices_nonzero(bad).to_pylist():
                value = values.array[i].as_py()
                self._found(plan, i, check.rule, value, f"{self.table}.{column} {check.rule}: {check.why(value)}")
            named = bad if named is None else pc.or_(named, bad)
        if named is not None:
            self._named[column] = named
            self._fix(plan, named)

    def check_unique(self, plan: _ColumnPlan, seen: set[object]) -> None:
        """Duplicates of a value seen in an earlier batch or earlier in this one, among the rows no
        other rule rejected."""
        column = plan.rules.column
        array = self.data.column(plan.index)
        candidate = pc.and_(pc.is_valid(array), flags(len(array), self.rejected, value=False))
        positions = pc.indices_nonzero(candidate)
        if len(positions) == 0:
            return
        values = array.take(positions)
        # C-level passes over the values (map, set): no Python code runs per row
        keys: list[object] = list(map(hash, values.to_pylist())) if plan.hashed else values.to_pylist()
        distinct = set(keys)
        self._unique.append(_Candidates(column, positions, keys, distinct, plan.hashed, len(self.rejected)))
        common = seen.intersection(distinct)
        if len(distinct) == len(keys) and not common:
            return
        key_array = pa.array(keys, pa.int64()) if plan.hashed else values
        firsts = (pa.table({"k": key_array, "p": positions}).group_by("k", use_threads=False)
                  .aggregate([("p", "min")]).column("p_min"))
        dup = pc.invert(pc.is_in(positions, value_set=firsts))
        if common:
            dup = pc.or_(dup, pc.is_in(key_array, value_set=pa.array(list(common), key_array.type)))
        earlier = self._named.get(column)
        found = [i for i in positions.filter(dup).to_pylist() if earlier is None or not earlier[i].as_py()]
        for i in found:
            value = array[i].as_py()
            self._found(plan, i, "unique", value, f"Duplicate key in {self.table}.{column}: {_show(value)}")
        self._fix(plan, flags(len(array), found))

    def remember_unique(self, seen: dict[str, set[object]]) -> None:
        """Let the unique columns remember the values of the rows this batch keeps."""
        dropped = pa.array(sorted(self.rejected), pa.uint64())
        for c in self._unique:
            if len(self.rejected) == c.rejected_before:  # no candidate left since: all are kept
                seen[c.column].update(c.distinct)
            else:
                kept = pc.invert(pc.is_in(c.positions, value_set=dropped)).to_pylist()
                seen[c.column].update(compress(c.keys, kept))
            fix = self._fixed.get(c.column)
            if fix is not None:
                seen[c.column].add(hash(fix) if c.hashed else fix)

    def kept_findings(self) -> list[Reject]:
        return [r for i, r in sorted(self._kept, key=lambda f: f[0]) if i not in self.rejected]

    def _found(self, plan: _ColumnPlan, i: int, rule: str, value: object, message: str) -> None:
        column = plan.rules.column
        if plan.rules.action == "reject":
            self.rejected.setdefault(i, self.rows.make_reject(i, column, value, rule, message))
        else:
            if plan.fix is not None:
                message = f"{message}; replaced by {_show(plan.fix.as_py())}"
            self._kept.append((i, self.rows.make_reject(i, column, value, rule, message)))

    def _fix(self, plan: _ColumnPlan, failed: pa.Array) -> None:
        if plan.fix is None or not pc.any(failed).as_py():
            return
        self._fixed[plan.rules.column] = plan.fix.as_py()
        self.data = self.data.set_column(plan.index, self.data.schema.field(plan.index),
                                         pc.if_else(failed, plan.fix, self.data.column(plan.index)))


# --- fitting the rules to a column's type ---------------------------------------------------------


def _plan_column(rules: ColumnRules, index: int, t: pa.DataType, path: str,
                 problems: list[str]) -> _ColumnPlan | None:
    if pa.types.is_null(t):  # no values in this batch (e.g. all empty in a CSV): only `required` can fail
        return _ColumnPlan(rules, index, (_required(t),) if rules.required else (), None, False)
    where = f"column {rules.column} holds {spec_type_name(t)}"
    before = len(problems)
    checks: list[_Check] = []
    typed = arrow_type_from_spec(rules.type) if rules.type is not None else None
    if rules.type is not None and typed is not None:
        checks.extend(_type_checks(rules.type, typed, t))
    if rules.required:
        checks.append(_required(t))
    textual = _is_text_like(t)
    needs_text = [k for k, v in (("format", rules.format), ("pattern", rules.pattern),
                                 ("minLength", rules.min_length), ("maxLength", rules.max_length))
                  if v is not None]
    for key in needs_text if not textual else ():
        problems.append(f"{path}.{key} needs text values, but {where}")
    if rules.format is not None and textual:
        check = _format(rules.format, t)
        if check is not None:
            checks.append(check)
    if rules.pattern is not None and textual:
        pattern = rules.pattern
        checks.append(_Check("pattern", lambda v: pc.invert(pc.match_substring_regex(v.text, f"^(?:{pattern})$")),
                             lambda v: f"{_show(v)} does not match {pattern}"))
    for rule, bound in (("min", rules.min), ("max", rules.max)):
        if bound is not None:
            checks.extend(_bound_checks(rule, bound, t, typed, f"{path}.{rule}", where, problems))
    if textual and (rules.min_length is not None or rules.max_length is not None):
        checks.extend(_length_checks(rules.min_length, rules.max_length))
    if rules.enum is not None:
        checks.extend(_enum_check(rules.enum, t, f"{path}.enum", where, problems))
    hashed = _is_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t) \
        or pa.types.is_fixed_size_binary(t)
    if rules.unique and pa.types.is_nested(t):
        problems.append(f"{path}.unique needs single values, but {where}")
    fix: pa.Scalar | None = None
    if rules.action == "fix":
        try:
            fix = pa.scalar(rules.fix).cast(t) if rules.fix is not None else pa.scalar(None, t)
        except (*CAST_ERRORS, TypeError):
            problems.append(f"{path}.fix {_show(rules.fix)} does not fit: {where}")
    if len(problems) > before:
        return None
    return _ColumnPlan(rules, index, tuple(checks), fix, hashed)


def _type_checks(name: str, to: pa.DataType, t: pa.DataType) -> list[_Check]:
    shape = _SHAPES.get(name.strip().lower()) if name.strip().lower() in ("uuid", "objectid") else None
    if t == to and shape is None:
        return []

    def bad(v: _Values) -> pa.Array:
        failing = v.converted(to)[1]
        if shape is not None and _is_string(t):
            failing = pc.or_(failing, pc.invert(pc.match_substring_regex(v.text, shape)))
        return failing

    return [_Check("type", bad, lambda v: f"{_show(v)} is not a valid {name}")]


def _required(t: pa.DataType) -> _Check:
    def bad(v: _Values) -> pa.Array:
        missing = pc.is_null(v.array)
        if _is_string(t):
            missing = pc.or_(missing, pc.fill_null(pc.equal(pc.utf8_trim_whitespace(v.array), _EMPTY), False))
        return missing

    return _Check("required", bad, lambda v: "a value is required" if v is None else f"blank value {_show(v)}",
                  nulls_fail=True)


def _format(name: Format, t: pa.DataType) -> _Check | None:
    if (name == "date" and pa.types.is_date(t)) or (name == "datetime" and pa.types.is_timestamp(t)):
        return None  # the column's type says it already
    shape = _SHAPES[name]

    return _Check("format", lambda v: pc.invert(pc.match_substring_regex(v.text, shape)),
                  lambda v: f"{_show(v)} is not a valid {name}")


def _bound_checks(rule: str, bound: Bound, t: pa.DataType, typed: pa.DataType | None, path: str, where: str,
                  problems: list[str]) -> list[_Check]:
    """Values that do not convert to the bound's kind, then values beyond it."""
    kind, view = _comparison(bound, t, typed)
    if kind is None:
        problems.append(f"{path} {_show(bound)} cannot be compared with the values: {where}")
        return []
    limit = _limit(bound, view if view is not None else t)
    compare = pc.less if rule == "min" else pc.greater
    word = "less than" if rule == "min" else "greater than"
    checks: list[_Check] = []
    if view is not None:
        checks.append(_Check(rule, lambda v: v.converted(view)[1],
                             lambda v: f"{_show(v)} is not a {kind}, cannot compare with {_show(bound)}"))
    checks.append(_Check(rule, lambda v: compare(v.converted(view)[0] if view is not None else v.array, limit),
                         lambda v: f"{_show(v)} is {word} {_show(bound)}"))
    return checks


def _comparison(bound: Bound, t: pa.DataType, typed: pa.DataType | None) -> tuple[str | None, pa.DataType | None]:
    """The kind of the bound ('number', 'date', 'datetime'; None when the column's values cannot
    be compared with it) and the type to convert the values to first (None: compare as they are)."""
    text = _is_string(t)
    if isinstance(bound, datetime):
        if pa.types.is_timestamp(t):
            return "datetime", None
        if pa.types.is_date(t):
            return "datetime", pa.timestamp("us")
        if text:
            return "datetime", typed if typed is not None and pa.types.is_timestamp(typed) else pa.timestamp("us", "UTC")
        return None, None
    if isinstance(bound, date):
        if pa.types.is_date(t) or pa.types.is_timestamp(t):
            return "date", None
        if text:
            return "date", typed if typed is not None and (pa.types.is_date(typed) or pa.types.is_timestamp(typed)) \
                else pa.date32()
        return None, None
    if _is_number(t):
        return "number", None
    if text:
        return "number", typed if typed is not None and _is_number(typed) else pa.float64()
    return None, None


def _limit(bound: Bound, t: pa.DataType) -> pa.Scalar:
    """The bound as a scalar comparable with values of type `t`."""
    if pa.types.is_timestamp(t):
        moment = bound if isinstance(bound, datetime) else datetime.combine(cast(date, bound), time())
        if t.tz is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        elif t.tz is None and moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return pa.scalar(moment, t)
    if pa.types.is_date(t):
        return pa.scalar(bound, t)
    if pa.types.is_decimal(t) and not isinstance(bound, Decimal):
        return pa.scalar(Decimal(str(bound)))
    if pa.types.is_floating(t) and isinstance(bound, Decimal):
        return pa.scalar(float(bound))
    return pa.scalar(bound)


def _length_checks(shortest: int | None, longest: int | None) -> list[_Check]:
    checks: list[_Check] = []
    if shortest is not None:
        checks.append(_Check("length", lambda v: pc.less(pc.utf8_length(v.text), pa.scalar(shortest, pa.int32())),
                             lambda v: f"{_show(v)} is shorter than {shortest} characters"))
    if longest is not None:
        checks.append(_Check("length", lambda v: pc.greater(pc.utf8_length(v.text), pa.scalar(longest, pa.int32())),
                             lambda v: f"{_show(v)} is longer than {longest} characters"))
    return checks


def _enum_check(allowed: tuple[Value, ...], t: pa.DataType, path: str, where: str,
                problems: list[str]) -> list[_Check]:
    try:
        value_set = pa.array(list(allowed)).cast(t)
    except (*CAST_ERRORS, TypeError):
        problems.append(f"{path} values do not fit: {where}")
        return []
    shown = ", ".join(_show(a) for a in allowed[:10]) + (", …" if len(allowed) > 10 else "")
    return [_Check("enum", lambda v: pc.invert(pc.is_in(v.array, value_set=value_set)),
                   lambda v: f"{_show(v)} is not one of {shown}")]


# --- reading the spec -----------------------------------------------------------------------------


def _parse_column(table: str, column: str, raw: object, problems: list[str]) -> ColumnRules | None:
    path = f"rules.{table}.{column}"
    if not isinstance(raw, Mapping):
        problems.append(f"{path} must be a mapping of rules ({', '.join(KEYS)})")
        return None
    before = len(problems)
    for key in raw:
        if key not in KEYS:
            problems.append(f"{path}: unknown rule {key!r}; expected one of {', '.join(KEYS)}")

    type_name = raw.get("type")
    if type_name is not None:
        if not isinstance(type_name, str):
            problems.append(f"{path}.type must be a type name")
        else:
            try:
                arrow_type_from_spec(type_name)
            except ValueError as exc:
                problems.append(f"{path}.type: {exc}")
    switches = {k: raw.get(k, False) for k in ("required", "unique")}
    for key, flag in switches.items():
        if not isinstance(flag, bool):
            problems.append(f"{path}.{key} must be true or false")
    fmt = raw.get("format")
    if fmt is not None and fmt not in FORMATS:
        problems.append(f"{path}.format must be one of {', '.join(FORMATS)}")
    pattern = raw.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            problems.append(f"{path}.pattern must be a regular expression (text)")
        else:
            try:
                pc.match_substring_regex(pa.array([""], pa.string()), f"^(?:{pattern})$")
            except pa.ArrowInvalid as exc:
                problems.append(f"{path}.pattern is not a valid regular expression (RE2 syntax): {exc}")
    bounds: dict[str, Bound | None] = {}
    for key in ("min", "max"):
        bounds[key] = _bound(raw.get(key))
        if key in raw and bounds[key] is None:
            problems.append(f"{path}.{key} must be a number or an ISO date/datetime")
    _check_order(bounds["min"], bounds["max"], path, ("min", "max"), problems)
    lengths: dict[str, int | None] = {}
    for key in ("minLength", "maxLength"):
        n = raw.get(key)
        lengths[key] = n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None
        if key in raw and lengths[key] is None:
            problems.append(f"{path}.{key} must be a non-negative integer")
    _check_order(lengths["minLength"], lengths["maxLength"], path, ("minLength", "maxLength"), problems)
    enum = _enum(raw.get("enum"), f"{path}.enum", problems) if "enum" in raw else None
    action = raw.get("action", "reject")
    if action not in ACTIONS:
        problems.append(f"{path}.action must be one of {', '.join(ACTIONS)}")
    fix = raw.get("fix")
    if "fix" in raw and action != "fix":
        problems.append(f"{path}.fix needs action: fix")
    if action == "fix":
        if "fix" not in raw:
            problems.append(f"{path}.action fix needs a fix value (fix: null clears the value)")
        elif not _is_scalar(fix):
            problems.append(f"{path}.fix must be a single value")
        elif fix is None and switches["required"] is True:
            problems.append(f"{path}.fix cannot be null: the column is required")
    if len(problems) > before:
        return None
    return ColumnRules(
        column, type=cast(str | None, type_name), required=cast(bool, switches["required"]),
        format=cast(Format | None, fmt), pattern=cast(str | None, pattern), min=bounds["min"], max=bounds["max"],
        min_length=lengths["minLength"], max_length=lengths["maxLength"], enum=enum,
        unique=cast(bool, switches["unique"]), action=cast(Action, action), fix=cast(Value, fix),
    )


def _bound(v: object) -> Bound | None:
    """A min/max as given: a number, a date/datetime (YAML reads them so), or an ISO text of one."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | Decimal) or (isinstance(v, float) and math.isfinite(v)):
        return v
    if isinstance(v, date):
        return v
    if isinstance(v, str):
        try:
            return date.fromisoformat(v) if re.fullmatch(r"\d{4}-\d\d-\d\d", v) else datetime.fromisoformat(v)
        except ValueError:
            return None
    return None


def _check_order(low: object, high: object, path: str, names: tuple[str, str], problems: list[str]) -> None:
    if low is None or high is None:
        return
    try:
        wrong = bool(low > high)  # type: ignore[operator]
    except TypeError:  # a number and a date, or a date and a datetime
        problems.append(f"{path}: {names[0]} and {names[1]} must be of the same kind")
        return
    if wrong:
        problems.append(f"{path}: {names[0]} {_show(low)} is greater than {names[1]} {_show(high)}")


def _enum(raw: object, path: str, problems: list[str]) -> tuple[Value, ...] | None:
    if not isinstance(raw, list | tuple) or not raw or not all(_is_scalar(v) and v is not None for v in raw):
        problems.append(f"{path} must be a non-empty list of values")
        return None
    try:
        pa.array(list(raw))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        problems.append(f"{path} mixes kinds of values ({', '.join(sorted({type(v).__name__ for v in raw}))}); "
                        f"in YAML quote them (NO, yes, on read as booleans)")
        return None
    return tuple(cast(Value, v) for v in raw)


# --- small pieces ---------------------------------------------------------------------------------


def _show(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, str):
        return repr(v if len(v) <= 100 else v[:100] + "…")
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _is_text_like(t: pa.DataType) -> bool:
    """Values that read as text for format, pattern and length checks."""
    return _is_string(t) or _is_number(t) or bool(
        pa.types.is_boolean(t) or pa.types.is_date(t) or pa.types.is_timestamp(t) or pa.types.is_time(t))


def _is_scalar(v: object) -> bool:
    return v is None or isinstance(v, str | int | float | bool | Decimal | date)
