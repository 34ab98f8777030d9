"""The spec's `mongo:` section: how documents become rows (and back)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from service.core.errors import InvalidSpec

Nested = Literal["json", "flatten", "tables"]
NESTED = ("json", "flatten", "tables")
Mixed = Literal["widen", "reject"]


@dataclass(frozen=True)
class Embed:
    """Rows of a table written as an array inside their parent documents (PG→Mongo): each row
    goes into `into`'s document whose `_id` equals its `foreign_key` column, under `field`."""

    into: str
    foreign_key: str
    field: str


@dataclass(frozen=True)
class MongoOptions:
    """`sampleSize`: documents read to infer a collection's columns (0: every document).
    `nested`: objects and arrays become one JSON column (`json`, the default), objects become
    `parent_child` columns (`flatten`), or top-level arrays of objects become child tables
    `<collection>_<field>` keyed by the parent's `_id` and the position (`tables`; other nested
    values stay JSON); `nestedFields` overrides it per field path.
    `mixedTypes`: a field holding values of several types becomes a JSON column (`widen`), or the
    most common type is kept and the other rows are rejected (`reject`)."""

    sample_size: int = 1000
    nested: Nested = "json"
    nested_fields: Mapping[str, Nested] = field(default_factory=dict)
    mixed_types: Mixed = "widen"
    embed: Mapping[str, Embed] = field(default_factory=dict)
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # upsert/replace match on these
    object_ids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # text columns written as ObjectId

    def nesting(self, path: str) -> Nested:
        return self.nested_fields.get(path, self.nested)

    @property
    def makes_tables(self) -> bool:
        return self.nested == "tables" or "tables" in self.nested_fields.values()

    @classmethod
    def from_spec(cls, raw: object) -> MongoOptions:
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise InvalidSpec(["mongo must be a mapping of MongoDB options"])
        problems: list[str] = []
        known = {"sampleSize", "nested", "nestedFields", "mixedTypes", "embed", "keys", "objectIds"}
        problems += [f"mongo.{k}: unknown option (known: {', '.join(sorted(known))})" for k in raw if k not in known]
        sample = raw.get("sampleSize", 1000)
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
            problems.append(f"mongo.sampleSize must be a whole number >= 0 (0: every document), not {sample!r}")
            sample = 1000
        nested = raw.get("nested", "json")
        if nested not in NESTED:
            problems.append(f"mongo.nested must be one of {', '.join(NESTED)}, not {nested!r}")
            nested = "json"
        fields = raw.get("nestedFields", {})
        if not isinstance(fields, Mapping) or not all(v in NESTED for v in fields.values()):
            problems.append(f"mongo.nestedFields must map field paths to one of {', '.join(NESTED)}")
            fields = {}
        mixed = raw.get("mixedTypes", "widen")
        if mixed not in ("widen", "reject"):
            problems.append(f"mongo.mixedTypes must be widen or reject, not {mixed!r}")
            mixed = "widen"
        embed = _embeds(raw.get("embed", {}), problems)
        keys = _columns_per_table("keys", raw.get("keys", {}), problems)
        object_ids = _columns_per_table("objectIds", raw.get("objectIds", {}), problems)
        if problems:
            raise InvalidSpec(problems)
        return cls(sample, nested, {str(k): v for k, v in fields.items()}, mixed, embed, keys, object_ids)


def _columns_per_table(name: str, raw: object, problems: list[str]) -> dict[str, tuple[str, ...]]:
    """`{table: [column, …]}`."""
    if isinstance(raw, Mapping) and all(isinstance(v, list) and v and all(isinstance(c, str) and c for c in v)
                                        for v in raw.values()):
        return {str(k): tuple(v) for k, v in raw.items()}
    problems.append(f"mongo.{name} must map a table to a non-empty list of column names")
    return {}


def _embeds(raw: object, problems: list[str]) -> dict[str, Embed]:
    """`embed: {order_items: {into: orders, foreignKey: order_id, as: items}}`."""
    if not isinstance(raw, Mapping):
        problems.append("mongo.embed must map a child table to {into, foreignKey, as}")
        return {}
    out: dict[str, Embed] = {}
    for child, e in raw.items():
        parts = [e.get(k) for k in ("into", "foreignKey", "as")] if isinstance(e, Mapping) else []
        if len(parts) != 3 or not all(isinstance(p, str) and p for p in parts):
            problems.append(f"mongo.embed.{child} must be {{into: parent table, foreignKey: column, as: field}}")
            continue
        out[str(child)] = Embed(*(str(p) for p in parts))
    return out
