"""Running one migration: every table through its pipeline, in order, with checkpoints.

`Migration.run()` is resumable: it picks up each table from the target's / state store's
checkpoint, skips tables already completed, and ends with exactly the source rows (minus the
reported rejects) in the target. Pause closes the gate; `pause()` returns once in-flight batches
are committed. Cancelling the task that runs `run()` stops it promptly; the last checkpoint stays valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from service.connectors.base import KeyedWriter, Sink, Source, TableWriter
from service.connectors.registry import open_sink, open_source
from service.connectors.transient import is_transient
from service.core.batch import Batch, Checkpoint, NativeFormat, Position, Reject
from service.core.errors import InvalidInput, MigratorError, PipelineError, RejectLimit, RetriesExhausted, WrongState
from service.core.hosts import HostPolicy
from service.core.schema import TableSchema
from service.core.urls import EndpointUrl, Kind, parse_url
from service.pipeline.gate import Gate
from service.pipeline.pipeline import PipelineConfig, Stage, first_cause, run_table
from service.pipeline.progress import InFlight, TableProgress, TableStatus
from service.plan.order import load_order
from service.quality.conform import ConformStage
from service.quality.dedupe import Dedupe
from service.quality.rejects import with_records
from service.quality.stage import QualityStage, TableQuality
from service.runs.events import (
    BatchCommitted,
    Event,
    Listener,
    LogWritten,
    ReportMade,
    StatusChanged,
    SyncPassed,
    TableFinished,
    TableStarted,
    notify,
)
from service.runs.spec import MigrationSpec
from service.runs.summary import TableCounts, summarize
from service.runs.verification import verify_migration
from service.store.base import LogEntry, MigrationRecord, StateStore
from service.store.rows import now, seconds_since
from service.sync.capture_pass import apply_captured, create_capture_slot, drop_capture_slot, pending_captured
from service.sync.deletes import gone_keys
from service.sync.options import SyncTable, table_problems
from service.sync.state import SyncState

log = logging.getLogger(__name__)
MAX_REJECT_LOGS_PER_BATCH = 20


def new_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class Endpoints:
    source: EndpointUrl
    target: EndpointUrl


def resolve(spec: MigrationSpec, data_dir: Path, *, restrict: bool = False,
            hosts: HostPolicy | None = None) -> Endpoints:
    """The spec's source and target; `hosts` refuses database hosts outside the allow-list."""
    endpoints = Endpoints(
        parse_url(spec.source, data_dir=data_dir, restrict_to_data_dir=restrict),
        parse_url(spec.target, data_dir=data_dir, restrict_to_data_dir=restrict),
    )
    if hosts is not None:
        hosts.check(endpoints.source, "source")
        hosts.check(endpoints.target, "target")
    return endpoints


async def create_or_resume(store: StateStore, spec: MigrationSpec, endpoints: Endpoints) -> tuple[MigrationRecord, bool]:
    """The unfinished migration with this spec's fingerprint (to resume), or a new one."""
    existing = await store.find_unfinished(spec.fingerprint())
    if existing is not None:
        return existing, True
    record = MigrationRecord(
        id=new_id(), fingerprint=spec.fingerprint(), spec=spec.storable(), source=endpoints.source.masked,
        target=endpoints.target.masked, status="initialized", created_at=now(),
    )
    await store.create_migration(record)
    return record, False


async def find_for_sync(store: StateStore, spec: MigrationSpec, endpoints: Endpoints) -> tuple[MigrationRecord, bool]:
    """The migration a sync continues: the latest one with this spec's fingerprint (unless it was
    rolled back), else a new one — whose first run is pass 0."""
    latest = await store.find_latest(spec.fingerprint())
    if latest is not None and latest.status != "rolled_back":
        return latest, True
    return await create_or_resume(store, spec, endpoints)


