"""The spec's incremental-sync options (`incremental:`, `detectDeletes:`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from service.core.errors import InvalidSpec
from service.core.schema import TableSchema


@dataclass(frozen=True)
class SyncTable:
    """How later passes find a table's changes: rows whose `cursor` column reached the last
    pass's high-water mark, or (`capture`) a PostgreSQL logical replication slot."""

    cursor: str | None = None
    capture: bool = False


@dataclass(frozen=True)
class SyncOptions:
    tables: Mapping[str, SyncTable] = field(default_factory=dict)
    detect_deletes: bool = False  # after each later pass: target rows whose key left the source …
    soft_delete: str | None = None  # … are deleted, or get this boolean column set to true

    @property
    def enabled(self) -> bool:
        return bool(self.tables)

    @property
    def captured(self) -> list[str]:
        return [t for t, o in self.tables.items() if o.capture]

    @classmethod
    def from_spec(cls, incremental: object, detect_deletes: object) -> SyncOptions:
        """`incremental: {table: {cursor: column} | {capture: true}}`,
        `detectDeletes: true | false | {softDelete: column}`; every problem is reported at once."""
        problems: list[str] = []
        tables: dict[str, SyncTable] = {}
        if incremental is not None and not isinstance(incremental, Mapping):
            problems.append("incremental must map table -> {cursor: column} or {capture: true}")
        for table, raw in (incremental or {}).items() if isinstance(incremental, Mapping) else ():
            where = f"incremental.{table}"
            if not isinstance(raw, Mapping):
                problems.append(f"{where} must be {{cursor: column}} or {{capture: true}}, not {raw!r}")
                continue
            unknown = sorted(set(raw) - {"cursor", "capture"})
            if unknown:
                problems.append(f"{where} has no option {', '.join(unknown)} (use cursor or capture)")
            cursor, capture = raw.get("cursor"), raw.get("capture", False)
            if cursor is not None and (not isinstance(cursor, str) or not cursor):
                problems.append(f"{where}.cursor must be a column name, not {cursor!r}")
            if not isinstance(capture, bool):
                problems.append(f"{where}.capture must be true or false, not {capture!r}")
            elif (cursor is None) == (not capture):
                problems.append(f"{where}: give either a cursor column (rows changed since the last pass) or "
                                "capture: true (PostgreSQL change capture), not both or neither")
            tables[str(table)] = SyncTable(cursor if isinstance(cursor, str) else None, capture is True)
        detect, soft = False, None
        if isinstance(detect_deletes, bool):
            detect = detect_deletes
        elif isinstance(detect_deletes, Mapping) and set(detect_deletes) == {"softDelete"} \
                and isinstance(detect_deletes["softDelete"], str) and detect_deletes["softDelete"]:
            detect, soft = True, str(detect_deletes["softDelete"])
        elif detect_deletes is not None:
            problems.append("detectDeletes must be true, false or {softDelete: <boolean column>}, "
                            f"not {detect_deletes!r}")
        if detect and not tables:
            problems.append("detectDeletes needs incremental tables (incremental: {table: {cursor: column}})")
        if problems:
            raise InvalidSpec(problems)
        return cls(tables, detect, soft)


def table_problems(opts: SyncOptions, schemas: list[TableSchema], *, source_kind: str, cursor_reads: bool,
                   target_kind: str) -> list[str]:
    """What the source's tables, the source and the target do not allow of `opts` (checked by the
    plan and by every pass, before any row is written)."""
    by_name = {s.name: s for s in schemas}
    problems = []
    for name, o in opts.tables.items():
        schema = by_name.get(name)
        if schema is None:
            problems.append(f"incremental.{name}: the source has no table {name!r} among those migrated")
        elif not schema.key:
            problems.append(f"incremental.{name}: the table has no primary key, and a sync replaces rows by key")
        elif o.cursor and o.cursor not in schema.column_names:
            problems.append(f"incremental.{name}.cursor: the table has no column {o.cursor!r}")
        elif o.cursor and not cursor_reads:
            problems.append(f"incremental.{name}: a {source_kind} source cannot be read by a cursor column "
                            "(PostgreSQL, SQLite and MongoDB sources can)")
        elif o.capture and source_kind not in ("postgresql", "mongodb"):
            problems.append(f"incremental.{name}.capture: change capture needs a PostgreSQL or MongoDB source")
        if schema is not None and opts.detect_deletes and o.cursor and target_kind == "mongodb" and len(schema.key) > 1:
            problems.append(f"detectDeletes: {name}'s key ({', '.join(schema.key)}) is an _id sub-document in "
                            "MongoDB; deletes are detected there by one-column keys only")
    if opts.enabled and target_kind == "csv":
        problems.append("incremental: a CSV target cannot replace rows by key; sync into PostgreSQL, SQLite or "
                        "MongoDB")
    return problems
