"""Verifying a migration's run (service.verify) with what the state store knows of it: which
tables it moved and where to, and its rejects. The report is saved with the migration."""

from __future__ import annotations

from service.core.errors import WrongState
from service.core.urls import EndpointUrl
from service.runs.spec import MigrationSpec
from service.store.base import StateStore
from service.verify.verify import Pair, verify


async def verify_migration(store: StateStore, migration_id: str, spec: MigrationSpec, source: EndpointUrl,
                           target: EndpointUrl, *, deep: bool) -> dict[str, object]:
    """Verify every table the migration ran (embedded MongoDB children excepted: their rows live
    inside their parents' documents); save and return the report."""
    tables = [Pair(t.table, t.target) for t in await store.tables(migration_id) if t.table not in spec.mongo.embed]
    if not tables:
        raise WrongState(f"migration {migration_id} has not run any table yet: nothing to verify")
    report = await verify(store, migration_id, spec, source, target, tables, deep=deep)
    await store.save_report(migration_id, report)
    return report