class Migration:
    def __init__(self, record: MigrationRecord, spec: MigrationSpec, endpoints: Endpoints, store: StateStore,
                 *, listeners: list[Listener] | None = None) -> None:
        self.id = record.id
        self.record = record
        self.spec = spec
        self.endpoints = endpoints
        self.store = store
        self.gate = Gate()
        self.in_flight = InFlight()
        self.tables: dict[str, TableProgress] = {}
        self.status = record.status
        self.error: str | None = None
        self.started = time.monotonic()
        self._listeners = list(listeners or [])
        self._interrupting = False  # a service shutdown, not the user, stops the run
        self.started_at, self.ended_at = record.started_at, record.ended_at
        self._task: asyncio.Task[object] | None = None  # the task running run(), once it runs
        self.estimated_seconds: float | None = None  # the plan's estimate, which the summary compares
        self.sync: SyncState | None = None  # an incremental migration's passes (service.sync)
        self._pass_rows = self._pass_deleted = 0  # this pass's rows written and deleted
        self._pass_base: dict[str, tuple[int, int]] = {}  # per table: (failed, done) before this pass
        self.cutting_over = False  # this pass is a sync's last: the foreign keys, then cut_over()

    # -- watchers -------------------------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        notify(self._listeners, event)

    async def _set_status(self, status: str, *, error: str | None = None, started: bool = False,
                          ended: bool = False) -> None:
        changed = (status, error) != (self.status, self.error)
        self.status, self.error = status, error
        if started and self.started_at is None:
            self.started_at = now()
        self.ended_at = now() if ended else None
        await self.store.set_status(self.id, status, error=error, started=started, ended=ended)
        if changed:
            self._emit(StatusChanged(self.id, status, error))

    async def _log(self, level: str, message: str, *, table: str | None = None, batch: int | None = None,
                   record_id: str | None = None, value: str | None = None, error: str | None = None) -> None:
        entry = LogEntry(timestamp=now(), level=level, message=message, table=table, batch=batch,
                         record_id=record_id, value=value, error=error)
        await self.store.add_log(self.id, entry)
        log.log(logging.getLevelName(level), "%s: %s", self.id, message)
        self._emit(LogWritten(self.id, entry))

    def summary(self) -> dict[str, object]:
        """The summary (DESIGN.md §3) from this run's live counters."""
        return summarize(self.record, self.status, [TableCounts.live(p) for p in self.tables.values()],
                         started_at=self.started_at, ended_at=self.ended_at, error=self.error,
                         estimated_seconds=self.estimated_seconds,
                         sync=self.sync.public() if self.sync is not None else None)

    # -- control --------------------------------------------------------------------------------
    async def pause(self) -> None:
        """Stop reading; return once every batch already read is committed."""
        await self.begin_pause()
        await self.settle_pause()

    async def begin_pause(self) -> None:
        """Close the gate: no new batch is read from now on. Status `pausing`."""
        self.gate.close()
        await self._set_status("pausing")

    async def settle_pause(self) -> None:
        """Wait until the batches already read are committed, then status `paused` (unless the
        run was resumed or ended meanwhile)."""
        await self.in_flight.wait_zero()
        ending = self._task is not None and (self._task.done() or self._task.cancelling() > 0)
        if not self.gate.is_open and self.status == "pausing" and not ending:
            await self._set_status("paused")

    async def set_executing(self) -> None:
        """Status `executing` before run() starts (an API caller sees it at once)."""
        await self._set_status("executing", started=True)

    async def resume(self) -> None:
        self.gate.open()
        await self._set_status("executing")

    def interrupt(self) -> None:
        """Mark the coming cancellation as the service stopping: the run ends `interrupted`
        (resumable after restart) instead of `cancelled`."""
        self._interrupting = True

    # -- the run --------------------------------------------------------------------------------
    async def run(self, *, sync: bool = False, final: bool = True) -> None:
        """Migrate every table. Raises the failure's cause (a MigratorError) after recording it.

        Incremental migrations (spec `incremental`): the first run is pass 0 (everything);
        `sync=True` on a completed one starts the next pass, which copies only what changed
        (service.sync). `final=False` (continuous mode, between passes) leaves the status
        `executing` and skips the verification."""
        spec = self.spec
        self._task = asyncio.current_task()
        if sync and spec.sync.enabled:
            prior = SyncState.from_dict(await self.store.sync_state(self.id))
            if prior is not None and prior.cut_over:
                raise WrongState(f"migration {self.id} was cut over at {prior.ended_at}: the target has taken over; "
                                 "start a new migration to sync again")
        source = open_source(self.endpoints.source, timeout=spec.timeout, csv=spec.csv, mongo=spec.mongo)
        # An incremental migration replaces rows by key (MongoDB targets: upserts by _id / mongo.keys).
        mode = "upsert" if spec.sync.enabled and spec.mode == "insert" else spec.mode
        sink = open_sink(self.endpoints.target, timeout=spec.timeout, csv=spec.csv,
                         parallel=spec.parallel_batches, mode=mode, mongo=spec.mongo)
        try:
            await source.check()
            await sink.check()
            tables = list(spec.tables) if spec.tables else await source.list_tables()
            if not tables:
                raise InvalidInput(f"the source {self.endpoints.source.masked} has no tables")
            schemas = [await source.describe(t) for t in tables]
            order = load_order(schemas)
            levels = _with_embedded_last(order.levels, spec)
            by_name = {s.name: s for s in schemas}
            if spec.sync.enabled:
                await self._sync_begin(source, schemas, new_pass=sync)
            done = {t.table for t in await self.store.tables(self.id) if t.status == TableStatus.COMPLETED}
            captured = set(spec.sync.captured) if self.sync and self.sync.pass_no >= 1 else set()
            for schema in schemas:
                total = await source.count(schema.name, exact=False)
                self.tables[schema.name] = TableProgress(
                    schema.name, spec.target_name(schema.name), total,
                    status=TableStatus.COMPLETED if schema.name in done else TableStatus.PENDING)
                if schema.name not in done:
                    await self.store.save_table(self.id, schema.name, spec.target_name(schema.name), "pending", total)
            # A pause asked for while connecting holds: the gate is already closed.
            await self._set_status("executing" if self.gate.is_open else "paused", started=True)
            await self._log("INFO", f"Migration started: {len(tables)} table(s), "
                                    f"{sum(p.total or 0 for p in self.tables.values())} records")
            await self._log("INFO", "Load order: " + " → ".join(", ".join(level) for level in levels))
            for note in order.notes:
                await self._log("INFO", f"Load order: {note}")
            for level in levels:
                for name in level:
                    if name in done:
                        await self._restore_progress(name)
                await self._run_level(source, sink, [by_name[n] for n in level if n not in done | captured])
            if captured - done:  # every captured table (their changes share one slot), parents first
                await apply_captured(self, source, sink, [by_name[n] for level in levels for n in level
                                                          if n in captured])
            if self.sync is not None:
                await self._sync_end(source, sink, schemas)
            # A sync's target takes its keys at the cutover — once the last pass caught up (a refused
            # cutover leaves none behind: rows arriving table by table would break them).
            if not spec.sync.enabled or (self.cutting_over and self.sync is not None and not self.sync.lag_rows):
                await self._add_foreign_keys(sink, schemas)
        except asyncio.CancelledError:
            for p in self.tables.values():
                if p.status is TableStatus.RUNNING:
                    p.status = TableStatus.CANCELLED
            ending = "interrupted" if self._interrupting else "cancelled"
            await asyncio.shield(self._finish_status(ending, None))
            raise
        except Exception as exc:
            cause = first_cause(exc)
            message = self._reason(cause)
            await self._log("ERROR", f"Migration failed: {message}", error=message)
            await self._finish_status("failed", message)
            if isinstance(cause, MigratorError):
                raise cause from None
            raise PipelineError(message) from cause
        finally:
            await asyncio.shield(self._close(source, sink))
        failed = sum(p.failed for p in self.tables.values())
        if not final:
            return
        await self._log("INFO", f"Migration completed: {sum(p.written for p in self.tables.values())} records "
                                f"migrated, {failed} failed")
        try:
            if spec.verify != "off" and not self.cutting_over:  # (a cutover verifies deep itself)
                await self._verify(deep=spec.verify == "deep")
        finally:  # every row is in: completed, whatever the verification found (it is in the report)
            await asyncio.shield(self._finish_status("completed", None))

    # -- incremental sync (spec `incremental`; service.sync) ------------------------------------
    async def _save_sync(self) -> None:
        assert self.sync is not None
        await self.store.save_sync(self.id, self.sync.to_dict())

    async def _sync_begin(self, source: Source, schemas: list[TableSchema], *, new_pass: bool) -> None:
        """Check the incremental options against the tables, then load the sync's state: pass 0
        the first time, the next pass when `new_pass` and the last one ended, else the pass under
        way (a resume). A new pass makes the incremental tables pending again."""
        opts = self.spec.sync
        problems = table_problems(opts, schemas, source_kind=source.kind, cursor_reads=hasattr(source, "cursor_max"),
                                  target_kind=self.endpoints.target.kind.value)
        if problems:
            raise InvalidInput("; ".join(problems))
        state = SyncState.from_dict(await self.store.sync_state(self.id))
        if state is None:
            state = SyncState(started_at=now())
        elif new_pass and not state.running:
            state.pass_no += 1
            state.running, state.started_at, state.ended_at = True, now(), None
            for table in state.tables.values():
                table["since"] = table.get("next")
            for name in opts.tables:
                await self.store.save_table(self.id, name, self.spec.target_name(name), "pending", None)
        self.sync = state
        self._pass_rows = self._pass_deleted = 0
        self._pass_base = {}
        # Where change capture starts, noted before the first copy reads anything: no change is missed.
        if opts.captured and source.kind == "postgresql" and state.slot is None:
            state.slot = await create_capture_slot(self.endpoints.source, self.id, self.spec.timeout)
            await self._log("INFO", f"Change capture: replication slot {state.slot} created on the source")
        for name in opts.captured if source.kind == "mongodb" else ():
            table = state.tables.setdefault(name, {})
            if "token" not in table:
                table["token"] = await source.change_token(name)  # type: ignore[attr-defined]
        await self._save_sync()
        await self._log("INFO", f"Sync pass {state.pass_no}: " + ("every row (the first pass)" if state.pass_no == 0
                                                                else "the rows changed since the last pass"))

    async def _sync_writer(self, writer: TableWriter, schema: TableSchema) -> SyncTable | None:
        """An incremental table's writer replaces rows by key (and clears the soft-delete flag)."""
        opts = self.spec.sync.tables.get(schema.name) if self.sync is not None else None
        if opts is None:
            return None
        target = writer.schema.name
        if not writer.created and not writer.schema.key and self.endpoints.target.kind is not Kind.MONGO:
            raise InvalidInput(f"incremental.{schema.name}: target table {target} has no primary key, and a sync "
                               "replaces rows by key; add one (the source's key), or let the migration create the table")
        if not writer.created and self.endpoints.target.kind is Kind.SQLITE:
            raise InvalidInput(f"incremental.{schema.name}: into SQLite a sync writes only tables it creates (a rollback "
                               f"could not restore the rows it replaced in {target}); choose a new targetTables name")
        if isinstance(writer, KeyedWriter):
            writer.upsert = True
            writer.soft_delete = self.spec.sync.soft_delete
            await writer.prepare_sync()
        return opts

    async def _sync_read(self, source: Source, schema: TableSchema, start: Checkpoint | None
                         ) -> tuple[Position, tuple[str, object] | None, str | None]:
        """Where this pass reads an incremental table from: (after, since, marker). Pass 0 reads
        in key order like any table. Later passes read cursor ≥ since in (cursor, key) order; their
        checkpoints carry the marker `#N`, so a resumed pass goes on where it was and a new pass
        starts at its since. Each pass notes the table's high-water mark before reading: the next
        pass's since (rows changed while this one reads are read again then, never missed)."""
        assert self.sync is not None
        opts, state, n = self.spec.sync.tables[schema.name], self.sync, self.sync.pass_no
        table = state.tables.setdefault(schema.name, {})
        if opts.cursor and table.get("pass") != n:
            table["pass"], table["next"] = n, await source.cursor_max(schema.name, opts.cursor)  # type: ignore[attr-defined]
            await self._save_sync()
        position = start.position if start else None
        if n == 0:
            return position, None, None
        marker = f"#{n}"
        after = position[1:] if isinstance(position, list) and position and position[0] == marker else None
        since = (opts.cursor, table["since"]) if opts.cursor and table.get("since") is not None else None
        return after, since, marker

    def note_pass_start(self, table: str) -> None:
        """The table's counts before this sync pass (maxErrors applies to each pass's own rows)."""
        progress = self.tables[table]
        self._pass_base.setdefault(table, (progress.failed, progress.done))

    async def _sync_end(self, source: Source, sink: Sink, schemas: list[TableSchema]) -> None:
        """After a pass: deletes (detectDeletes), the lag, the pass's history entry."""
        assert self.sync is not None
        state, opts = self.sync, self.spec.sync
        deleted = self._pass_deleted  # by change capture
        if state.pass_no >= 1 and opts.detect_deletes:
            by_name = {s.name: s for s in schemas}
            children_first = [n for level in reversed(load_order(schemas).levels) for n in level]
            for name in children_first:  # the target's foreign keys hold throughout
                if (o := opts.tables.get(name)) is not None and o.cursor:
                    deleted += await self._detect_deletes(source, sink, by_name[name])
        state.running, state.ended_at = False, now()
        await self.measure_lag(source)
        state.add_history({"pass": state.pass_no, "startedAt": state.started_at, "endedAt": state.ended_at,
                           "rows": self._pass_rows, "deleted": deleted})
        await self._save_sync()
        await self._log("INFO", f"Sync pass {state.pass_no} done: {self._pass_rows} row(s) copied, {deleted} deleted; "
                                f"behind by {state.lag_rows} row(s)")
        self._emit(SyncPassed(self.id, state.public()))

    async def _detect_deletes(self, source: Source, sink: Sink, schema: TableSchema) -> int:
        target = self.spec.target_name(schema.name)
        theirs = ["_id"] if self.endpoints.target.kind is Kind.MONGO else None  # a one-column key is the _id
        writer = await sink.open_table(self._quality(schema).schema, target, self.id)
        reader = open_source(self.endpoints.target, timeout=self.spec.timeout, csv=self.spec.csv, mongo=self.spec.mongo)
        deleted = 0
        try:
            await self._sync_writer(writer, schema)
            async with contextlib.aclosing(gone_keys(source, schema, reader, target, theirs)) as found:
                async for keys in found:
                    if not isinstance(writer, KeyedWriter):
                        raise InvalidInput(f"detectDeletes: a {sink.kind} target cannot delete rows by key")
                    deleted += await writer.delete_keys(keys)
        finally:
            await reader.close()
            await writer.close()
        if deleted:
            how = f"flagged {self.spec.sync.soft_delete}" if self.spec.sync.soft_delete else "deleted"
            await self._log("INFO", f"Table {schema.name}: {deleted} row(s) whose key left the source {how} in "
                                    f"{target}", table=schema.name)
        return deleted

    async def measure_lag(self, source: Source | None = None) -> None:
        """How far the target is behind: rows changed in the source beyond the high-water marks
        (and changes waiting in the capture slot); seconds since the last pass began, when any."""
        assert self.sync is not None
        state, opts = self.sync, self.spec.sync
        own = source is None
        reader = source or open_source(self.endpoints.source, timeout=self.spec.timeout, csv=self.spec.csv,
                                       mongo=self.spec.mongo)
        rows = 0
        try:
            for name, o in opts.tables.items():
                if o.cursor:
                    rows += await reader.count_since(name, o.cursor,  # type: ignore[attr-defined]
                                                     state.tables.get(name, {}).get("next"))
            if opts.captured and state.slot:  # (a MongoDB change stream cannot say how much is waiting)
                rows += await pending_captured(self.endpoints.source, state.slot, self.spec.timeout, opts.captured)
        finally:
            if own:
                await reader.close()
        state.lag_rows, state.measured_at = rows, now()
        state.lag_seconds = 0.0 if not rows else round(seconds_since(state.started_at), 1)

    async def keep_in_sync(self, every: float | None, stopping: asyncio.Event | None = None) -> None:
        """Sync passes until stopped. `every` None: one pass (status `completed` after it).
        Else continuous mode: a pass, then `every` seconds of waiting (the lag measured every few
        seconds, paused while the gate is closed), and again — the status stays `executing`.
        When `stopping` is set (cutover), one last pass ends it `completed`; cancelling the task
        ends it `cancelled`, resumable with the next sync."""
        stopping = stopping or asyncio.Event()
        try:
            await self._sync_loop(every, stopping)
        except asyncio.CancelledError:  # stopped between passes: the run itself did not see it
            if self.status in ("executing", "pausing", "paused"):
                await asyncio.shield(self._finish_status("interrupted" if self._interrupting else "cancelled", None))
            raise

    async def _sync_loop(self, every: float | None, stopping: asyncio.Event) -> None:
        try:
            if every is None:
                await self.run(sync=True)
            else:
                await self._passes(every, stopping)
                self.cutting_over = True
                await self.run(sync=True)
        except Exception as exc:
            if self.status in ("executing", "pausing", "paused"):  # failed between passes, not in one
                reason = self._reason(first_cause(exc))
                await self._log("ERROR", f"Sync stopped: {reason}", error=reason)
                await self._finish_status("failed", reason)
            raise

    async def _passes(self, every: float, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self.run(sync=True, final=False)
            assert self.sync is not None
            self.sync.every = every
            await self._save_sync()
            deadline = time.monotonic() + every
            while not stopping.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), min(5.0, max(0.0, deadline - time.monotonic())))
                if not stopping.is_set():
                    await self.gate.passage()  # paused: no pass, no lag queries
                    try:
                        await self.measure_lag()
                    except Exception as exc:  # a blip: the next pass (retried as any run) will tell
                        if not is_transient(first_cause(exc)):
                            raise
                        await self._log("WARNING", f"Sync: the lag could not be measured: {self._reason(exc)}")
                        continue
                    self._emit(SyncPassed(self.id, self.sync.public()))

    async def cut_over(self, verify: Callable[[], Awaitable[dict[str, object]]]) -> dict[str, object]:
        """After a sync's last pass (run with `cutting_over`, which added the foreign keys): a deep
        verification (`verify`, which saves and sends its report), then — when the source did not
        change meanwhile — the capture slot dropped and the migration marked cut over. Returns the
        answer of POST /cutover."""
        assert self.sync is not None
        sync = self.sync
        if self.status != "completed":
            raise WrongState(f"migration {self.id} is {self.status} after its last sync pass ({self.error}); "
                             "nothing was cut over")
        report = await verify()
        answer: dict[str, object] = {"migrationId": self.id, "status": self.status, "lagRows": sync.lag_rows,
                                     "lagSeconds": sync.lag_seconds, "pass": sync.pass_no, "report": report}
        if sync.lag_rows:  # the source changed during the last pass: not cut over, the slot is kept
            return {**answer, "ok": False, "slotDropped": None,
                    "message": f"the source changed during the last pass ({sync.lag_rows} row(s) behind): stop "
                               "writing to the source, then cut over again"}
        dropped = sync.slot
        if sync.slot:
            await drop_capture_slot(self.endpoints.source, sync.slot, self.spec.timeout)
            await self._log("INFO", f"Change capture: replication slot {sync.slot} dropped on the source")
            sync.slot = None
        sync.cut_over, sync.every = True, None
        await self._save_sync()
        await self._log("INFO", f"Cut over after sync pass {sync.pass_no}: verification "
                                + ("OK" if report["ok"] else "found differences (see the report)"))
        self._emit(SyncPassed(self.id, sync.public()))
        return {**answer, "ok": bool(report["ok"]), "slotDropped": dropped}

    async def _verify(self, *, deep: bool) -> None:
        """The verification at the end of a run (spec `verify`): its report is saved, sent as a
        `report` event and summed up in the log. Its own failure is a warning, not the run's."""
        await self._log("INFO", "Verifying: " + ("counts and row checksums" if deep else "counts"))
        try:
            report = await verify_migration(self.store, self.id, self.spec, self.endpoints.source,
                                            self.endpoints.target, deep=deep)
        except MigratorError as exc:
            await self._log("WARNING", f"Verification could not run: {exc.message}", error=exc.message)
            return
        self._emit(ReportMade(self.id, report, in_run=True))
        tables = report["tables"]
        assert isinstance(tables, list)
        if report["ok"]:
            await self._log("INFO", f"Verification: OK — {len(tables)} table(s) match the source minus the rejects "
                                    "(GET /api/migrations/report)")
            return
        for t in tables:
            for problem in t.get("problems", []):
                await self._log("WARNING", f"Verification: {t['name']}: {problem}", table=t["name"])

    async def _restore_progress(self, table: str) -> None:
        """The counts of a table a previous process completed."""
        progress = self.tables[table]
        stored = await self.store.load_checkpoint(self.id, table)
        if stored:
            progress.written, progress.failed = stored.rows_written, stored.rows_failed
            progress.skipped = (await self.store.count_rejects(self.id, "skip_batch")).get(table, 0)

    async def _run_level(self, source: Source, sink: Sink, schemas: list[TableSchema]) -> None:
        """The tables of one level of the load order: `parallelTables` of them at a time."""
        if self.spec.parallel_tables <= 1 or len(schemas) <= 1:
            for schema in schemas:
                await self._run_table_retrying(source, sink, schema)
            return
        slots = asyncio.Semaphore(self.spec.parallel_tables)

        async def one(schema: TableSchema) -> None:
            async with slots:
                await self._run_table_retrying(source, sink, schema)

        async with asyncio.TaskGroup() as group:
            for schema in schemas:
                group.create_task(one(schema))

    async def _run_table_retrying(self, source: Source, sink: Sink, schema: TableSchema) -> None:
        """Run a table; after a transient failure (a connection reset, a timeout, a failover …)
        run it again from its last checkpoint — exactly as a resume would — up to
        `retryFailed.attempts` times, waiting `backoff` × 2^(n-1) seconds (at most `maxBackoff`,
        with jitter) before the n-th. A terminal failure, or the last one, fails the run."""
        spec = self.spec
        attempt = 0
        while True:
            try:
                await self._run_table(source, sink, schema)
                return
            except Exception as exc:
                cause = first_cause(exc)
                if not spec.retry_failed or not is_transient(cause):
                    raise
                attempt += 1
                reason = self._reason(cause)
                if attempt > spec.retry_attempts:
                    raise RetriesExhausted(f"{schema.name}: {reason} (still failing after {spec.retry_attempts} "
                                           "retries; the checkpoint is kept, resume when the database is back)"
                                           ) from cause
                delay = min(spec.retry_max_backoff, spec.retry_backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1)
                await self._log("WARNING", f"Table {schema.name}: {reason}; retrying from the last checkpoint in "
                                           f"{delay:.1f} s (retry {attempt} of {spec.retry_attempts})",
                                table=schema.name, error=reason)
                await asyncio.sleep(delay)

    def _reason(self, cause: BaseException) -> str:
        """A failure's message for people, without passwords."""
        if isinstance(cause, TimeoutError) and not str(cause):
            return f"TimeoutError: no answer from the database within {self.spec.timeout:g} s (spec timeout)"
        message = cause.message if isinstance(cause, MigratorError) else f"{type(cause).__name__}: {cause}"
        return self.endpoints.target.redact(self.endpoints.source.redact(message))

    async def _add_foreign_keys(self, sink: Sink, schemas: list[TableSchema]) -> None:
        """The source's foreign keys between the tables, named as in the target, once all are
        loaded (the target adds them only to tables this migration created)."""
        spec = self.spec
        by_name = {s.name: s for s in schemas}
        for schema in schemas:
            keys = []
            for key in schema.foreign_keys:
                parent = by_name.get(key.table)
                refs = key.references or (parent.key if parent else ())
                if not refs:
                    continue
                keys.append(replace(key, table=spec.target_name(key.table) if parent else key.table, references=refs))
            if keys:
                for level, note in await sink.add_foreign_keys(spec.target_name(schema.name), keys, self.id):
                    await self._log(level, note, table=schema.name)

    async def _finish_status(self, status: str, error: str | None) -> None:
        await self._set_status(status, error=error, ended=True)

    @staticmethod
    async def _close(source: Source, sink: Sink) -> None:
        for closer in (source.close, sink.close):
            try:
                await closer()
            except Exception:  # closing must not hide the run's own outcome
                log.warning("closing a connection failed", exc_info=True)

    def _check_reject_limit(self) -> None:
        """Stop a run gone wrong: more rejects than `maxErrors` (rows, or percent of rows read) — in
        a sync, of this pass's rows."""
        counted = [p for p in self.tables.values()  # a later sync pass: the tables it runs, from where they were
                   if self.sync is None or self.sync.pass_no == 0 or p.table in self._pass_base]
        failed = sum(p.failed - self._pass_base.get(p.table, (0, 0))[0] for p in counted)
        done = sum(p.done - self._pass_base.get(p.table, (0, 0))[1] for p in counted)
        spec = self.spec
        if spec.max_errors is not None and failed > spec.max_errors:
            limit = f"maxErrors {spec.max_errors}"
        elif spec.max_errors_percent is not None and done and 100 * failed / done > spec.max_errors_percent:
            limit = f"maxErrors {spec.max_errors_percent:g}% ({100 * failed / done:.1f}% of {done} rows)"
        else:
            return
        raise RejectLimit(f"{failed} rows rejected, more than {limit}; the run stops. Its checkpoint is kept: "
                          "fix the data or the rules and resume (GET /api/migrations/rejects lists them)")

    async def _seed_dedupe(self, dedupe: Dedupe, target: str) -> None:
        started = time.monotonic()
        rows = await _read_target_keys(self.endpoints.target, self.spec, dedupe, target)
        await self._log("INFO", f"Dedupe: {dedupe.distinct_keys} distinct keys ({dedupe.columns}) of {rows} rows "
                                f"already in {target}, read in {time.monotonic() - started:.1f} s", table=dedupe.table)

    def _quality(self, schema: TableSchema) -> TableQuality:
        spec = self.spec
        progress = self.tables.get(schema.name)
        return TableQuality.of(schema, transforms=spec.transforms, rules=spec.rules, dedupe=spec.dedupe,
                               validation=spec.validation, expected_rows=(progress.total or 0) if progress else 0)

    async def _run_table(self, source: Source, sink: Sink, schema: TableSchema) -> None:
        spec = self.spec
        progress = self.tables[schema.name]
        target = spec.target_name(schema.name)
        quality = self._quality(schema)
        writer = await sink.open_table(quality.schema, target, self.id)
        writer.on_refusal = "fail" if spec.on_error == "stop" else spec.on_error
        if schema.native_kind == "csv" and not writer.created and not spec.transforms.get(schema.name):
            # Text has no types of its own: parse it straight into the existing table's types
            # (except columns whose type the spec sets explicitly).
            pinned = spec.csv.types.get(schema.name, {})
            schema = schema.with_types({c: writer.schema.column(c).type for c in schema.column_names
                                        if c not in pinned})
            quality = self._quality(schema)
        try:
            sync = await self._sync_writer(writer, schema)
            stored = await self.store.load_checkpoint(self.id, schema.name)
            start = await writer.reconcile(stored)
            after, since, marker = start.position if start else None, None, None
            if sync is not None:
                after, since, marker = await self._sync_read(source, schema, start)
            # Duplicate detection remembers the keys already in the target: always with
            # againstTarget, and on a resume or retry (the rows committed before are in the target,
            # and must count as seen) — but for CSV targets, whose rows wait in a hidden partial file.
            dedupe = quality.dedupe
            if dedupe is not None and ((dedupe.against_target and not writer.created) or (
                    start is not None and self.endpoints.target.kind is not Kind.CSV)):
                await self._seed_dedupe(dedupe, target)
            if stored is not None and start is None:
                await self._log("WARNING", f"Table {schema.name}: the target no longer holds the rows of the last "
                                           "checkpoint; starting the table over", table=schema.name)
            progress.written = start.rows_written if start else 0
            progress.failed = start.rows_failed if start else 0
            if marker:
                self.note_pass_start(schema.name)
            if since is not None:  # this pass's rows, for the progress bar
                progress.total = progress.written + progress.failed + await source.count_since(  # type: ignore[attr-defined]
                    schema.name, since[0], since[1])
            progress.skipped = (await self.store.count_rejects(self.id, "skip_batch")).get(schema.name, 0) if start else 0
            progress.batches = start.batches if start else 0
            progress.status = TableStatus.RUNNING
            await self.store.save_table(self.id, schema.name, target, "running", progress.total)
            native = _native_format(source, writer, schema, spec)
            resumed = start.rows_written + start.rows_failed if start else 0
            self._emit(TableStarted(self.id, progress, resumed))
            await self._log("INFO", f"Table {schema.name} -> {target}: "
                                    + (f"sync pass {self.sync.pass_no}" + (f" from {since[0]} ≥ {since[1]}" if since else "")
                                       + (", resumed" if after else "") if marker and self.sync
                                       else f"resuming after {resumed} records" if start else "started")
                                    + (f" ({native} pass-through)" if native else ""), table=schema.name)
            for note in schema.notes:  # e.g. "users.mood: enum mood -> text"
                await self._log("INFO", f"Type mapping: {note}", table=schema.name)
            stage = _with_policy(QualityStage(quality, ConformStage(quality.schema, writer.schema)), spec)

            async def on_commit(batch: Batch, checkpoint: Checkpoint) -> None:
                # One state-store transaction per batch: we hold the commit turn meanwhile.
                n, at = checkpoint.batches, now()
                batch.rejects = with_records(batch)
                entries = [LogEntry(at, "INFO", f"Batch {n}: {batch.rows} records migrated", table=schema.name,
                                    batch=n)]
                entries += [_reject_entry(at, "WARNING", r, n) for r in quality.take_warnings()[:MAX_REJECT_LOGS_PER_BATCH]]
                entries += [_reject_entry(at, "ERROR", r, n) for r in batch.rejects[:MAX_REJECT_LOGS_PER_BATCH]]
                await self.store.save_checkpoint(self.id, schema.name, checkpoint, batch.rejects, entries)
                for e in entries:
                    log.log(logging.getLevelName(e.level), "%s: %s", self.id, e.message)
                    self._emit(LogWritten(self.id, e))
                progress.skipped += sum(1 for r in batch.rejects if r.rule == "skip_batch")
                self._pass_rows += batch.rows
                self._check_reject_limit()
                self._emit(BatchCommitted(self.id, progress, checkpoint.batches, batch.rows, tuple(batch.rejects),
                                          time.monotonic() - batch.read_at))

            pass_range = {"since": since} if since is not None else {}  # (an incremental source's own option)
            batches = source.read(schema, after=after, start_row=resumed + 1, batch_size=spec.batch_size,
                                  native=native, **pass_range)
            await run_table(
                batches=_marked(batches, marker) if marker else batches,
                stage=stage, writer=writer, progress=progress, start=start, gate=self.gate,
                in_flight=self.in_flight, on_commit=on_commit,
                config=PipelineConfig(parallel=spec.parallel_batches),
            )
            for warning in await writer.finish():
                await self._log("WARNING", warning, table=schema.name)
        except BaseException as exc:
            if progress.status is TableStatus.RUNNING:
                stopped = isinstance(exc, asyncio.CancelledError)
                progress.status = TableStatus.CANCELLED if stopped else TableStatus.FAILED
            await asyncio.shield(self.store.save_table(self.id, schema.name, target, progress.status.value,
                                                       progress.total))
            raise
        finally:
            await asyncio.shield(writer.close())
        progress.status = TableStatus.COMPLETED
        progress.total = progress.done  # an estimated total becomes the exact one
        await self.store.save_table(self.id, schema.name, target, "completed", progress.total)
        await self._log("INFO", f"Table {schema.name}: {progress.written} records migrated, {progress.failed} failed",
                        table=schema.name)
        if progress.failed:
            await self._log("WARNING", f"Validation: {progress.failed} of {progress.done} records rejected "
                                       "(see GET /api/migrations/rejects)", table=schema.name)
        else:
            await self._log("INFO", f"Validation: all {progress.done} records passed", table=schema.name)
        self._emit(TableFinished(self.id, progress))


