"""Documents ↔ rows, losslessly (README "MongoDB types").

Reading: a sample of documents gives the columns. A field's BSON types decide its column:
int32/int64 → int64, double → float64 (int and double mixed → float64, noted), string, bool,
date → timestamp(ms, UTC), ObjectId → text (24 hex), Decimal128 → exact decimal text (PostgreSQL
numeric), UUID → uuid, binary → bytes, objects and arrays → JSON (Extended JSON for BSON types,
so they come back as themselves), or `parent_child` columns with `nested: flatten`. Other mixes
follow `mixedTypes`. A value that does not fit its column is a reject naming the field.

Writing: rows become documents; JSON columns become nested documents again, decimals Decimal128,
dates UTC datetimes, uuids UUIDs; the key becomes `_id`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, DecimalException
from typing import Any

import bson
import orjson
import pyarrow as pa
from bson import Binary, Decimal128, Int64, ObjectId, json_util
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions

from service.connectors.mongo.options import MongoOptions
from service.connectors.postgres.arrays import element_parser, parse_array
from service.core.batch import Reject
from service.core.schema import Column, TableSchema

Document = dict[str, Any]
UTC = dt.UTC
_JSON_OPTS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def kind(v: object) -> str:
    """The BSON kind of a decoded value, as columns see it."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, ObjectId):
        return "objectid"
    if isinstance(v, dt.datetime):
        return "date"
    if isinstance(v, Decimal128):
        return "decimal"
    if isinstance(v, uuid.UUID):
        return "uuid"
    if isinstance(v, bytes):
        return "uuid" if isinstance(v, Binary) and v.subtype == 4 else "binary"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    return "other"


# kind → (Arrow type, logical)
_COLUMN: dict[str, tuple[pa.DataType, str | None]] = {
    "int": (pa.int64(), None),
    "float": (pa.float64(), None),
    "bool": (pa.bool_(), None),
    "string": (pa.string(), None),
    "objectid": (pa.string(), "objectid"),
    "date": (pa.timestamp("ms", tz="UTC"), None),
    "decimal": (pa.string(), "decimal"),
    "uuid": (pa.string(), "uuid"),
    "binary": (pa.binary(), None),
    "json": (pa.string(), "json"),
    "nested": (pa.string(), "json"),  # objects and arrays only
}


@dataclass(frozen=True)
class Field:
    """A column and the document path it reads (`address.city` for flattened objects)."""

    column: Column
    path: tuple[str, ...]
    kind: str  # a key of _COLUMN


def child_fields(docs: Sequence[Document], options: MongoOptions) -> list[str]:
    """Top-level fields that hold arrays of objects and whose policy is `tables`, in first-seen order."""
    found: dict[str, None] = {}
    for doc in docs:
        for key, value in doc.items():
            if (key != "_id" and isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
                    and options.nesting(key) == "tables"):
                found[key] = None
    return list(found)


def infer(name: str, docs: Sequence[Document], options: MongoOptions,
          exclude: Iterable[str] = ()) -> tuple[list[Field], list[str]]:
    """Columns of a collection from sample documents, and notes on the choices made. Fields in
    `exclude` (moved to child tables) are left out."""
    kinds: dict[tuple[str, ...], Counter[str]] = {}
    seen: dict[tuple[str, ...], int] = {}
    skip = set(exclude)

    def visit(doc: Document, prefix: tuple[str, ...]) -> None:
        for key, value in doc.items():
            path = (*prefix, str(key))
            if not prefix and key in skip:
                continue
            k = kind(value)
            if k == "object" and prefix + (key,) != ("_id",) and options.nesting(".".join(path)) == "flatten":
                visit(value, path)
                continue
            kinds.setdefault(path, Counter())[k] += 1
            seen[path] = seen.get(path, 0) + 1

    for doc in docs:
        visit(doc, ())
    fields: list[Field] = []
    notes: list[str] = []
    for path, counter in kinds.items():
        col_name = "_".join(path)
        present = {k for k in counter if k != "null"}
        nullable = "null" in counter or seen[path] < len(docs)
        chosen, note = _choose(present, counter, options)
        if note:
            notes.append(f"{name}.{'.'.join(path)}: {note}")
        arrow, logical = _COLUMN[chosen]
        fields.append(Field(Column(col_name, arrow, nullable and path != ("_id",), f"bson:{chosen}", logical),
                            path, chosen))
    fields.sort(key=lambda f: f.path != ("_id",))  # _id first, then first-seen order
    return fields, notes


