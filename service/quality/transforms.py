"""The spec's `transforms` (DESIGN.md §5): one table's list of `{op: args}` entries, compiled into
one `Step` that applies them in order, vectorized over whole columns.

    rename: {old: new}                      drop: [col, …]
    cast: {col: "spec type"}                lowercase / uppercase / trim: [col, …]
    default: {col: value}                   dateFormat: {col: "%d/%m/%Y"}
    replace: {col: {pattern: re2, with: text}}
    concat: {into: col, columns: [a, b], separator: " "}
    split: {column: col, into: [a, b], separator: " "}
    map: {col: {from: to, …}}               compute: {into: col, expr: "price * qty"}

The shape of the spec is checked when it is compiled; the columns and their types when the first
batch (and any batch of another schema) arrives, knowing what the earlier entries did to them.
Either way every problem is listed in one `InvalidSpec`. Rows that a value cannot survive (a cast
that fails, a date that does not parse, a computation that divides by zero) become rejects naming
the row, the column and the value — never a silent NULL.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial, reduce
from typing import TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from service.core.errors import InvalidSpec
from service.core.types import arrow_type_from_spec, spec_type_name
from service.quality.conform import cast as arrow_cast
from service.quality.rows import Rows, Step, failing, flags

_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
_UNKNOWN = pa.null()  # the type of a column whose type cannot be known (an entry before it was wrong)
Scalar = str | int | float | bool


def compile_transforms(table: str, spec: Sequence[object] | None) -> Step | None:
    """The step applying `spec` (the `transforms.<table>` list) in order, or None when it is empty.

    Raises InvalidSpec listing every problem of the spec's shape; problems with the columns are
    raised, all at once, by the step at the first batch. The step is pure: the rows it returns
    are new, those it is given are unchanged."""
    if not spec:
        return None
    base = f"transforms.{table}"
    if isinstance(spec, str | bytes) or not isinstance(spec, Sequence):
        raise InvalidSpec([f"{base} must be a list of {{op: args}} entries"])
    problems: list[str] = []
    ops: list[_Op] = []
    for i, entry in enumerate(spec):
        path = f"{base}[{i}]"
        if not isinstance(entry, Mapping) or len(entry) != 1:
            problems.append(f"{path} must be a mapping of one op to its arguments, e.g. {{lowercase: [email]}}")
            continue
        ((name, args),) = entry.items()
        parse = _PARSERS.get(name) if isinstance(name, str) else None
        if parse is None:
            problems.append(f"{path}: unknown transform {name!r}; expected one of {', '.join(_PARSERS)}")
            continue
        op = parse(f"{path}.{name}", args, problems)
        if op is not None:
            ops.append(op)
    if problems:
        raise InvalidSpec(problems)
    return _Transforms(table, tuple(ops))


class _Transforms:
    """The compiled list. It checks the columns once per schema it meets (the first batch, and a
    later one only if its schema differs), then applies every entry."""

    def __init__(self, table: str, ops: tuple[_Op, ...]) -> None:
        self.table = table
        self.ops = ops
        self._checked: pa.Schema | None = None  # a memo: the step stays a pure function of its input

    def __call__(self, rows: Rows) -> Rows:
        schema = rows.data.schema
        if self._checked is None or not schema.equals(self._checked):
            self._check(schema)
            self._checked = schema
        for op in self.ops:
            rows = op.apply(rows)
        return rows

    def _check(self, schema: pa.Schema) -> None:
        """Runs the entries over an empty batch of `schema`, so each is checked against the columns
        the entries before it left; a wrong entry is assumed to have done its job, so that the
        entries after it are checked too."""
        problems: list[str] = []
        for op in self.ops:
            found = [f"{op.path}: {self.table} has no column {c!r} (it has {', '.join(schema.names) or 'none'})"
                     for c in op.reads if c not in schema.names]
            found = found or op.problems(schema)
            if not found:
                empty = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)
                try:
                    schema = op.apply(Rows.of(self.table, empty, 1)).data.schema
                    continue
                except _ARROW_ERRORS as exc:
                    found = [f"{op.path}: {exc}"]
            problems += found
            schema = op.after(schema)
        if problems:
            raise InvalidSpec(problems)


class _Op(ABC):
    path: str

    @property
    def reads(self) -> tuple[str, ...]:
        """Columns that must exist when the entry runs."""
        return ()

    @property
    def writes(self) -> tuple[str, ...]:
        """Columns the entry sets (replaced in place, or appended)."""
        return ()

    def problems(self, schema: pa.Schema) -> list[str]:
        """What is wrong with the types of the columns (all of `reads` exist)."""
        return []

    def after(self, schema: pa.Schema) -> pa.Schema:
        """The columns after the entry, as far as known without running it (a column it would
        change but that is missing stays missing)."""
        for name in self.writes:
            if name in schema.names or name not in self.reads:
                schema = _set_field(schema, pa.field(name, _UNKNOWN))
        return schema

    @abstractmethod
    def apply(self, rows: Rows) -> Rows: ...


# --- the ops ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rename(_Op):
    path: str
    names: Mapping[str, str]

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(self.names)

    def problems(self, schema: pa.Schema) -> list[str]:
        after = [self.names.get(n, n) for n in schema.names]
        return [f"{self.path}.{old}: there is already a column {new!r}"
                for old, new in self.names.items() if after.count(new) > 1]

    def after(self, schema: pa.Schema) -> pa.Schema:
        return pa.schema([f.with_name(self.names.get(f.name, f.name)) for f in schema])

    def apply(self, rows: Rows) -> Rows:
        data = rows.data.rename_columns([self.names.get(n, n) for n in rows.data.schema.names])
        # The key's values are unchanged, so rejects further on still name the row by its key.
        return replace(rows, data=data, key=tuple(self.names.get(k, k) for k in rows.key))


@dataclass(frozen=True)
class _Drop(_Op):
    path: str
    columns: tuple[str, ...]

    @property
    def reads(self) -> tuple[str, ...]:
        return self.columns

    def after(self, schema: pa.Schema) -> pa.Schema:
        return pa.schema([f for f in schema if f.name not in self.columns])

    def apply(self, rows: Rows) -> Rows:
        return rows.with_data(rows.data.drop_columns(list(self.columns)))


@dataclass(frozen=True)
class _Cast(_Op):
    path: str
    types: Mapping[str, tuple[str, pa.DataType]]  # column -> (the spec's name, Arrow type)

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(self.types)

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(self.types)

    def problems(self, schema: pa.Schema) -> list[str]:
        found = []
        for column, (name, to) in self.types.items():
            from_type = schema.field(column).type
            try:
                arrow_cast(pa.array([None], from_type), to)
            except _ARROW_ERRORS:
                found.append(f"{self.path}.{column}: {spec_type_name(from_type)} cannot be cast to {name}")
        return found

    def apply(self, rows: Rows) -> Rows:
        for column, (name, to) in self.types.items():
            array = rows.data.column(column)
            if array.type == to:
                continue
            try:
                out = arrow_cast(array, to)
            except pa.ArrowInvalid:
                bad = [i for i, _ in failing(partial(arrow_cast, to=to), array)]
                rows = rows.reject_rows(bad, column, "cast", partial(_cannot_cast, to=name))
                out = arrow_cast(rows.data.column(column), to)
            rows = rows.with_data(_set(rows.data, column, out))
        return rows


def _cannot_cast(value: object, to: str) -> str:
    return f"cannot cast {value!r} to {to}"


_CASES: dict[str, Callable[[pa.Array], pa.Array]] = {
    "lowercase": pc.utf8_lower,
    "uppercase": pc.utf8_upper,
    "trim": pc.utf8_trim_whitespace,
}


@dataclass(frozen=True)
class _Text(_Op):
    """lowercase, uppercase, trim."""

    path: str
    op: str
    columns: tuple[str, ...]

    @property
    def reads(self) -> tuple[str, ...]:
        return self.columns

    @property
    def writes(self) -> tuple[str, ...]:
        return self.columns

    def problems(self, schema: pa.Schema) -> list[str]:
        return _not_text(self.path, schema, self.columns)

    def apply(self, rows: Rows) -> Rows:
        data = rows.data
        for column in self.columns:
            data = _set(data, column, _CASES[self.op](_as_text(data.column(column))))
        return rows.with_data(data)


@dataclass(frozen=True)
class _Default(_Op):
    path: str
    values: Mapping[str, Scalar]

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(self.values)

    def problems(self, schema: pa.Schema) -> list[str]:
        found = []
        for column, value in self.values.items():
            if column in schema.names and not pa.types.is_null(t := schema.field(column).type):
                try:
                    pa.scalar(value).cast(t)
                except _ARROW_ERRORS:
                    found.append(f"{self.path}.{column}: {value!r} is not a {spec_type_name(t)}")
        return found

    def apply(self, rows: Rows) -> Rows:
        data = rows.data
        for column, value in self.values.items():
            fill = pa.scalar(value)
            if column not in data.schema.names:
                data = data.append_column(column, pa.repeat(fill, data.num_rows))
                continue
            array = data.column(column)
            if pa.types.is_null(array.type):
                array = array.cast(fill.type)
            data = _set(data, column, pc.fill_null(array, fill.cast(array.type)))
        return rows.with_data(data)


# Directives with a time of day: a format with one of them parses to a timestamp, else to a date.
_TIME_PARTS = re.compile(r"%[-_0^#]?[HIklMSpPrRTXcsfzZ]")
# For the day check: strptime (glibc) reads 31/02 as 2 March; the day the text says is found with a
# regex made from the format and compared to the day parsed (not with %z: the day parsed is UTC's).
_DIRECTIVES = {
    "d": r"(?P<day>\s*\d{1,2})", "e": r"(?P<day>\s*\d{1,2})",
    "m": r"\s*\d{1,2}", "H": r"\s*\d{1,2}", "I": r"\s*\d{1,2}", "M": r"\s*\d{1,2}", "S": r"\s*\d{1,2}",
    "y": r"\s*\d{1,2}", "j": r"\s*\d{1,3}", "Y": r"\s*[+-]?\d{1,4}",
    "b": r"\s*[A-Za-z]+\.?", "B": r"\s*[A-Za-z]+", "h": r"\s*[A-Za-z]+\.?",
    "a": r"\s*[A-Za-z]+\.?", "A": r"\s*[A-Za-z]+", "p": r"\s*[AaPp]\.?[Mm]\.?",
    "n": r"\s*", "t": r"\s*", "%": "%",
}


def _day_regex(fmt: str) -> str | None:
    """A regex matching what `fmt` parses, with the day of the month as its one group; None when
    the format has no day, or a directive the regex cannot spell."""
    out = ["^"]
    days = 0
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt):
            spelled = _DIRECTIVES.get(fmt[i + 1])
            if spelled is None:
                return None
            days += fmt[i + 1] in "de"
            out.append(spelled)
            i += 2
            continue
        out.append(r"\s*" if ch.isspace() else re.escape(ch))
        i += 1
    return "".join(out) + "$" if days == 1 else None


def _not_a_date(value: object, fmt: str) -> str:
    return f"{value!r} is not a date in the format {fmt!r}"


@dataclass(frozen=True)
class _DateFormat(_Op):
    path: str
    formats: Mapping[str, str]

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(self.formats)

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(self.formats)

    def problems(self, schema: pa.Schema) -> list[str]:
        return _not_text(self.path, schema, tuple(self.formats))

    def apply(self, rows: Rows) -> Rows:
        for column, fmt in self.formats.items():
            text = _as_text(rows.data.column(column))
            parsed = pc.strptime(text, format=fmt, unit="us", error_is_null=True)
            bad = pc.and_(pc.is_null(parsed), pc.is_valid(text))
            if (day := _day_regex(fmt)) is not None:
                said = pc.extract_regex(text, pattern=day)
                said = pc.if_else(pc.is_valid(said), pc.struct_field(said, [0]), pa.scalar(None, pa.string()))
                said = pc.cast(pc.utf8_trim_whitespace(said), pa.int8())
                bad = pc.or_(bad, pc.fill_null(pc.not_equal(pc.day(parsed), said), False))
            rows = rows.reject(bad, column, "dateFormat", partial(_not_a_date, fmt=fmt))
            parsed = parsed.filter(pc.invert(bad))
            if not _TIME_PARTS.search(fmt):
                parsed = parsed.cast(pa.date32())
            rows = rows.with_data(_set(rows.data, column, parsed))
        return rows


@dataclass(frozen=True)
class _Replace(_Op):
    path: str
    patterns: Mapping[str, tuple[str, str]]  # column -> (RE2 pattern, replacement)

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(self.patterns)

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(self.patterns)

    def problems(self, schema: pa.Schema) -> list[str]:
        return _not_text(self.path, schema, tuple(self.patterns))

    def apply(self, rows: Rows) -> Rows:
        data = rows.data
        for column, (pattern, with_) in self.patterns.items():
            out = pc.replace_substring_regex(_as_text(data.column(column)), pattern=pattern, replacement=with_)
            data = _set(data, column, out)
        return rows.with_data(data)


@dataclass(frozen=True)
class _Concat(_Op):
    path: str
    into: str
    columns: tuple[str, ...]
    separator: str

    @property
    def reads(self) -> tuple[str, ...]:
        return self.columns

    @property
    def writes(self) -> tuple[str, ...]:
        return (self.into,)

    def apply(self, rows: Rows) -> Rows:
        parts = [_as_text(rows.data.column(c)) for c in self.columns]
        # NULLs are skipped; only a row with nothing to join stays NULL. (Arrow 26 drops such rows
        # from the result of a "skip" join, so they are joined as "" and set to NULL after.)
        nothing = reduce(pc.and_, [pc.is_null(p) for p in parts])
        parts[0] = pc.if_else(nothing, pa.scalar("", pa.string()), parts[0])
        joined = pc.binary_join_element_wise(*parts, self.separator, null_handling="skip")
        joined = pc.if_else(nothing, pa.scalar(None, pa.string()), joined)
        return rows.with_data(_set(rows.data, self.into, joined))


@dataclass(frozen=True)
class _Split(_Op):
    path: str
    column: str
    into: tuple[str, ...]
    separator: str

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.column,)

    @property
    def writes(self) -> tuple[str, ...]:
        return self.into

    def problems(self, schema: pa.Schema) -> list[str]:
        return _not_text(self.path, schema, (self.column,))

    def apply(self, rows: Rows) -> Rows:
        # The last part keeps the rest of the text; a text with fewer parts leaves the last columns NULL.
        lists = pc.split_pattern(_as_text(rows.data.column(self.column)), pattern=self.separator,
                                 max_splits=len(self.into) - 1)
        starts = lists.offsets.slice(0, len(lists))
        lengths = pc.list_value_length(lists)
        data = rows.data
        for i, name in enumerate(self.into):
            at = pc.if_else(pc.greater(lengths, i), pc.add(starts, i), pa.scalar(None, starts.type))
            data = _set(data, name, pc.take(lists.values, at))
        return rows.with_data(data)


@dataclass(frozen=True)
class _Map(_Op):
    path: str
    tables: Mapping[str, tuple[tuple[Scalar | None, ...], tuple[Scalar | None, ...]]]  # column -> (from, to)

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(self.tables)

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(self.tables)

    def problems(self, schema: pa.Schema) -> list[str]:
        found = []
        for column, (keys, values) in self.tables.items():
            t = self._column_type(schema.field(column).type, values)
            for key in keys:
                try:
                    pa.array([key]).cast(t)
                except _ARROW_ERRORS:
                    found.append(f"{self.path}.{column}: {key!r} is not a {spec_type_name(t)}")
        return found

    @staticmethod
    def _column_type(t: pa.DataType, values: tuple[Scalar | None, ...]) -> pa.DataType:
        """A column of NULLs only is matched as the values' type."""
        return _array(values).type if pa.types.is_null(t) else t

    def apply(self, rows: Rows) -> Rows:
        data = rows.data
        for column, (keys, values) in self.tables.items():
            array = data.column(column)
            array = array.cast(self._column_type(array.type, values))
            at = pc.index_in(array, value_set=_array(keys).cast(array.type), skip_nulls=False)
            to = _array(values)
            # The column keeps its type when every new value fits it; otherwise it becomes text.
            try:
                to = to.cast(array.type)
            except _ARROW_ERRORS:
                to, array = to.cast(pa.string()), array.cast(pa.string())
            data = _set(data, column, pc.if_else(pc.is_valid(at), pc.take(to, at), array))
        return rows.with_data(data)


