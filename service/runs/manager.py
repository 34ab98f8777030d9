"""The RunManager: every migration of the service, their lifecycle, and the tasks that run them.

    initialize ─▶ initialized ─plan─▶ planned ─execute─▶ executing ⇄ (pausing ─▶) paused
                                                           └─▶ completed | failed | cancelled
    (service stopped or killed while running) ─▶ interrupted ─resume─▶ executing

HTTP handlers and WebSocket actions call these methods and return at once: runs live in the
manager's own TaskGroup, owned by one supervisor task that the app starts and stops. Stopping
is two-phased: close every gate and let the batches already read commit (checkpointed), then
cancel what is left; those runs end `interrupted` and resume after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.connectors.csv.dialect import CsvOptions
from service.connectors.registry import open_sink, open_source
from service.core.errors import EndpointError, InvalidInput, MigratorError, NotFound, WrongState
from service.core.hosts import HostPolicy
from service.core.urls import EndpointUrl, lost_password, parse_url, storable
from service.pipeline.progress import TableProgress
from service.plan.planner import make_plan
from service.runs.dryrun import dry_run
from service.runs.events import Event, Listener, LogWritten, PlanMade, ReportMade, StatusChanged, notify
from service.runs.migration import Endpoints, Migration, new_id
from service.runs.rollback import roll_back
from service.runs.spec import MigrationSpec
from service.runs.summary import TableCounts, summarize
from service.runs.verification import verify_migration
from service.store.base import MigrationRecord, StateStore
from service.store.rows import now
from service.sync.state import SyncState

log = logging.getLogger(__name__)

RUNNING = ("executing", "pausing", "paused")
RESUMABLE = ("interrupted", "failed", "cancelled")
_KEPT = 50  # finished runs whose live counters stay in memory


@dataclass
class _Entry:
    """What the manager knows of a migration beyond the store: the URLs as given (they may
    hold a literal password, which the store never sees) and its plan and run."""

    source: str
    target: str
    spec: MigrationSpec | None = None
    plan: dict[str, object] | None = None
    run: Migration | None = None
    task: asyncio.Task[None] | None = None
    stopping: asyncio.Event | None = None  # a continuous sync's cutover request
    every: float | None = None  # a continuous sync's seconds between passes
    cutting_over: bool = False  # a cutover is under way: no other verb starts a run


class RunManager:
    def __init__(self, *, data_dir: Path, timeout: float, max_running: int,
                 listeners: list[Listener] | None = None, allowed_hosts: Sequence[str] = ()) -> None:
        self._store: StateStore | None = None
        self.data_dir = data_dir
        self.hosts = HostPolicy(allowed_hosts)
        self.timeout = timeout
        self.max_running = max_running
        self._listeners = list(listeners or [])
        self._entries: dict[str, _Entry] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._accepting = False
        # One control call at a time: a state check and the action it allows (start a run, pause,
        # cancel) must not interleave with another call's, or two runs could start.
        self._control = asyncio.Lock()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def store(self) -> StateStore:
        if self._store is None:
            raise WrongState("the service is starting; try again in a moment")
        return self._store

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, store: StateStore) -> None:
        """Mark runs the previous process left behind as interrupted, then accept work."""
        self._store = store
        n = await store.mark_interrupted()
        if n:
            log.warning("%d migration(s) were running when the service stopped; they are interrupted "
                        "and can be resumed", n)
        self._supervisor = asyncio.create_task(self._supervise(), name="run-manager")
        await self._ready.wait()
        self._accepting = True

    async def _supervise(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            self._ready.set()
            await self._stopping.wait()
        self._tg = None

    async def stop(self, grace: float = 10.0) -> None:
        """Phase 1: stop reading and let in-flight batches commit (up to `grace` seconds).
        Phase 2: cancel the runs (they end `interrupted`) and wait for every task."""
        self._accepting = False
        running = [e for e in self._entries.values() if e.task is not None and not e.task.done()]
        for e in running:
            assert e.run is not None
            e.run.gate.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                for e in running:
                    assert e.run is not None
                    await e.run.in_flight.wait_zero()
        for e in running:
            assert e.run is not None and e.task is not None
            e.run.interrupt()
            e.task.cancel()
        self._stopping.set()
        if self._supervisor is not None:
            await self._supervisor

    def _spawn(self, coro: object, name: str) -> asyncio.Task[None]:
        if self._tg is None or not self._accepting:
            raise WrongState("the service is shutting down; try again after it restarts")
        return self._tg.create_task(coro, name=name)  # type: ignore[arg-type]

    # -- the seed's verbs -----------------------------------------------------------------------
    async def initialize(self, source: str, target: str) -> MigrationRecord:
        """A new migration between `source` and `target`, after both connections are tested."""
        src, dst = self._endpoint("sourceDB", source), self._endpoint("targetDB", target)
        await self._test(src, dst)
        record = MigrationRecord(
            id=new_id(), fingerprint="", spec={"source": storable(source), "target": storable(target)},
            source=src.masked, target=dst.masked, status="initialized", created_at=now())
        await self.store.create_migration(record)
        self._entries[record.id] = _Entry(source, target)
        self._emit_status(record.id, "initialized")
        return record

    async def plan(self, migration_id: str, options: Mapping[str, object]) -> dict[str, object]:
        """Plan the migration with these spec options (§5); it becomes `planned`."""
        async with self._control:
            return await self._plan(migration_id, options)

    async def _plan(self, migration_id: str, options: Mapping[str, object]) -> dict[str, object]:
        record = await self.record(migration_id)
        if record.status not in ("initialized", "planned"):
            raise WrongState(f"migration {record.id} is {record.status}; only an initialized or planned migration "
                             "can be planned (POST /api/migrations/initialize starts a new one)")
        entry = self._entry(record)
        if "source" in options or "target" in options:
            raise InvalidInput("source and target were set by initialize (sourceDB, targetDB); initialize a new "
                               "migration to use other databases", details={"field": "source/target"})
        spec = MigrationSpec.from_dict({"source": entry.source, "target": entry.target, **options})
        endpoints = self._endpoints(spec)
        try:
            plan = await make_plan(spec, endpoints.source, endpoints.target)
        except EndpointError as exc:
            raise type(exc)(f"source database unreachable ({endpoints.source.masked}): {exc.message}") from None
        if spec.sample:
            order = [str(t) for t in plan["order"]]  # type: ignore[attr-defined]
            plan["dryRun"] = await dry_run(spec, endpoints.source, order, spec.sample)
        await self.store.save_spec(record.id, spec.storable(), spec.fingerprint())
        await self.store.set_status(record.id, "planned")
        entry.spec, entry.plan = spec, plan
        self._emit(PlanMade(record.id, plan))
        self._emit_status(record.id, "planned")
        return plan

    async def execute(self, migration_id: str) -> Migration:
        async with self._control:
            return await self._execute(migration_id)

    async def _execute(self, migration_id: str) -> Migration:
        record = await self.record(migration_id)
        if record.status == "initialized":
            raise WrongState(f"migration {record.id} has no plan yet: POST /api/migrations/plan first")
        if record.status in RUNNING:
            raise WrongState(f"migration {record.id} is already {record.status}")
        if record.status in RESUMABLE:
            raise WrongState(f"migration {record.id} is {record.status}: POST /api/migrations/resume continues it "
                             "from its checkpoint")
        if record.status != "planned":
            raise WrongState(f"migration {record.id} is {record.status}; initialize a new migration to run again")
        entry = self._entry(record)
        if entry.spec is None:  # planned by an earlier process: the stored spec is the plan
            entry.spec = self._stored_spec(record, entry)
        return await self._launch(record, entry)

    async def sync(self, migration_id: str, every: float | None, urls: Mapping[str, str] | None = None, *,
                   cutting_over: bool = False) -> Migration:
        """Start the next pass of an incremental migration — the first one (pass 0) when it is
        planned — and with `every`, keep syncing every that many seconds until cancel or cutover."""
        async with self._control:
            record = await self.record(migration_id)
            if record.status in RUNNING:
                raise WrongState(f"migration {record.id} is already {record.status}")
            if record.status in ("initialized", "rolled_back", "rolling_back"):
                raise WrongState(f"migration {record.id} is {record.status}: plan an incremental migration first "
                                 "(POST /api/migrations/plan with incremental: {table: {cursor: column}})")
            entry = self._entry(record, urls)
            entry.spec = entry.spec or self._stored_spec(record, entry)
            if not entry.spec.sync.enabled:
                raise InvalidInput(f"migration {record.id} is not incremental: its plan has no incremental tables "
                                   "(incremental: {table: {cursor: column} | {capture: true}})",
                                   details={"field": "incremental"})
            state = SyncState.from_dict(await self.store.sync_state(record.id))
            if state is not None and state.cut_over:
                raise WrongState(f"migration {record.id} was cut over at {state.ended_at}: the target has taken over; "
                                 "initialize a new migration to sync again")
            if entry.cutting_over and not cutting_over:
                raise WrongState(f"migration {record.id} is being cut over")
            entry.stopping, entry.every = asyncio.Event(), every
            run = await self._launch(record, entry, every=every, syncing=True)
            run.cutting_over = cutting_over  # (before its task first runs)
            return run

    async def cutover(self, migration_id: str | None, urls: Mapping[str, str] | None = None) -> dict[str, object]:
        """The switch to the target: a last sync pass (a continuous sync is told to stop after one
        more; else one runs now), which adds the foreign keys, then a deep verification and the
        change-capture slot dropped (Migration.cut_over). No other verb runs on the migration
        meanwhile."""
        async with self._control:
            record = await self.record(migration_id)
            known = self._entries.get(record.id)
            running = known is not None and known.task is not None and not known.task.done()
            entry = known if running and known is not None else self._entry(record, urls)  # (the guard holds)
            if entry.cutting_over:
                raise WrongState(f"migration {record.id} is being cut over already")
            if running:
                assert entry.run is not None
                if entry.stopping is None:
                    raise WrongState(f"migration {record.id} is {record.status}: wait for it to end, then cut over")
                if entry.run.status in ("pausing", "paused"):
                    await entry.run.resume()  # a paused sync would never reach its last pass
            entry.cutting_over = True
        try:
            if running and entry.every is not None:
                assert entry.task is not None and entry.stopping is not None
                entry.stopping.set()  # its last pass starts after this request, and cuts over
                await asyncio.wait({entry.task})
            else:
                if running and entry.task is not None:
                    await asyncio.wait({entry.task})  # a one-shot pass may have begun before the writes stopped
                await self.sync(record.id, None, urls, cutting_over=True)  # (the same entry)
                assert entry.task is not None
                await asyncio.wait({entry.task})
            assert entry.run is not None
            return await entry.run.cut_over(lambda: self.verify(record.id, deep=True, urls=urls))
        finally:
            entry.cutting_over = False

    async def pause(self, migration_id: str) -> str:
        async with self._control:
            return await self._pause(migration_id)

    async def _pause(self, migration_id: str) -> str:
        record = await self.record(migration_id)
        entry = self._entries.get(record.id)
        if entry is not None and entry.cutting_over:
            raise WrongState(f"migration {record.id} is being cut over: its last pass is not paused")
        run = entry.run if entry and entry.task and not entry.task.done() else None
        if run is None or run.status not in RUNNING:
            raise WrongState(f"migration {record.id} is {record.status}; only an executing migration can be paused")
        if run.status == "executing":
            await run.begin_pause()
            self._spawn(run.settle_pause(), f"settle-pause:{record.id}")
        return run.status

    async def resume(self, migration_id: str, urls: Mapping[str, str] | None = None) -> str:
        """Open a paused run's gate, or restart a stopped one from its checkpoints."""
        async with self._control:
            return await self._resume(migration_id, urls)

    async def _resume(self, migration_id: str, urls: Mapping[str, str] | None = None) -> str:
        record = await self.record(migration_id)
        entry = self._entries.get(record.id)
        if entry is not None and entry.cutting_over:
            raise WrongState(f"migration {record.id} is being cut over")
        if entry and entry.run and entry.task and not entry.task.done():
            if entry.run.status in ("pausing", "paused"):
                await entry.run.resume()
                return entry.run.status
            if entry.run.status == "executing":
                return "executing"
        if record.status not in RESUMABLE and record.status not in ("paused", "pausing"):
            raise WrongState(f"migration {record.id} is {record.status}; only a paused, interrupted, failed or "
                             "cancelled migration can be resumed")
        entry = self._entry(record, urls)
        entry.spec = self._stored_spec(record, entry)
        run = await self._launch(record, entry)
        return run.status

    async def cancel(self, migration_id: str) -> str:
        async with self._control:
            return await self._cancel(migration_id)

    async def _cancel(self, migration_id: str) -> str:
        record = await self.record(migration_id)
        entry = self._entries.get(record.id)
        if entry and entry.task and not entry.task.done():
            entry.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(asyncio.wait({entry.task}))
            return "cancelled"
        if record.status in ("completed", "failed", "cancelled", "rolled_back"):
            raise WrongState(f"migration {record.id} is already {record.status}")
        await self.store.set_status(record.id, "cancelled", ended=True)
        self._emit_status(record.id, "cancelled")
        return "cancelled"

    # -- reading --------------------------------------------------------------------------------
    async def record(self, migration_id: str | None) -> MigrationRecord:
        """The migration with this id, or (None) the most recent one."""
        if migration_id is None:
            latest = await self.store.list_migrations(1)
            if not latest:
                raise NotFound("no migration yet: POST /api/migrations/initialize creates one")
            return latest[0]
        record = await self.store.get_migration(migration_id)
        if record is None:
            raise NotFound(f"no migration with id {migration_id!r}")
        return record

    async def verify(self, migration_id: str | None, *, deep: bool, urls: Mapping[str, str] | None = None
                     ) -> dict[str, object]:
        """Verify a migration that is not running (DESIGN.md §3 `verify`); the report is saved and
        sent as a `report` event."""
        record = await self.record(migration_id)
        if record.status in RUNNING:
            raise WrongState(f"migration {record.id} is {record.status}: verify it once it has stopped "
                             "(pause is not enough: rows are still on their way)")
        if record.status in ("initialized", "planned"):
            raise WrongState(f"migration {record.id} is {record.status}: there is nothing to verify before it runs")
        entry = self._entry(record, urls)
        spec = entry.spec or self._stored_spec(record, entry)
        endpoints = self._endpoints(spec)
        report = await verify_migration(self.store, record.id, spec, endpoints.source, endpoints.target, deep=deep)
        self._emit(ReportMade(record.id, report))
        return report

    async def rollback(self, migration_id: str | None, urls: Mapping[str, str] | None = None) -> str:
        """Return the target to its state before the run (service.runs.rollback); the status
        becomes `rolled_back`. 409 while the run is going: cancel it first."""
        async with self._control:  # no execute or resume of this migration meanwhile
            record = await self.record(migration_id)
            entry = self._entries.get(record.id)
            if entry and entry.task and not entry.task.done():
                raise WrongState(f"migration {record.id} is {record.status}: cancel it first, then roll it back")
            if entry and entry.cutting_over:
                raise WrongState(f"migration {record.id} is being cut over")
            entry = self._entry(record, urls, need=("targetDB",))  # a rollback never reads the source
            spec = entry.spec or self._stored_spec(record, entry)
            target = self._endpoint("targetDB", spec.target)

            async def status(value: str, error: str | None) -> None:
                self._emit(StatusChanged(record.id, value, error))

            entry.run = None  # its counters describe rows that are gone: summaries come from the store now
            try:  # to drop a change-capture slot; a rollback itself never needs the source
                source: EndpointUrl | None = self._endpoint("sourceDB", spec.source)
            except MigratorError:
                source = None
            await roll_back(self.store, record, spec, target, on_status=status, source=source,
                            on_log=lambda e: self._emit(LogWritten(record.id, e)))
            return "rolled_back"

    async def report(self, migration_id: str | None) -> tuple[MigrationRecord, dict[str, object]]:
        """The migration's latest verification report (404 when it has none)."""
        record = await self.record(migration_id)
        report = await self.store.report(record.id)
        if report is None:
            raise NotFound(f"migration {record.id} has no verification report yet: POST /api/migrations/verify")
        return record, report

    def live(self, migration_id: str) -> Migration | None:
        entry = self._entries.get(migration_id)
        return entry.run if entry else None

    def live_summary(self, migration_id: str) -> dict[str, object] | None:
        run = self.live(migration_id)
        return run.summary() if run is not None and run.tables else None

    def running(self) -> list[Migration]:
        return [e.run for e in self._entries.values() if e.run and e.task and not e.task.done()]

    async def summary(self, migration_id: str | None) -> dict[str, object]:
        record = await self.record(migration_id)
        run = self.live(record.id)
        if run is not None and run.tables:
            return run.summary()
        stored = await self.store.tables(record.id)
        entry = self._entries.get(record.id)
        skipped = await self.store.count_rejects(record.id, "skip_batch") if stored else {}
        tables = ([TableCounts.stored(t, skipped.get(t.table, 0)) for t in stored]
                  or _planned(entry.plan if entry else None))
        sync = SyncState.from_dict(await self.store.sync_state(record.id))
        return summarize(record, record.status, tables, started_at=record.started_at, ended_at=record.ended_at,
                         error=record.error, sync=sync.public() if sync is not None else None)

    def plan_of(self, migration_id: str) -> dict[str, object] | None:
        entry = self._entries.get(migration_id)
        return entry.plan if entry else None

    # -- inside ---------------------------------------------------------------------------------
    async def _launch(self, record: MigrationRecord, entry: _Entry, *, every: float | None = None,
                      syncing: bool = False) -> Migration:
        if len(self.running()) >= self.max_running:
            raise WrongState(f"{self.max_running} migrations are already running (max_running_migrations); "
                             "wait for one to finish")
        assert entry.spec is not None
        spec = entry.spec
        endpoints = self._endpoints(spec)
        run = Migration(record, spec, endpoints, self.store, listeners=self._listeners)
        if entry.plan:  # the plan's counts until the run has its own, and its estimate
            for t in entry.plan.get("tables", []):  # type: ignore[attr-defined]
                run.tables[t["name"]] = TableProgress(t["name"], t["target"], t["totalRecords"])
            estimate = entry.plan.get("estimatedSeconds")
            run.estimated_seconds = float(estimate) if isinstance(estimate, int | float) else None
        await run.set_executing()
        entry.run = run
        if not syncing:
            entry.stopping = None
        entry.task = self._spawn(self._drive(run, syncing=syncing, every=every, stopping=entry.stopping),
                                 f"migration:{record.id}")
        self._forget_old()
        return run

    async def _drive(self, run: Migration, *, syncing: bool = False, every: float | None = None,
                     stopping: asyncio.Event | None = None) -> None:
        try:
            if syncing:
                await run.keep_in_sync(every, stopping)
            else:
                await run.run()
        except MigratorError:
            pass  # recorded in the store and the log by the run itself
        except Exception:
            log.exception("migration %s ended with an unexpected error", run.id)

    def _forget_old(self) -> None:
        done = [k for k, e in self._entries.items() if e.task is not None and e.task.done()]
        for k in done[:-_KEPT] if len(done) > _KEPT else []:
            del self._entries[k]

    def _entry(self, record: MigrationRecord, urls: Mapping[str, str] | None = None,
               need: tuple[str, ...] = ("sourceDB", "targetDB")) -> _Entry:
        """The migration's entry; `urls` sent again replace the known ones (and the spec made from
        them). Raises WrongState when a side in `need` has a password that was not stored."""
        entry = self._entries.get(record.id)
        if entry is None:  # known only to the store (an earlier process)
            entry = self._entries[record.id] = _Entry(str(record.spec.get("source", "")),
                                                       str(record.spec.get("target", "")))
        if urls:
            source = urls.get("sourceDB") or entry.source
            target = urls.get("targetDB") or entry.target
            self._endpoint("sourceDB", source), self._endpoint("targetDB", target)
            if (source, target) != (entry.source, entry.target):
                entry.source, entry.target = source, target
                entry.spec = None  # made again from the stored options and these URLs
        for side, url in (("sourceDB", entry.source), ("targetDB", entry.target)):
            if side in need and lost_password(url):
                raise WrongState(f"the {side} password of migration {record.id} was not stored (only ${{VAR}} "
                                 f"references are); send it again: {{\"{side}\": \"…\"}} in the body, or use "
                                 "${VAR} in the URL")
        return entry

    def _stored_spec(self, record: MigrationRecord, entry: _Entry) -> MigrationSpec:
        options = {k: v for k, v in record.spec.items() if k not in ("source", "target")}
        return MigrationSpec.from_dict({"source": entry.source, "target": entry.target, **options})

    def _endpoint(self, field: str, url: object) -> EndpointUrl:
        if not isinstance(url, str) or not url.strip():
            raise InvalidInput(f"{field} is required: a URL such as postgresql://user@host/db or csv:///folder",
                               details={"field": field})
        try:
            endpoint = parse_url(url, data_dir=self.data_dir, restrict_to_data_dir=True)
        except InvalidInput as exc:
            raise type(exc)(f"{field}: {exc.message}", details={"field": field}) from None
        self.hosts.check(endpoint, field)  # before any connection
        return endpoint

    def _endpoints(self, spec: MigrationSpec) -> Endpoints:
        return Endpoints(self._endpoint("sourceDB", spec.source), self._endpoint("targetDB", spec.target))

    async def _test(self, source: EndpointUrl, target: EndpointUrl) -> None:
        """Connect to both sides; a failure says which side and why."""
        src = open_source(source, timeout=self.timeout, csv=CsvOptions())
        dst = open_sink(target, timeout=self.timeout, csv=CsvOptions(), parallel=1)
        try:
            for side, endpoint, check in (("source", source, src.check), ("target", target, dst.check)):
                try:
                    async with asyncio.timeout(self.timeout):
                        await check()
                except TimeoutError:
                    raise EndpointError(f"{side} database unreachable ({endpoint.masked}): no answer within "
                                        f"{self.timeout:g} s") from None
                except EndpointError as exc:
                    raise type(exc)(f"{side} database unreachable ({endpoint.masked}): {exc.message}") from None
        finally:
            for closer in (src.close, dst.close):
                with contextlib.suppress(Exception):
                    await closer()

    def _emit_status(self, migration_id: str, status: str) -> None:
        self._emit(StatusChanged(migration_id, status))

    def _emit(self, event: Event) -> None:
        notify(self._listeners, event)


def _planned(plan: dict[str, object] | None) -> list[TableCounts]:
    if not plan:
        return []
    return [TableCounts(t["name"], t["target"], "pending", t["totalRecords"], 0, 0)
            for t in plan.get("tables", [])]  # type: ignore[attr-defined]