def _choose(present: set[str], counter: Counter[str], options: MongoOptions) -> tuple[str, str | None]:
    if not present:
        return "string", None
    if present <= {"object", "array"}:
        return "json", None
    if len(present) == 1:
        only = next(iter(present))
        return ("json", None) if only == "other" else (only, None)
    if present == {"int", "float"}:
        return "float", "integers and doubles mixed: a float column"
    described = ", ".join(f"{k} ×{counter[k]}" for k in sorted(present))
    if options.mixed_types == "reject":
        top = max(present, key=lambda k: counter[k])
        top = "nested" if top in ("object", "array") else "json" if top == "other" else top
        return top, f"mixed types ({described}): {top} kept, other rows rejected (mixedTypes: reject)"
    return "json", f"mixed types ({described}): a JSON column (mixedTypes: widen)"


def schema_of(name: str, fields: Sequence[Field], notes: Iterable[str]) -> TableSchema:
    return TableSchema(name=name, columns=tuple(f.column for f in fields), key=("_id",), native_kind="mongodb",
                       notes=tuple(notes))


# -- documents → Arrow ---------------------------------------------------------------------------
class Misfit(ValueError):
    """A value that does not fit its column."""


def _ext(v: object) -> object:
    """Extended JSON (relaxed) for BSON values plain JSON lacks, so they can come back as themselves."""
    if isinstance(v, ObjectId):
        return {"$oid": str(v)}
    if isinstance(v, dt.datetime):
        return {"$date": _iso(v)}
    if isinstance(v, Decimal128):
        return {"$numberDecimal": str(v)}
    if isinstance(v, Binary) and v.subtype == 4:
        return {"$uuid": str(v.as_uuid())}
    if isinstance(v, bytes):
        sub = v.subtype if isinstance(v, Binary) else 0
        return {"$binary": {"base64": base64.b64encode(v).decode(), "subType": f"{sub:02x}"}}
    if isinstance(v, Decimal):
        return {"$numberDecimal": str(v)}
    return json_util.default(v, json_options=json_util.RELAXED_JSON_OPTIONS)  # Regex, Timestamp, DBRef, …


def _iso(v: dt.datetime) -> str:
    if v.tzinfo is not None:
        v = v.astimezone(UTC).replace(tzinfo=None)
    return v.isoformat(timespec="milliseconds") + "Z"


def to_json(v: object) -> str:
    return orjson.dumps(v, default=_ext, option=_JSON_OPTS).decode()


def _convert(k: str) -> Callable[[object], object]:
    def exact(expected: type | tuple[type, ...], reject: type | None = None) -> Callable[[object], object]:
        def conv(v: object) -> object:
            if not isinstance(v, expected) or (reject is not None and isinstance(v, reject)):
                raise Misfit(kind(v))
            return v
        return conv

    def decimal(v: object) -> object:
        if isinstance(v, Decimal128):
            return str(v)
        raise Misfit(kind(v))

    def uuid_text(v: object) -> object:
        if isinstance(v, uuid.UUID):
            return str(v)
        if isinstance(v, Binary) and v.subtype == 4:
            return str(v.as_uuid())
        raise Misfit(kind(v))

    def objectid(v: object) -> object:
        if isinstance(v, ObjectId):
            return str(v)
        raise Misfit(kind(v))

    def nested(v: object) -> object:
        if isinstance(v, dict | list):
            return to_json(v)
        raise Misfit(kind(v))

    def number(v: object) -> object:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise Misfit(kind(v))
        return float(v)

    table: dict[str, Callable[[object], object]] = {
        "int": exact(int, bool), "float": number, "bool": exact(bool), "string": exact(str),
        "objectid": objectid, "date": exact(dt.datetime), "decimal": decimal, "uuid": uuid_text,
        "binary": exact(bytes), "json": to_json, "nested": nested,
    }
    return table[k]