async def _read_target_keys(endpoint: EndpointUrl, spec: MigrationSpec, dedupe: Dedupe, target: str) -> int:
    """Seed `dedupe` with the keys of the rows already in table `target` of the target, read
    through the target kind's own source connector; returns how many rows were read."""
    reader = open_source(endpoint, timeout=spec.timeout, csv=spec.csv, mongo=spec.mongo)
    rows = 0
    try:
        schema = await reader.describe(target)
        async for batch in reader.read(schema, after=None, start_row=1, batch_size=spec.batch_size, native=None):
            if isinstance(batch.data, pa.RecordBatch) and batch.data.num_rows:
                await asyncio.to_thread(dedupe.seed, batch.data, f"target table {target}")
                rows += batch.data.num_rows
    finally:
        await reader.close()
    return rows


async def _marked(batches: AsyncIterator[Batch], marker: str) -> AsyncGenerator[Batch, None]:
    """The batches with `marker` before their positions (a sync pass's checkpoints)."""
    async with contextlib.aclosing(batches):  # type: ignore[type-var]
        async for batch in batches:
            batch.upto = [marker, *batch.upto] if isinstance(batch.upto, list) else [marker, batch.upto]
            yield batch


def _with_embedded_last(levels: list[list[str]], spec: MigrationSpec) -> list[list[str]]:
    """Rows embedded into their parents' documents (spec `mongo.embed`) are written after every
    other table, in a level of their own."""
    embedded = [n for level in levels for n in level if n in spec.mongo.embed]
    if not embedded:
        return levels
    rest = [[n for n in level if n not in spec.mongo.embed] for level in levels]
    return [level for level in rest if level] + [embedded]


