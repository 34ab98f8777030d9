"""The spec's `mongo:` section: how documents become rows (and back)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from service.core.errors import InvalidSpec

Nested = Literal["json", "flatten"]
Mixed = Literal["widen", "reject"]


@dataclass(frozen=True)
class MongoOptions:
    """`sampleSize`: documents read to infer a collection's columns (0: every document).
    `nested`: objects and arrays become one JSON column (`json`, the default) or objects become
    `parent_child` columns (`flatten`); `nestedFields` overrides it per field path.
    `mixedTypes`: a field holding values of several types becomes a JSON column (`widen`), or the
    most common type is kept and the other rows are rejected (`reject`)."""

    sample_size: int = 1000
    nested: Nested = "json"
    nested_fields: Mapping[str, Nested] = field(default_factory=dict)
    mixed_types: Mixed = "widen"

    def nesting(self, path: str) -> Nested:
        return self.nested_fields.get(path, self.nested)

    @classmethod
    def from_spec(cls, raw: object) -> MongoOptions:
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise InvalidSpec(["mongo must be a mapping of MongoDB options"])
        problems: list[str] = []
        known = {"sampleSize", "nested", "nestedFields", "mixedTypes"}
        problems += [f"mongo.{k}: unknown option (known: {', '.join(sorted(known))})" for k in raw if k not in known]
        sample = raw.get("sampleSize", 1000)
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
            problems.append(f"mongo.sampleSize must be a whole number >= 0 (0: every document), not {sample!r}")
            sample = 1000
        nested = raw.get("nested", "json")
        if nested not in ("json", "flatten"):
            problems.append(f"mongo.nested must be json or flatten, not {nested!r}")
            nested = "json"
        fields = raw.get("nestedFields", {})
        if not isinstance(fields, Mapping) or not all(v in ("json", "flatten") for v in fields.values()):
            problems.append("mongo.nestedFields must map field paths to json or flatten")
            fields = {}
        mixed = raw.get("mixedTypes", "widen")
        if mixed not in ("widen", "reject"):
            problems.append(f"mongo.mixedTypes must be widen or reject, not {mixed!r}")
            mixed = "widen"
        if problems:
            raise InvalidSpec(problems)
        return cls(sample, nested, {str(k): v for k, v in fields.items()}, mixed)