@dataclass(frozen=True)
class _Compute(_Op):
    path: str
    into: str
    expr: str
    tree: _Node

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.tree.columns()))

    @property
    def writes(self) -> tuple[str, ...]:
        return (self.into,)

    def apply(self, rows: Rows) -> Rows:
        try:
            out = self._evaluate(rows.data)
        except pa.ArrowInvalid:
            # Division by zero or overflow in some rows: those rows are rejected, the rest computed.
            failures = failing(self._evaluate, rows.data)
            values = {i: self._operands(rows.data, i) for i, _ in failures}
            reasons = {values[i]: error for i, error in failures}
            bad = flags(rows.data.num_rows, values)
            value_of = pc.replace_with_mask(pa.nulls(rows.data.num_rows, pa.string()), bad,
                                            pa.array(list(values.values()), pa.string()))
            rows = rows.reject(bad, self.into, "compute",
                               lambda v: f"cannot compute {self.into} = {self.expr}: {reasons[str(v)]}", value_of)
            out = self._evaluate(rows.data)
        return rows.with_data(_set(rows.data, self.into, out))

    def _evaluate(self, data: pa.RecordBatch) -> pa.Array:
        out = self.tree.evaluate(data)
        return out if isinstance(out, pa.Array) else pa.repeat(out, data.num_rows)

    def _operands(self, data: pa.RecordBatch, i: int) -> str:
        return ", ".join(f"{c}={data.column(c)[i].as_py()!r}" for c in self.reads) or self.expr