def _reject_entry(at: str, level: str, r: Reject, batch: int) -> LogEntry:
    """The log entry of a rejected (ERROR) or kept-but-flagged (WARNING) row: the seed's
    `{message, recordId, value, error}`, the message naming table.column."""
    message = r.message if not r.column or f"{r.table}." in r.message else f"{r.table}.{r.column}: {r.message}"
    return LogEntry(at, level, message, table=r.table, batch=batch,
                    record_id=r.key or (str(r.row) if r.row is not None else None), value=r.value,
                    error=f"{r.rule}: {r.message}")


def _native_format(source: Source, writer: TableWriter, schema: TableSchema, spec: MigrationSpec) -> NativeFormat | None:
    """The pass-through format, when source and target share one and no row rule applies."""
    if spec.rules.get(schema.name) or spec.transforms.get(schema.name) or spec.dedupe.get(schema.name):
        return None
    shared = source.native_formats(schema) & writer.native_formats(schema)
    for fmt in (NativeFormat.PG_BINARY, NativeFormat.BSON, NativeFormat.CSV, NativeFormat.CSV_SAFE):
        if fmt in shared:
            return fmt
    return None


def _with_policy(stage: Stage, spec: MigrationSpec) -> Stage:
    """Apply `onError` to the rows the stage rejects: reject (to the rejects, go on), skip_batch
    (the rest of the batch is rejected too), stop (the first reject fails the run)."""
    if spec.on_error == "reject":
        return stage

    async def apply(batch: Batch) -> Batch:
        out = await stage(batch)
        if not out.rejects:
            return out
        first = out.rejects[0]
        if spec.on_error == "stop":
            raise InvalidInput(f"row {first.row} of {first.table} was rejected ({first.message}) and onError is stop")
        skipped = [Reject(batch.table, out.number(i), None, None, None, "skip_batch", f"batch skipped: {first.message}")
                   for i in range(out.rows)]
        data = out.data.slice(0, 0) if isinstance(out.data, pa.RecordBatch) else out.data
        return replace(out, data=data, rejects=[*out.rejects, *skipped])

    return apply
