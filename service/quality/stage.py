"""The quality stage of a table's pipeline: the spec's transforms, then its rules, then duplicate
detection, then conforming to the target's types — each a vectorized step over `Rows`, all run
in a thread so the event loop stays free. Rows a step refuses leave the batch as rejects."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import pyarrow as pa

from service.core.batch import Batch, NativePayload, Reject, SourceRows
from service.core.schema import Column, TableSchema
from service.quality.conform import ConformStage
from service.quality.dedupe import Dedupe, compile_dedupe
from service.quality.rows import Rows, Step
from service.quality.rules import RuleStep, compile_rules
from service.quality.transforms import compile_transforms


@dataclass
class TableQuality:
    """What the spec asks of one table: its steps before conforming, and the table's columns after
    the transforms (what the target table must hold)."""

    steps: list[Step]
    schema: TableSchema
    rules: RuleStep | None = None  # the rule step, whose `warnings` the run logs
    dedupe: Dedupe | None = None  # the duplicate detection, which the run may seed with the target's keys
    warnings: list[Reject] = field(default_factory=list)

    @classmethod
    def of(cls, source: TableSchema, *, transforms: Mapping[str, object], rules: Mapping[str, object],
           dedupe: Mapping[str, object], validation: bool, expected_rows: int = 0) -> TableQuality:
        table = source.name
        steps: list[Step] = []
        schema = source
        transform = compile_transforms(table, _sequence(transforms.get(table)))
        if transform is not None:
            steps.append(transform)
            schema = _after(source, transform)
        checks = compile_rules(table, _mapping(rules.get(table)), enabled=validation)
        if checks is not None:
            steps.append(checks)
        dedup = compile_dedupe(table, _mapping(dedupe.get(table)), expected_keys=expected_rows)
        if dedup is not None:
            steps.append(dedup)
        return cls(steps, schema, checks, dedup)

    def take_warnings(self) -> list[Reject]:
        """Rows kept despite a rule (`action: warn` or `fix`) since the last call."""
        if self.rules is None or not self.rules.warnings:
            return []
        found = list(self.rules.warnings)
        self.rules.warnings.clear()
        return found


class QualityStage:
    def __init__(self, quality: TableQuality, conform: ConformStage) -> None:
        self.quality = quality
        self.conform = conform

    async def __call__(self, batch: Batch) -> Batch:
        if isinstance(batch.data, NativePayload):
            return batch  # pass-through is chosen only when no step applies
        # The rows as read stay with the batch until it is committed: a reject's record comes from them.
        batch = replace(batch, source=SourceRows(batch.data, batch.first_row, batch.numbers))
        if not self.quality.steps:
            return await self.conform(batch)
        return await asyncio.to_thread(self._run, batch)

    def _run(self, batch: Batch) -> Batch:
        assert isinstance(batch.data, pa.RecordBatch)
        rows = Rows.of(batch.table, batch.data, batch.first_row, self.quality.schema.key, batch.numbers)
        for step in (*self.quality.steps, self.conform.step):
            rows = step(rows)
        return replace(batch, data=rows.data, rejects=[*batch.rejects, *rows.rejects], numbers=rows.numbers)


def _after(source: TableSchema, transform: Step) -> TableSchema:
    """The table's columns once `transform` has run: found by running it on no rows."""
    empty = pa.RecordBatch.from_arrays([pa.array([], c.type) for c in source.columns],
                                       schema=source.arrow_schema())
    out = transform(Rows.of(source.name, empty, 1, source.key)).data.schema
    kept = {c.name: c for c in source.columns}
    columns = tuple(kept[f.name] if f.name in kept and kept[f.name].type == f.type else Column(f.name, f.type)
                    for f in out)
    names = {c.name for c in columns}
    key = source.key if all(k in names for k in source.key) else ()
    return replace(source, columns=columns, key=key)


def _sequence(v: object) -> Sequence[object] | None:
    return v if isinstance(v, list | tuple) else None


def _mapping(v: object) -> Mapping[str, object] | None:
    return v if isinstance(v, Mapping) else None
