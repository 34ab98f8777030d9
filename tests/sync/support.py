"""Incremental sync in-process: pass 0, then later passes of the same migration."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from service.runs.events import Listener
from service.runs.migration import Migration, find_for_sync, resolve
from service.runs.spec import MigrationSpec
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
