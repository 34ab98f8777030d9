"""Live events over WebSocket (DESIGN.md §4): `GET /api/migrations/events[?migration=ID]`.

The hub turns run events into JSON messages, serialised once, and offers them to every client.
Offering never waits: each client has its own ordered queue, drained by its own sender. A client
that cannot keep up has its `progress` messages coalesced (a newer one replaces the one still
waiting); if even its other messages pile up, or one send stalls, it is dropped. Progress is sent
at most PROGRESS_PER_SECOND times a second per migration, plus once at each status change; so are
the per-batch INFO log entries ("Batch 7: 5000 records migrated" — each carries its `id`, and
GET /api/migrations/log?after=<id> has all of them). Every other log entry is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import WSMsgType, web

from service.core.errors import InvalidInput, MigratorError
from service.runs.events import (
    BatchCommitted,
    Event,
    LogWritten,
    PlanMade,
    ReportMade,
    StatusChanged,
    SyncPassed,
    TableFinished,
    TableStarted,
)
from service.store.base import LogEntry
from service.store.rows import now

log = logging.getLogger(__name__)
PROGRESS_PER_SECOND = 4
MAX_QUEUED = 2000  # messages waiting for one client before it is dropped
SEND_TIMEOUT = 10.0  # seconds one send may take before the client is dropped
FINAL = ("completed", "failed", "cancelled", "interrupted")
Summarizer = Callable[[str], dict[str, object] | None]


@dataclass
class _Slot:
    """One queued message; a pending progress slot is rewritten in place by newer progress."""

    text: str


@dataclass(eq=False)  # hashed by identity: clients live in a set
class Client:
    ws: web.WebSocketResponse
    migration: str | None  # only this migration's events, when set
    queue: deque[_Slot] = field(default_factory=deque)
    pending_progress: dict[str, _Slot] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: str | None = None

    def offer(self, migration_id: str, text: str, *, progress: bool) -> None:
        if self.dropped or (self.migration and migration_id != self.migration):
            return
        if progress and migration_id in self.pending_progress:
            self.pending_progress[migration_id].text = text  # coalesce
            return
        if len(self.queue) >= MAX_QUEUED:
            self.drop(f"too slow: more than {MAX_QUEUED} events waiting")
            return
        slot = _Slot(text)
        self.queue.append(slot)
        if progress:
            self.pending_progress[migration_id] = slot
        self.wake.set()

    def drop(self, why: str) -> None:
        self.dropped = why
        self.wake.set()

    async def pump(self) -> None:
        """Send queued messages in order until the socket closes or the client is dropped."""
        while not self.ws.closed:
            await self.wake.wait()
            self.wake.clear()
            while self.queue and not self.dropped:
                slot = self.queue.popleft()
                for mid, pending in list(self.pending_progress.items()):
                    if pending is slot:
                        del self.pending_progress[mid]
                try:
                    async with asyncio.timeout(SEND_TIMEOUT):
                        await self.ws.send_str(slot.text)
                except TimeoutError:
                    self.dropped = f"too slow: a send took over {SEND_TIMEOUT:g} s"
                except (ConnectionError, RuntimeError):
                    return  # the peer went away
            if self.dropped:
                log.info("dropping WebSocket client: %s", self.dropped)
                await self.ws.close(code=1008, message=self.dropped.encode()[:120])
                return


class Hub:
    def __init__(self, summary_of: Summarizer) -> None:
        self.clients: set[Client] = set()
        self._summary_of = summary_of
        self._last_progress: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._last_batch_log: dict[str, float] = {}
        self._reports: dict[str, dict[str, object]] = {}  # a run's verification, until its final status

    # -- from the runs (synchronous, never waits) -----------------------------------------------
    def on_event(self, event: Event) -> None:
        mid = event.migration_id
        if isinstance(event, BatchCommitted | TableStarted | TableFinished):
            self._progress_soon(mid)
        elif isinstance(event, StatusChanged):
            self._progress_now(mid)
            self.broadcast(mid, "status", {"status": event.status, "error": event.error})
            if event.status in FINAL:
                summary = self._summary_of(mid)
                self.broadcast(mid, "report", {"summary": summary, "report": self._reports.pop(mid, None)})
                self._last_progress.pop(mid, None)
                self._last_batch_log.pop(mid, None)
        elif isinstance(event, LogWritten):
            if event.entry.batch is not None and event.entry.level == "INFO" and not self._batch_log_due(mid):
                return  # "Batch N: … migrated" is progress too: at most PROGRESS_PER_SECOND of them
            self.broadcast(mid, "log", {"entry": log_json(event.entry)})
        elif isinstance(event, PlanMade):
            self.broadcast(mid, "plan", {"plan": event.plan})
        elif isinstance(event, SyncPassed):
            self.broadcast(mid, "sync", {"sync": event.sync})
        elif isinstance(event, ReportMade):
            if event.in_run:
                self._reports[mid] = event.report
            else:
                self.broadcast(mid, "report", {"summary": self._summary_of(mid), "report": event.report})

    def broadcast(self, migration_id: str, kind: str, payload: dict[str, object], *, progress: bool = False) -> None:
        if not self.clients:
            return
        text = orjson.dumps({"type": kind, "migrationId": migration_id, "timestamp": now(), **payload},
                            option=orjson.OPT_NON_STR_KEYS).decode()
        for client in self.clients:
            client.offer(migration_id, text, progress=progress)

    def _batch_log_due(self, mid: str) -> bool:
        now_ = asyncio.get_running_loop().time()
        if now_ - self._last_batch_log.get(mid, -1.0) < 1 / PROGRESS_PER_SECOND:
            return False
        self._last_batch_log[mid] = now_
        return True

    def _progress_soon(self, mid: str) -> None:
        if mid in self._timers:
            return  # a send is already scheduled; it will carry the newest counts
        loop = asyncio.get_running_loop()
        wait = self._last_progress.get(mid, 0.0) + 1 / PROGRESS_PER_SECOND - loop.time()
        if wait <= 0:
            self._progress_now(mid)
        else:
            self._timers[mid] = loop.call_later(wait, self._progress_now, mid)

    def _progress_now(self, mid: str) -> None:
        timer = self._timers.pop(mid, None)
        if timer is not None:
            timer.cancel()
        self._last_progress[mid] = asyncio.get_running_loop().time()
        if not self.clients:
            return
        summary = self._summary_of(mid)
        if summary is not None:
            self.broadcast(mid, "progress", {"summary": summary, **_progress_fields(summary)}, progress=True)

    # -- clients --------------------------------------------------------------------------------
    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for client in list(self.clients):
            with contextlib.suppress(Exception):
                await client.ws.close(code=1001, message=b"service shutting down")


def _progress_fields(summary: dict[str, object]) -> dict[str, object]:
    keys = ("status", "totalRecords", "migratedCount", "failedCount", "skippedCount", "progress", "throughput",
            "etaSeconds", "durationSeconds")
    return {k: summary.get(k) for k in keys}


def log_json(entry: LogEntry) -> dict[str, object]:
    """A log entry as the API shows it: the seed's fields, without empty ones."""
    out: dict[str, object] = {"id": entry.id, "timestamp": entry.timestamp, "level": entry.level,
                              "message": entry.message, "table": entry.table}
    if entry.batch is not None:
        out["batch"] = entry.batch
    if entry.record_id is not None:
        out["recordId"] = int(entry.record_id) if entry.record_id.isdigit() else entry.record_id
    if entry.value is not None:
        out["value"] = entry.value
    if entry.error is not None:
        out["error"] = entry.error
    if entry.id is None:
        del out["id"]
    return out


