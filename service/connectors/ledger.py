"""The checkpoint ledger kept inside a transactional target (PostgreSQL, SQLite).

Each batch's rows and its checkpoint commit in the same target transaction, so after any crash
the target itself says exactly which source rows it holds. The SQL is shared by the SQL sinks;
only the parameter placeholder differs (`$1` or `?`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import orjson

from service.core.batch import Checkpoint

TABLE = "_migrator_checkpoints"

Placeholder = Callable[[int], str]


def dollar(i: int) -> str:
    return f"${i}"


def qmark(i: int) -> str:
    return "?"


def ddl(text_type: str = "text", int_type: str = "bigint", bool_type: str = "boolean") -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        f" migration_id {text_type} NOT NULL, table_name {text_type} NOT NULL,"
        f" position {text_type}, rows_written {int_type} NOT NULL DEFAULT 0,"
        f" rows_failed {int_type} NOT NULL DEFAULT 0, batches {int_type} NOT NULL DEFAULT 0,"
        f" created {bool_type} NOT NULL DEFAULT FALSE,"
        f" PRIMARY KEY (migration_id, table_name))"
    )


def register_sql(ph: Placeholder) -> str:
    """Record that a run writes a table it found existing; keeps an existing row (its checkpoint)."""
    return (
        f"INSERT INTO {TABLE} (migration_id, table_name, created) VALUES ({ph(1)}, {ph(2)}, {ph(3)})"
        " ON CONFLICT (migration_id, table_name) DO NOTHING"
    )


def register_created_sql(ph: Placeholder) -> str:
    """Record that a run has just created the table: any earlier checkpoint of it is void (the
    table was dropped since), so the table starts from the top."""
    return (
        f"INSERT INTO {TABLE} (migration_id, table_name, created) VALUES ({ph(1)}, {ph(2)}, TRUE)"
        " ON CONFLICT (migration_id, table_name) DO UPDATE SET position = NULL, rows_written = 0,"
        " rows_failed = 0, batches = 0, created = TRUE"
    )


def save_sql(ph: Placeholder) -> str:
    return (
        f"UPDATE {TABLE} SET position = {ph(1)}, rows_written = {ph(2)}, rows_failed = {ph(3)}, batches = {ph(4)}"
        f" WHERE migration_id = {ph(5)} AND table_name = {ph(6)}"
    )


def touch_sql(ph: Placeholder) -> str:
    """A write to the table's ledger row that changes nothing (a commit to wait on)."""
    return f"UPDATE {TABLE} SET batches = batches WHERE migration_id = {ph(1)} AND table_name = {ph(2)}"


def load_sql(ph: Placeholder) -> str:
    return (
        f"SELECT position, rows_written, rows_failed, batches, created FROM {TABLE}"
        f" WHERE migration_id = {ph(1)} AND table_name = {ph(2)}"
    )


def save_args(checkpoint: Checkpoint, migration_id: str, table: str) -> tuple[object, ...]:
    return (
        orjson.dumps(checkpoint.position).decode(),
        checkpoint.rows_written,
        checkpoint.rows_failed,
        checkpoint.batches,
        migration_id,
        table,
    )


def decode(row: Sequence[object] | None) -> tuple[Checkpoint | None, bool]:
    """(checkpoint or None when nothing is committed yet, whether the run created the table)."""
    if row is None:
        return None, False
    position, written, failed, batches, created = row
    if position is None or not batches:
        return None, bool(created)
    return (
        Checkpoint(orjson.loads(str(position)), int(str(written)), int(str(failed)), int(str(batches))),
        bool(created),
    )


# -- what a run wrote into tables it did not create, so that a rollback can take it out again ----

WRITES = "_migrator_writes"


def writes_ddl(text_type: str = "text") -> str:
    """One row per batch a run committed into a table it did not create, written in the batch's
    own transaction: it says which rows are the batch's (PostgreSQL: the row's own xmin, shared
    with the rows COPY wrote in the same subtransaction; SQLite: `mark` is the batch's rowid
    range, `first:last`)."""
    return (f"CREATE TABLE IF NOT EXISTS {WRITES} (migration_id {text_type} NOT NULL,"
            f" table_name {text_type} NOT NULL, mark {text_type} NOT NULL)")


def add_write_sql(ph: Placeholder, mark: str) -> str:
    """Insert a write mark; `mark` is the SQL expression that computes it."""
    return f"INSERT INTO {WRITES} (migration_id, table_name, mark) VALUES ({ph(1)}, {ph(2)}, {mark})"


def tables_sql(ph: Placeholder) -> str:
    """The tables a migration wrote, and whether it created them."""
    return f"SELECT table_name, created FROM {TABLE} WHERE migration_id = {ph(1)} ORDER BY table_name"


def marks_sql(ph: Placeholder) -> str:
    return f"SELECT mark FROM {WRITES} WHERE migration_id = {ph(1)} AND table_name = {ph(2)}"


def xmin_marks_sql() -> str:
    """PostgreSQL: the transaction ids of a migration's writes into a table (each write row's own
    xmin, which its batch's rows share), each with the number of rows written with it."""
    return (f"SELECT xmin::text::bigint, sum(CASE WHEN mark ~ '^[0-9]+$' THEN mark::bigint ELSE 0 END) FROM {WRITES}"
            " WHERE migration_id = $1 AND table_name = $2 GROUP BY 1")


# -- rows a run updated or deleted in tables it did not create (incremental sync, PostgreSQL) ----

BEFORE = "_migrator_before"


def before_ddl() -> str:
    """The first version a run saw of each row it upserted or deleted in a table it did not
    create: `row` is the row as JSON, or NULL when the key was not there (the run inserted it).
    A rollback deletes every such key and puts the saved rows back."""
    return (f"CREATE TABLE IF NOT EXISTS {BEFORE} (migration_id text NOT NULL, table_name text NOT NULL,"
            " key jsonb NOT NULL, row jsonb, PRIMARY KEY (migration_id, table_name, key))")


def forget_sql(ph: Placeholder) -> list[str]:
    """Remove a migration from the ledger (after its rollback)."""
    return [f"DELETE FROM {WRITES} WHERE migration_id = {ph(1)}", f"DELETE FROM {TABLE} WHERE migration_id = {ph(1)}"]
