"""Running one migration: every table through its pipeline, in order, with checkpoints.

`Migration.run()` is resumable: it picks up each table from the target's / state store's
checkpoint, skips tables already completed, and ends with exactly the source rows (minus the
reported rejects) in the target. Pause closes the gate; `pause()` returns once in-flight batches
are committed. Cancelling the task that runs `run()` stops it promptly; the last checkpoint stays valid.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from service.connectors.base import Sink, Source, TableWriter
from service.connectors.registry import open_sink, open_source
from service.connectors.transient import is_transient
from service.core.batch import Batch, Checkpoint, NativeFormat, Reject
from service.core.errors import InvalidInput, MigratorError, PipelineError, RejectLimit, RetriesExhausted
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
    TableFinished,
    TableStarted,
    notify,
)
from service.runs.spec import MigrationSpec
from service.runs.summary import TableCounts, summarize
from service.runs.verification import verify_migration
from service.store.base import LogEntry, MigrationRecord, StateStore
from service.store.rows import now

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
                         estimated_seconds=self.estimated_seconds)

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
    async def run(self) -> None:
        """Migrate every table. Raises the failure's cause (a MigratorError) after recording it."""
        spec = self.spec
        self._task = asyncio.current_task()
        source = open_source(self.endpoints.source, timeout=spec.timeout, csv=spec.csv, mongo=spec.mongo)
        sink = open_sink(self.endpoints.target, timeout=spec.timeout, csv=spec.csv,
                         parallel=spec.parallel_batches, mode=spec.mode, mongo=spec.mongo)
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
            done = {t.table for t in await self.store.tables(self.id) if t.status == TableStatus.COMPLETED}
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
                await self._run_level(source, sink, [by_name[n] for n in level if n not in done])
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
        await self._log("INFO", f"Migration completed: {sum(p.written for p in self.tables.values())} records "
                                f"migrated, {failed} failed")
        try:
            if spec.verify != "off":
                await self._verify(deep=spec.verify == "deep")
        finally:  # every row is in: completed, whatever the verification found (it is in the report)
            await asyncio.shield(self._finish_status("completed", None))

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
        """Stop a run gone wrong: more rejects than `maxErrors` (rows, or percent of rows read)."""
        failed = sum(p.failed for p in self.tables.values())
        done = sum(p.done for p in self.tables.values())
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
            stored = await self.store.load_checkpoint(self.id, schema.name)
            start = await writer.reconcile(stored)
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
            progress.skipped = (await self.store.count_rejects(self.id, "skip_batch")).get(schema.name, 0) if start else 0
            progress.batches = start.batches if start else 0
            progress.status = TableStatus.RUNNING
            await self.store.save_table(self.id, schema.name, target, "running", progress.total)
            native = _native_format(source, writer, schema, spec)
            resumed = start.rows_written + start.rows_failed if start else 0
            self._emit(TableStarted(self.id, progress, resumed))
            await self._log("INFO", f"Table {schema.name} -> {target}: "
                                    + (f"resuming after {resumed} records" if start else "started")
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
                self._check_reject_limit()
                self._emit(BatchCommitted(self.id, progress, checkpoint.batches, batch.rows, tuple(batch.rejects),
                                          time.monotonic() - batch.read_at))

            await run_table(
                batches=source.read(schema, after=start.position if start else None, start_row=resumed + 1,
                                    batch_size=spec.batch_size, native=native),
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
