"""Starting migrations in-process through the public seams (spec, resolve, create_or_resume)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from service.runs.events import BatchCommitted, Event, Listener, TableStarted
from service.runs.migration import Migration, create_or_resume, resolve
from service.runs.spec import MigrationSpec
from service.store.base import StateStore


async def prepare(store: StateStore, spec: Mapping[str, object], data_dir: Path,
                  listeners: list[Listener] | None = None) -> Migration:
    """The migration for `spec`: the unfinished one with the same spec, or a new one (not run yet)."""
    parsed = MigrationSpec.from_dict(dict(spec))
    endpoints = resolve(parsed, data_dir)
    record, _ = await create_or_resume(store, parsed, endpoints)
    return Migration(record, parsed, endpoints, store, listeners=listeners)


async def migrate(store: StateStore, spec: Mapping[str, object], data_dir: Path) -> Migration:
    """Run `spec` to its end and return the finished migration."""
    migration = await prepare(store, spec, data_dir)
    await migration.run()
    return migration


class Watcher:
    """A listener that lets a test wait for a run's first table start and first committed batch."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.committed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        if isinstance(event, TableStarted):
            self.started.set()
        elif isinstance(event, BatchCommitted):
            self.committed.set()