def _get(doc: Document, path: tuple[str, ...]) -> object:
    value: object = doc
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def to_arrow(docs: Sequence[Document], fields: Sequence[Field], table: str, first_row: int,
             elsewhere: frozenset[str] = frozenset()) -> tuple[pa.RecordBatch, list[Reject]]:
    """The documents as one batch of `fields`; documents with a misfit value, or with a field the
    columns do not know (it was not in the sample), become rejects. `elsewhere`: top-level fields
    that go to child tables."""
    columns: list[list[object]] = []
    bad: dict[int, Reject] = {}
    known = frozenset(f.path[0] for f in fields) | elsewhere
    for i, doc in enumerate(docs):
        if not known.issuperset(doc):
            extra = sorted(str(k) for k in doc if k not in known)
            bad[i] = Reject(table, first_row + i, key_text(doc.get("_id")), extra[0], None, "unknown_field",
                            f"field(s) {', '.join(extra)} were not in the sample the columns were inferred from; "
                            "raise mongo.sampleSize (0 reads every document) to include them")
    for f in fields:
        conv = _convert(f.kind)
        values: list[object] = []
        for i, doc in enumerate(docs):
            v = _get(doc, f.path) if len(f.path) > 1 else doc.get(f.path[0])
            if v is None:
                values.append(None)
                continue
            try:
                values.append(conv(v))
            except (Misfit, TypeError, OverflowError) as exc:
                values.append(None)
                if i not in bad:
                    bad[i] = Reject(table, first_row + i, key_text(doc.get("_id")), f.column.name, _short(v),
                                    "type", f"field {'.'.join(f.path)} holds {kind(v) if isinstance(exc, Misfit) else exc}"
                                            f", not {f.kind}")
        columns.append(values)
    keep = [i for i in range(len(docs)) if i not in bad]
    if bad:
        columns = [[col[i] for i in keep] for col in columns]
    arrays = [pa.array(col, type=f.column.type) for col, f in zip(columns, fields)]
    schema = pa.schema([pa.field(f.column.name, f.column.type) for f in fields])
    return pa.RecordBatch.from_arrays(arrays, schema=schema), list(bad.values())


def key_text(v: object) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else str(v) if isinstance(v, ObjectId | int | uuid.UUID) else to_json(v)


def _short(v: object, limit: int = 200) -> str:
    text = v if isinstance(v, str) else to_json(v) if not isinstance(v, bytes) else v[:64].hex()
    return text if len(text) <= limit else text[:limit] + "…"