# --- compute's expression language --------------------------------------------------------------
#   expr   := sum ('||' sum)*            || joins text; NULL || x is NULL (as in SQL)
#   sum    := product (('+' | '-') product)*
#   product:= unary (('*' | '/') unary)* / always divides as floats between integers
#   unary  := '-' unary | atom
#   atom   := number | 'text' | column | "quoted column" | '(' expr ')'
# Nothing else: no calls, no attributes, no indexing. Arithmetic is checked: an overflow or a
# division by zero rejects the row instead of wrapping around or giving infinity.

_TOKENS = re.compile(r"""\s*(?:
    (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<text>'(?:[^']|'')*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<op>\|\||[-+*/()])
)""", re.VERBOSE)
_MAX_DEPTH = 50
_MAX_TOKENS = 500  # evaluation recurses once per operator

Value: TypeAlias = pa.Array | pa.Scalar


class _Node(ABC):
    @abstractmethod
    def evaluate(self, data: pa.RecordBatch) -> Value: ...

    def columns(self) -> list[str]:
        return []


@dataclass(frozen=True)
class _Literal(_Node):
    value: pa.Scalar

    def evaluate(self, data: pa.RecordBatch) -> Value:
        return self.value


@dataclass(frozen=True)
class _Column(_Node):
    name: str

    def evaluate(self, data: pa.RecordBatch) -> Value:
        return data.column(self.name)

    def columns(self) -> list[str]:
        return [self.name]


