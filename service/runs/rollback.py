"""Rolling a migration back (DESIGN.md §3 `rollback`): the target returns to its state before
the run — tables and collections the run created are dropped, rows it inserted into existing
ones deleted, documents it overwrote restored (each target kind's `Sink.rollback`).

The status goes `rolling_back` → `rolled_back`. A rollback that is interrupted stays
`rolling_back`; running it again finishes the job (each sink's rollback is idempotent)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from service.connectors.registry import open_sink
from service.core.errors import MigratorError, WrongState
from service.core.urls import EndpointUrl
from service.runs.spec import MigrationSpec
from service.store.base import LogEntry, MigrationRecord, StateStore
from service.store.rows import now
from service.sync.capture_pass import drop_capture_slot

# Statuses a rollback may start from: the run has stopped (or an earlier rollback was cut short).
STOPPED = ("completed", "failed", "cancelled", "interrupted", "rolling_back", "rolled_back")

StatusHook = Callable[[str, str | None], Awaitable[None]]
LogHook = Callable[[LogEntry], None]


async def roll_back(store: StateStore, record: MigrationRecord, spec: MigrationSpec, target: EndpointUrl,
                    on_status: StatusHook | None = None, on_log: LogHook | None = None, *,
                    force: bool = False, source: EndpointUrl | None = None) -> list[str]:
    """Roll `record` back; returns what was done. Raises WrongState for a migration that is
    running or has not run, and the target's error (the status stays `rolling_back`). `force`:
    also one the store says is running — a command-line run killed outright leaves that status
    behind, with no service to mark it `interrupted`."""
    if record.status not in STOPPED and not (force and record.status in ("executing", "pausing", "paused")):
        hint = ("cancel it first (if the process running it was killed, `migrator rollback ID --force`)"
                if record.status in ("executing", "pausing", "paused")
                else "it has not run, so there is nothing to undo")
        raise WrongState(f"migration {record.id} is {record.status}: {hint}")

    async def status(value: str, error: str | None) -> None:
        await store.set_status(record.id, value, error=error, ended=value == "rolled_back")
        if on_status is not None:
            await on_status(value, error)

    async def log(level: str, message: str) -> None:
        entry = LogEntry(now(), level, message)
        await store.add_log(record.id, entry)
        if on_log is not None:
            on_log(entry)

    sink = open_sink(target, timeout=spec.timeout, csv=spec.csv, parallel=1, mode=spec.mode, mongo=spec.mongo)
    try:
        await sink.check()  # an unreachable target leaves the migration as it was (still resumable)
        await status("rolling_back", None)
        await log("INFO", f"Rollback started: {target.masked} returns to its state before the run")
        try:
            done = await sink.rollback(record.id)
        except Exception as exc:
            reason = exc.message if isinstance(exc, MigratorError) else f"{type(exc).__name__}: {exc}"
            reason = target.redact(reason)
            await log("ERROR", f"Rollback failed: {reason} (run it again to finish)")
            await status("rolling_back", reason)
            raise
    finally:
        await sink.close()
    for line in done:
        await log("INFO", f"Rollback: {line}")
    await _drop_slot(store, record, spec, source, log)
    await log("INFO", "Rollback completed" if done else "Rollback completed: nothing of this run was in the target")
    await status("rolled_back", None)
    return done


async def _drop_slot(store: StateStore, record: MigrationRecord, spec: MigrationSpec, source: EndpointUrl | None,
                     log: Callable[[str, str], Awaitable[None]]) -> None:
    """Change capture's replication slot goes with the migration: left behind, it would keep
    the source's WAL forever."""
    state = await store.sync_state(record.id)
    slot = state.get("slot") if state else None
    if not isinstance(slot, str):
        return
    by_hand = f"drop it on the source: SELECT pg_drop_replication_slot('{slot}')"
    if source is None:
        await log("WARNING", f"Rollback: replication slot {slot} was not dropped (no source connection); {by_hand}")
        return
    try:
        dropped = await drop_capture_slot(source, slot, spec.timeout)
    except Exception as exc:
        reason = source.redact(exc.message if isinstance(exc, MigratorError) else f"{type(exc).__name__}: {exc}")
        await log("WARNING", f"Rollback: replication slot {slot} was not dropped ({reason}); {by_hand}")
        return
    assert state is not None
    await store.save_sync(record.id, {**state, "slot": None})
    if dropped:
        await log("INFO", f"Rollback: replication slot {slot} dropped on the source")
