"""Incremental sync in-process: pass 0, then later passes of the same migration."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from service.runs.events import Listener
from service.runs.migration import Migration, find_for_sync, resolve
from service.runs.spec import MigrationSpec
from service.runs.verification import verify_migration
from service.store.base import StateStore


async def sync_pass(store: StateStore, spec: Mapping[str, object], data_dir: Path, *, final: bool = True,
                    listeners: list[Listener] | None = None) -> Migration:
    """One pass of the incremental migration `spec` (the first is pass 0), run to its end."""
    parsed = MigrationSpec.from_dict(dict(spec))
    endpoints = resolve(parsed, data_dir)
    record, _ = await find_for_sync(store, parsed, endpoints)
    migration = Migration(record, parsed, endpoints, store, listeners=listeners)
    await migration.run(sync=True, final=final)
    return migration


async def cut_over(store: StateStore, spec: Mapping[str, object], data_dir: Path,
                   listeners: list[Listener] | None = None) -> dict[str, object]:
    """The last pass of `spec`'s migration, with the foreign keys, then the deep verification and the
    slot dropped (Migration.cut_over, as POST /cutover and `migrator sync --cutover` do)."""
    parsed = MigrationSpec.from_dict(dict(spec))
    endpoints = resolve(parsed, data_dir)
    record, _ = await find_for_sync(store, parsed, endpoints)
    migration = Migration(record, parsed, endpoints, store, listeners=listeners)
    migration.cutting_over = True
    await migration.keep_in_sync(None)

    async def verify() -> dict[str, object]:
        return await verify_migration(store, record.id, parsed, endpoints.source, endpoints.target, deep=True)

    return await migration.cut_over(verify)