@dataclass(frozen=True)
class _Negate(_Node):
    operand: _Node

    def evaluate(self, data: pa.RecordBatch) -> Value:
        return pc.negate_checked(self.operand.evaluate(data))

    def columns(self) -> list[str]:
        return self.operand.columns()


@dataclass(frozen=True)
class _Binary(_Node):
    op: str
    left: _Node
    right: _Node

    def evaluate(self, data: pa.RecordBatch) -> Value:
        left, right = self.left.evaluate(data), self.right.evaluate(data)
        if self.op == "||":
            return pc.binary_join_element_wise(_as_text(left), _as_text(right), "")
        if self.op == "/" and pa.types.is_integer(left.type) and pa.types.is_integer(right.type):
            left, right = pc.cast(left, pa.float64()), pc.cast(right, pa.float64())
        return _ARITHMETIC[self.op](left, right)

    def columns(self) -> list[str]:
        return self.left.columns() + self.right.columns()


_ARITHMETIC: dict[str, Callable[[Value, Value], Value]] = {
    "+": pc.add_checked, "-": pc.subtract_checked, "*": pc.multiply_checked, "/": pc.divide_checked,
}


class _BadExpression(Exception):
    pass


class _Parser:
    """Recursive descent over the tokens of one expression."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, position)
        pos = 0
        while text[pos:].strip():
            m = _TOKENS.match(text, pos)
            if m is None or m.lastgroup is None:
                at = len(text[pos:]) - len(text[pos:].lstrip()) + pos
                raise _BadExpression(f"unexpected {text[at]!r} at {at + 1}")
            self.tokens.append((m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
            pos = m.end()
        if len(self.tokens) > _MAX_TOKENS:
            raise _BadExpression(f"longer than {_MAX_TOKENS} tokens")
        self.i = 0
        self.depth = 0

    def parse(self) -> _Node:
        node = self._expr()
        if self.i < len(self.tokens):
            _, text, at = self.tokens[self.i]
            raise _BadExpression(f"unexpected {text!r} at {at + 1}")
        return node

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) and self.tokens[self.i][0] == "op" else None

    def _binary(self, ops: tuple[str, ...], operand: Callable[[], _Node]) -> _Node:
        node = operand()
        while (op := self._peek()) in ops:
            assert op is not None
            self.i += 1
            node = _Binary(op, node, operand())
        return node

    def _expr(self) -> _Node:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _BadExpression(f"nested deeper than {_MAX_DEPTH} levels")
        node = self._binary(("||",), self._sum)
        self.depth -= 1
        return node

    def _sum(self) -> _Node:
        return self._binary(("+", "-"), self._product)

    def _product(self) -> _Node:
        return self._binary(("*", "/"), self._unary)

    def _unary(self) -> _Node:
        if self._peek() == "-":
            self.i += 1
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise _BadExpression(f"nested deeper than {_MAX_DEPTH} levels")
            node = _Negate(self._unary())
            self.depth -= 1
            return node
        return self._atom()

    def _atom(self) -> _Node:
        if self.i >= len(self.tokens):
            raise _BadExpression("unexpected end")
        kind, text, at = self.tokens[self.i]
        self.i += 1
        if kind == "number":
            is_int = text.isdigit()
            return _Literal(pa.scalar(int(text), pa.int64()) if is_int else pa.scalar(float(text), pa.float64()))
        if kind == "text":
            return _Literal(pa.scalar(text[1:-1].replace("''", "'"), pa.string()))
        if kind == "name":
            return _Column(text)
        if kind == "quoted":
            return _Column(text[1:-1].replace('""', '"'))
        if text == "(":
            node = self._expr()
            if self._peek() != ")":
                raise _BadExpression(f"missing ')' for the '(' at {at + 1}")
            self.i += 1
            return node
        raise _BadExpression(f"unexpected {text!r} at {at + 1}")


def _parse_expression(text: str) -> _Node:
    """The tree of a compute expression; raises ValueError saying what is wrong."""
    try:
        return _Parser(text).parse()
    except _BadExpression as exc:
        raise ValueError(str(exc)) from None


# --- parsing the spec ---------------------------------------------------------------------------


def _names(path: str, args: object, problems: list[str]) -> tuple[str, ...] | None:
    """A column or a list of columns."""
    if isinstance(args, str) and args:
        return (args,)
    if isinstance(args, Sequence) and not isinstance(args, str) and args \
            and all(isinstance(a, str) and a for a in args):
        return tuple(str(a) for a in args)
    problems.append(f"{path} must be a list of column names")
    return None


def _per_column(path: str, args: object, problems: list[str]) -> Mapping[str, object] | None:
    if isinstance(args, Mapping) and args and all(isinstance(k, str) and k for k in args):
        return {str(k): v for k, v in args.items()}
    problems.append(f"{path} must be a mapping of column names to arguments")
    return None


def _fields(path: str, args: object, required: tuple[str, ...], optional: tuple[str, ...],
            problems: list[str]) -> Mapping[str, object] | None:
    if not isinstance(args, Mapping):
        problems.append(f"{path} must be a mapping with {', '.join(required + optional)}")
        return None
    found = [f"{path}: unknown key {k!r}; expected {', '.join(required + optional)}"
             for k in args if k not in required + optional]
    found += [f"{path}.{k} is required" for k in required if k not in args]
    problems += found
    return None if found else args


def _text_arg(path: str, value: object, problems: list[str], *, empty: bool = False) -> str | None:
    if isinstance(value, str) and (empty or value):
        return value
    problems.append(f"{path} must be a {'text' if empty else 'non-empty text'}")
    return None


def _parse_rename(path: str, args: object, problems: list[str]) -> _Op | None:
    names = _per_column(path, args, problems)
    if names is None:
        return None
    before = len(problems)
    for old, new in names.items():
        _text_arg(f"{path}.{old}", new, problems)
    new_names = list(names.values())
    problems += [f"{path}: {new!r} is the new name of more than one column"
                 for new in dict.fromkeys(new_names) if new_names.count(new) > 1]
    return _Rename(path, {k: str(v) for k, v in names.items()}) if len(problems) == before else None


def _parse_drop(path: str, args: object, problems: list[str]) -> _Op | None:
    columns = _names(path, args, problems)
    return None if columns is None else _Drop(path, columns)


def _parse_cast(path: str, args: object, problems: list[str]) -> _Op | None:
    types = _per_column(path, args, problems)
    if types is None:
        return None
    before = len(problems)
    arrow: dict[str, tuple[str, pa.DataType]] = {}
    for column, name in types.items():
        if not isinstance(name, str):
            problems.append(f"{path}.{column} must be a type name")
            continue
        try:
            arrow[column] = (name, arrow_type_from_spec(name))
        except ValueError as exc:
            problems.append(f"{path}.{column}: {exc}")
    return _Cast(path, arrow) if len(problems) == before else None


def _text_parser(op: str) -> Callable[[str, object, list[str]], _Op | None]:
    def parse(path: str, args: object, problems: list[str]) -> _Op | None:
        columns = _names(path, args, problems)
        return None if columns is None else _Text(path, op, columns)
    return parse


def _parse_default(path: str, args: object, problems: list[str]) -> _Op | None:
    values = _per_column(path, args, problems)
    if values is None:
        return None
    bad = [f"{path}.{c} must be a text, a number or a boolean" for c, v in values.items()
           if not isinstance(v, str | int | float | bool)]
    problems += bad
    return None if bad else _Default(path, {c: v for c, v in values.items() if isinstance(v, str | int | float | bool)})


def _parse_date_format(path: str, args: object, problems: list[str]) -> _Op | None:
    formats = _per_column(path, args, problems)
    if formats is None:
        return None
    bad = [f"{path}.{c} must be a strptime format such as '%d/%m/%Y'" for c, f in formats.items()
           if not (isinstance(f, str) and "%" in f)]
    problems += bad
    return None if bad else _DateFormat(path, {c: str(f) for c, f in formats.items()})


def _parse_replace(path: str, args: object, problems: list[str]) -> _Op | None:
    columns = _per_column(path, args, problems)
    if columns is None:
        return None
    before = len(problems)
    patterns: dict[str, tuple[str, str]] = {}
    for column, spec in columns.items():
        where = f"{path}.{column}"
        fields = _fields(where, spec, ("pattern",), ("with",), problems)
        if fields is None:
            continue
        pattern = _text_arg(f"{where}.pattern", fields["pattern"], problems)
        with_ = _text_arg(f"{where}.with", fields.get("with", ""), problems, empty=True)
        if pattern is None or with_ is None:
            continue
        try:
            pc.replace_substring_regex(pa.array([""], pa.string()), pattern=pattern, replacement=with_)
        except pa.ArrowInvalid as exc:
            problems.append(f"{where}.pattern {pattern!r}: {exc}")
            continue
        patterns[column] = (pattern, with_)
    return _Replace(path, patterns) if len(problems) == before else None


def _parse_concat(path: str, args: object, problems: list[str]) -> _Op | None:
    fields = _fields(path, args, ("into", "columns"), ("separator",), problems)
    if fields is None:
        return None
    into = _text_arg(f"{path}.into", fields["into"], problems)
    columns = _names(f"{path}.columns", fields["columns"], problems)
    separator = _text_arg(f"{path}.separator", fields.get("separator", " "), problems, empty=True)
    if into is None or columns is None or separator is None:
        return None
    return _Concat(path, into, columns, separator)


def _parse_split(path: str, args: object, problems: list[str]) -> _Op | None:
    fields = _fields(path, args, ("column", "into"), ("separator",), problems)
    if fields is None:
        return None
    column = _text_arg(f"{path}.column", fields["column"], problems)
    into = _names(f"{path}.into", fields["into"], problems)
    separator = _text_arg(f"{path}.separator", fields.get("separator", " "), problems)
    if into is not None and len(set(into)) != len(into):
        problems.append(f"{path}.into names a column more than once")
        return None
    if column is None or into is None or separator is None:
        return None
    return _Split(path, column, into, separator)


def _parse_map(path: str, args: object, problems: list[str]) -> _Op | None:
    columns = _per_column(path, args, problems)
    if columns is None:
        return None
    before = len(problems)
    tables: dict[str, tuple[tuple[Scalar | None, ...], tuple[Scalar | None, ...]]] = {}
    for column, table in columns.items():
        where = f"{path}.{column}"
        if not isinstance(table, Mapping) or not table:
            problems.append(f"{where} must be a mapping of values to new values")
            continue
        pairs = [(k, v) for k, v in table.items()
                 if (k is None or isinstance(k, Scalar)) and (v is None or isinstance(v, Scalar))]
        if len(pairs) != len(table):
            problems.append(f"{where}: values must be texts, numbers, booleans or null")
            continue
        tables[column] = (tuple(k for k, _ in pairs), tuple(v for _, v in pairs))
    return _Map(path, tables) if len(problems) == before else None


def _parse_compute(path: str, args: object, problems: list[str]) -> _Op | None:
    fields = _fields(path, args, ("into", "expr"), (), problems)
    if fields is None:
        return None
    into = _text_arg(f"{path}.into", fields["into"], problems)
    expr = _text_arg(f"{path}.expr", fields["expr"], problems)
    if into is None or expr is None:
        return None
    try:
        tree = _parse_expression(expr)
    except ValueError as exc:
        problems.append(f"{path}.expr {expr!r} is not a valid expression ({exc}); expected columns, numbers, "
                        "'texts', + - * / ( ) and ||")
        return None
    return _Compute(path, into, expr, tree)


_PARSERS: dict[str, Callable[[str, object, list[str]], _Op | None]] = {
    "rename": _parse_rename,
    "drop": _parse_drop,
    "cast": _parse_cast,
    "lowercase": _text_parser("lowercase"),
    "uppercase": _text_parser("uppercase"),
    "trim": _text_parser("trim"),
    "default": _parse_default,
    "dateFormat": _parse_date_format,
    "replace": _parse_replace,
    "concat": _parse_concat,
    "split": _parse_split,
    "map": _parse_map,
    "compute": _parse_compute,
}


# --- arrays -------------------------------------------------------------------------------------



def _set(data: pa.RecordBatch, name: str, array: pa.Array) -> pa.RecordBatch:
    """`data` with column `name` replaced in place by `array`, or appended."""
    names = data.schema.names
    if name in names:
        return data.set_column(names.index(name), name, array)
    return data.append_column(name, array)


def _set_field(schema: pa.Schema, field: pa.Field) -> pa.Schema:
    names = schema.names
    return schema.set(names.index(field.name), field) if field.name in names else schema.append(field)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
                or pa.types.is_null(t))


def _not_text(path: str, schema: pa.Schema, columns: Sequence[str]) -> list[str]:
    return [f"{path}: {c} is {spec_type_name(t)}, not text" for c in columns
            if not _is_text(t := schema.field(c).type)]


def _as_text(value: Value) -> Value:
    return value if pa.types.is_string(value.type) or pa.types.is_large_string(value.type) \
        else pc.cast(value, pa.string())


def _array(values: Sequence[Scalar | None]) -> pa.Array:
    """`values` as one array; values of mixed types as text."""
    try:
        return pa.array(values)
    except _ARROW_ERRORS:
        return pa.array([None if v is None else str(v) for v in values], pa.string())

