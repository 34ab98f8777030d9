"""Table schemas as every connector describes them: Arrow types plus the source's own type names."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    """One column. `native_type` is the source's own type (e.g. `numeric(10,3)`), kept so that a
    same-kind target can be created with exactly that type."""

    name: str
    type: pa.DataType
    nullable: bool = True
    native_type: str | None = None
    # What an Arrow string column really holds, when targets should know: "json" (a JSON
    # document: jsonb / nested documents), "uuid", "objectid", "decimal" (exact decimal text).
    logical: str | None = None


@dataclass(frozen=True)
class Index:
    """A secondary index of the source, recreated on a target the run creates."""

    name: str
    fields: tuple[tuple[str, int | str], ...]  # (field, 1 | -1 | "text" | "2dsphere" | "hashed" …)
    unique: bool = False
    options: tuple[tuple[str, object], ...] = ()  # sparse, partialFilterExpression, expireAfterSeconds, …


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key of the source: `columns` of this table reference `references` of `table`
    (a source table name). Recreated, after the load, between tables a run creates."""

    name: str
    columns: tuple[str, ...]
    table: str
    references: tuple[str, ...]  # () when the source leaves them implicit: the parent's key
    deferrable: bool = False
    on_delete: str = "NO ACTION"  # NO ACTION | RESTRICT | CASCADE | SET NULL | SET DEFAULT
    on_update: str = "NO ACTION"


@dataclass(frozen=True)
class TableSchema:
    """A table as read from a source. `key` orders the rows for resumable reading (may be empty
    when the source reads in physical order, e.g. a CSV file by byte offset)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    native_kind: str | None = None
    notes: tuple[str, ...] = field(default=())
    indexes: tuple[Index, ...] = field(default=())
    foreign_keys: tuple[ForeignKey, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def with_types(self, types: dict[str, pa.DataType]) -> TableSchema:
        """The same table with the given columns retyped (others unchanged)."""
        cols = tuple(replace(c, type=types[c.name]) if c.name in types else c for c in self.columns)
        return replace(self, columns=cols)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=True) for c in self.columns])
