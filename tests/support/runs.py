"""Starting migrations in-process through the public seams (spec, resolve, create_or_resume)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from service.runs.events import BatchCommitted, Event, Listener, TableStarted
from service.runs.migration import Migration, create_or_resume, resolve
from service.runs.spec import MigrationSpec
from service.store.base import StateStore

STOP_SECONDS = 3.0


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


async def run_until_committed(store: StateStore, spec: Mapping[str, object], data_dir: Path, *,
                              pause: bool = False) -> tuple[Migration, asyncio.Task[None]]:
    """Start the run of `spec` in a task; return it once a batch is committed (and, with `pause`,
    once the run is paused). Cancels the task and raises when that does not come within 30 s."""
    watcher = Watcher()
    migration = await prepare(store, spec, data_dir, listeners=[watcher])
    task = asyncio.create_task(migration.run())
    try:
        async with asyncio.timeout(30):
            await watcher.committed.wait()
            if pause:
                await migration.pause()
    except BaseException:
        task.cancel()
        await asyncio.wait([task], timeout=STOP_SECONDS)
        raise
    return migration, task


async def stop(task: asyncio.Task[None], migration: Migration, *, before: str) -> None:
    """Cancel the task running `migration` (as Ctrl-C does) and wait for it to stop. Fails the test —
    instead of hanging it — when the run does not stop within STOP_SECONDS of the cancel, or had
    already ended (`before` what the test waited for)."""
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=STOP_SECONDS)
    if not done:
        # A stage swallowed the cancellation: cancel the run's own pipeline tasks once more, so the
        # stuck run ends now and does not leak into the next test.
        for other in asyncio.all_tasks():
            if other.get_name().startswith(("produce:", "transform:", "write:")):
                other.cancel()
        await asyncio.wait([task], timeout=STOP_SECONDS)
        pytest.fail(f"the run did not stop within {STOP_SECONDS} s of its task being cancelled "
                    f"(status {migration.status!r})")
    if not task.cancelled():
        pytest.fail(f"the run ended before {before} ({migration.status}): {task.exception()!r}")