# -- Arrow → documents ---------------------------------------------------------------------------
def revive(obj: Any) -> Any:
    """Extended JSON wrappers ({"$oid": …}, {"$date": …}, …) back into BSON values."""
    if isinstance(obj, dict):
        if len(obj) == 1:
            (k, v), = obj.items()
            if k == "$oid" and isinstance(v, str):
                return ObjectId(v)
            if k == "$date" and isinstance(v, str):
                return dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
            if k == "$numberDecimal" and isinstance(v, str):
                return Decimal128(v)
            if k == "$uuid" and isinstance(v, str):
                return uuid.UUID(v)
            if k == "$numberLong" and isinstance(v, str):
                return Int64(int(v))
            if k == "$binary" and isinstance(v, dict):
                return Binary(base64.b64decode(v.get("base64", "")), int(str(v.get("subType", "00")), 16))
        if any(k.startswith("$") for k in obj):  # other Extended JSON ($regularExpression, $timestamp, …)
            return json_util.object_hook({k: revive(v) for k, v in obj.items()}, json_util.RELAXED_JSON_OPTIONS)
        return {k: revive(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [revive(v) for v in obj]
    return obj


def document_converter(col: Column, object_id: bool = False) -> Callable[[object], object] | None:
    """How a column's Python value (from Arrow) becomes a BSON value; None: as it is.
    `object_id`: the spec declares the (text) column an ObjectId (`mongo.objectIds`)."""
    native = (col.native_type or "").lower()
    if object_id:
        return _object_id
    logical = col.logical or ("json" if native in ("json", "jsonb") else "uuid" if native == "uuid"
                              else "decimal" if native.startswith("numeric") and pa.types.is_string(col.type)
                              else None)
    if native.endswith("[]") and pa.types.is_string(col.type):  # a PostgreSQL array, as text
        parse = _element(native[:-2])
        return lambda v: parse_array(v, parse) if isinstance(v, str) else v
    if logical == "json":
        return lambda v: revive(orjson.loads(v)) if isinstance(v, str | bytes) else v
    if logical == "uuid":
        return lambda v: uuid.UUID(v) if isinstance(v, str) else v
    if logical == "objectid" or (col.name == "_id" and pa.types.is_string(col.type)):
        # A text `_id` of 24 hex digits is an ObjectId that went through a relational table.
        return lambda v: ObjectId(v) if isinstance(v, str) and ObjectId.is_valid(v) else v
    if logical == "decimal" or pa.types.is_decimal(col.type):
        return _decimal128
    if pa.types.is_date(col.type):
        return lambda v: dt.datetime(v.year, v.month, v.day, tzinfo=UTC) if isinstance(v, dt.date) else v
    if pa.types.is_timestamp(col.type):
        return lambda v: v.replace(tzinfo=UTC) if isinstance(v, dt.datetime) and v.tzinfo is None else v
    if pa.types.is_time(col.type) or pa.types.is_duration(col.type):
        return lambda v: None if v is None else str(v)
    if pa.types.is_integer(col.type):
        return lambda v: Int64(v) if isinstance(v, int) and not -2**31 <= v < 2**31 else v
    return None


def _decimal128(v: object) -> object:
    if v is None:
        return None
    try:
        return Decimal128(Decimal(str(v)))
    except (DecimalException, ValueError) as exc:
        raise Misfit(f"{v!r} is not a decimal Decimal128 can hold (34 digits): {type(exc).__name__}") from None


def _object_id(v: object) -> object:
    if isinstance(v, str) and ObjectId.is_valid(v):
        return ObjectId(v)
    raise Misfit(f"{v!r} is not an ObjectId (24 hexadecimal digits)")


def _element(element_type: str) -> Callable[[str], object]:
    """How one element of a PostgreSQL array becomes a BSON value."""
    t = element_type.lower()
    if t.startswith("numeric") or t == "decimal":
        return _decimal128
    if t.startswith("timestamp"):
        return lambda s: _utc(dt.datetime.fromisoformat(s))
    if t == "date":
        return lambda s: dt.datetime.combine(dt.date.fromisoformat(s), dt.time(), tzinfo=UTC)
    if t == "uuid":
        return uuid.UUID
    if t in ("json", "jsonb"):
        return lambda s: revive(orjson.loads(s))
    return element_parser(t)


def _utc(v: dt.datetime) -> dt.datetime:
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v


def as_stored(doc: Document) -> Document:
    """`doc` as MongoDB will hold it (dates to milliseconds, ints by size): what a stored document
    is compared with."""
    return decoded(bson.encode(doc, codec_options=_DECODE))


def synthetic_id(migration_id: str, table: str, place: str) -> ObjectId:
    """A stable `_id` for a row of a keyless source (a CSV line), from its place in the read: the
    same on every replay, so a resumed run recognises the documents it already wrote."""
    digest = hashlib.blake2b(f"{migration_id}/{table}/{place}".encode(), digest_size=12).digest()
    return ObjectId(digest)


_DECODE: CodecOptions[Document] = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)


def decoded(raw: bytes | memoryview) -> Document:
    """A raw BSON document decoded the way the client decodes (aware UTC dates, standard UUIDs)."""
    return bson.decode(bytes(raw), codec_options=_DECODE)


def bson_type(c: Column) -> str:
    """The BSON type a column's values are stored as (`$type` names)."""
    if c.logical in ("json",):
        return "object"
    if c.logical == "objectid":
        return "objectId"
    if c.logical == "uuid":
        return "binData (UUID)"
    if c.logical == "decimal":
        return "decimal"
    t = c.type
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int" if t.bit_width <= 32 else "long"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "date"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binData"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "array"
    if pa.types.is_struct(t):
        return "object"
    return "string"