# (action, migration id or None for the current one) -> (the migration acted on, its new status)
Act = Callable[[str, str | None], Awaitable[tuple[str, str]]]


async def serve_client(hub: Hub, ws: web.WebSocketResponse, migration: str | None,
                       snapshot: dict[str, object] | None,
                       act: Act) -> None:
    """Run one client: the snapshot, then events out and actions in, until either side closes."""
    client = Client(ws, migration)
    hub.clients.add(client)
    try:
        client.offer(migration or "", orjson.dumps(
            {"type": "snapshot", "migrationId": snapshot.get("id") if snapshot else migration,
             "timestamp": now(), "summary": snapshot}).decode(), progress=False)
        async with asyncio.TaskGroup() as tg:
            pump = tg.create_task(client.pump(), name="ws-pump")
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                reply = await _action(msg.data, migration, act)
                client.offer(str(reply.get("migrationId") or migration or ""), orjson.dumps(reply).decode(),
                             progress=False)
            pump.cancel()
    finally:
        hub.clients.discard(client)


async def _action(text: str, migration: str | None, act: Act) -> dict[str, object]:
    try:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise InvalidInput("a client message must be JSON such as {\"action\": \"pause\"}") from None
        if not isinstance(data, dict) or data.get("action") not in ("pause", "resume", "cancel"):
            raise InvalidInput("a client message must be {\"action\": \"pause\"|\"resume\"|\"cancel\"}, "
                               "optionally with \"migrationId\"")
        target = data.get("migrationId", migration)
        if target is not None and not isinstance(target, str):
            raise InvalidInput("migrationId must be a string")
        acted_on, status = await act(str(data["action"]), target)
        return {"type": "ack", "action": data["action"], "migrationId": acted_on, "status": status,
                "timestamp": now()}
    except MigratorError as exc:
        return {"type": "error", "migrationId": migration, "timestamp": now(),
                "error": {"code": exc.code, "message": exc.message}}
