"""REST handlers (DESIGN.md §3). Each one checks its input, asks the RunManager and answers;
none runs a migration itself. Every verb works on the current (most recent) migration at
`/api/migrations/<verb>` and on a given one at `/api/migrations/{id}/<verb>`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from service import __version__
from service.api.json import body, dumps, int_query, ok, string_field
from service.api.keys import HUB, MANAGER, METRICS, ORIGINS, STARTED
from service.api.metrics import CONTENT_TYPE
from service.api.openapi import document
from service.api.websocket import log_json, serve_client
from service.core.errors import InvalidInput, NotFound, WrongState
from service.quality.rejects import reject_json, rejects_csv, rows_csv
from service.runs.manager import RunManager
from service.store.base import MigrationRecord
from service.verify.report import markdown

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ID_PATTERN = r"[0-9]{8}-[0-9]{6}-[0-9a-f]+"  # migration ids (runs.migration.new_id); keeps /initialize a route


def _id(request: web.Request) -> str | None:
    return request.match_info.get("id")


def migration_json(record: MigrationRecord, status: str | None = None) -> dict[str, object]:
    return {"id": record.id, "status": status or record.status, "source": record.source, "target": record.target,
            "createdTime": record.created_at, "startTime": record.started_at, "endTime": record.ended_at,
            "error": record.error}


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__,
                              "uptime": round(time.monotonic() - request.app[STARTED], 3)}, dumps=dumps)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(), dumps=dumps)


async def initialize(request: web.Request) -> web.Response:
    data = await body(request)
    source, target = string_field(data, "sourceDB"), string_field(data, "targetDB")
    assert source is not None and target is not None
    record = await request.app[MANAGER].initialize(source, target)
    return ok({"message": "Migration manager initialized successfully", "migration": migration_json(record)})


async def plan(request: web.Request) -> web.Response:
    data = await body(request)
    manager = request.app[MANAGER]
    record = await manager.record(_id(request))
    return ok({"migrationId": record.id, "plan": await manager.plan(record.id, data)})


async def get_plan(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    record = await manager.record(_id(request))
    made = manager.plan_of(record.id)
    if made is None:
        raise WrongState(f"migration {record.id} has no plan in this service process: POST /api/migrations/plan")
    return ok({"migrationId": record.id, "plan": made})


async def execute(request: web.Request) -> web.Response:
    await body(request)
    manager = request.app[MANAGER]
    record = await manager.record(_id(request))
    run = await manager.execute(record.id)
    started = {**migration_json(run.record, run.status), "startTime": run.started_at}
    return ok({"message": "Migration started", "migration": started}, status=202)


async def _control(request: web.Request,
                   act: Callable[[RunManager, str, dict[str, object]], Awaitable[str]]) -> web.Response:
    data = await body(request)
    manager = request.app[MANAGER]
    record = await manager.record(_id(request))
    return ok({"migrationId": record.id, "status": await act(manager, record.id, data)})


def _only(data: dict[str, object], allowed: set[str], takes: str) -> None:
    """400 naming the first field of `data` outside `allowed`; `takes` says what the verb takes."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidInput(f"{takes}, not {', '.join(unknown)}", details={"field": unknown[0]})


def _urls(data: dict[str, object]) -> dict[str, str]:
    """URLs sent again with resume (when the stored ones had a literal password, masked at rest)."""
    return {k: v for k in ("sourceDB", "targetDB") if (v := string_field(data, k, required=False))}


async def pause(request: web.Request) -> web.Response:
    return await _control(request, lambda m, mid, _: m.pause(mid))


async def resume(request: web.Request) -> web.Response:
    return await _control(request, lambda m, mid, data: m.resume(mid, _urls(data)))


async def cancel(request: web.Request) -> web.Response:
    return await _control(request, lambda m, mid, _: m.cancel(mid))


async def summary(request: web.Request) -> web.Response:
    return ok({"summary": await request.app[MANAGER].summary(_id(request))})


async def history(request: web.Request) -> web.Response:
    limit = int_query(request, "limit", 100, 1, 1000)
    assert limit is not None
    records = await request.app[MANAGER].store.list_migrations(limit)
    return ok({"migrations": [migration_json(r) for r in records]})


async def one(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    record = await manager.record(_id(request))
    return ok({"migration": {**migration_json(record), "spec": record.spec},
               "summary": await manager.summary(record.id)})


async def logs(request: web.Request) -> web.Response:
    level = request.query.get("level")
    if level is not None and level.upper() not in LEVELS:
        raise InvalidInput(f"query parameter 'level' must be one of {', '.join(LEVELS)}, not {level!r}",
                           details={"field": "level"})
    limit = int_query(request, "limit", 1000, 1, 100_000)
    after = int_query(request, "after", None, 0, 2**62)
    manager = request.app[MANAGER]
    record = await manager.record(_id(request))
    entries = await manager.store.logs(record.id, level=level, table=request.query.get("table") or None,
                                       limit=limit or 1000, after=after)
    return web.json_response([log_json(e) for e in entries], dumps=dumps)


async def delete_logs(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    record = await manager.record(_id(request))
    return ok({"migrationId": record.id, "deleted": await manager.store.delete_logs(record.id)})


async def rejects(request: web.Request) -> web.Response:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise InvalidInput(f"query parameter 'format' must be json or csv, not {fmt!r}", details={"field": "format"})
    limit = int_query(request, "limit", 10_000, 1, 1_000_000)
    manager = request.app[MANAGER]
    record = await manager.record(_id(request))
    layout = request.query.get("layout")
    if layout not in (None, "rows", "summary"):
        raise InvalidInput(f"query parameter 'layout' must be rows or summary, not {layout!r}",
                           details={"field": "layout"})
    found = await manager.store.rejects(record.id, table=request.query.get("table") or None, limit=limit or 10_000)
    if fmt == "csv":
        tables = sorted({r.table for r in found})
        if layout == "rows" and len(tables) > 1:
            raise InvalidInput(f"the rejects are of {len(tables)} tables ({', '.join(tables)}): the rows layout "
                               "needs one — add table=…", details={"field": "table"})
        if layout == "summary" or len(tables) > 1:
            text, name = rejects_csv(found), f"rejects-{record.id}.csv"
        else:  # one table: the rejected rows themselves, loadable again once corrected
            text, name = rows_csv(found), f"{tables[0] if tables else 'rejects'}.csv"
        return web.Response(text=text, content_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
    rows = [reject_json(r) for r in found]
    return ok({"migrationId": record.id, "count": len(rows), "rejects": rows})


async def events(request: web.Request) -> web.WebSocketResponse:
    allowed = request.app[ORIGINS] or (f"{request.scheme}://{request.host}",)
    origin = request.headers.get("Origin")
    if origin is not None and origin not in allowed:
        raise web.HTTPForbidden(text=f"WebSocket Origin {origin!r} is not allowed (MIGRATOR_ALLOWED_ORIGINS)")
    manager = request.app[MANAGER]
    migration = request.query.get("migration") or None
    if migration is not None:
        await manager.record(migration)  # 404 before the upgrade
    # No per-message deflate: events are small, and compressing each for every client costs the CPU
    # the migrations need.
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024, compress=False)
    await ws.prepare(request)
    try:
        snapshot: dict[str, object] | None = await manager.summary(migration)
    except NotFound:
        snapshot = None  # no migration yet

    async def act(action: str, mid: str | None) -> tuple[str, str]:
        record = await manager.record(mid)
        verb = {"pause": manager.pause, "resume": manager.resume, "cancel": manager.cancel}[action]
        return record.id, await verb(record.id)

    await serve_client(request.app[HUB], ws, migration, snapshot, act)
    return ws


async def verify(request: web.Request) -> web.Response:
    data = await body(request)
    _only(data, {"deep", "sourceDB", "targetDB"}, "verify takes deep (and sourceDB/targetDB when their passwords are "
                                                  "masked)")
    deep = data.get("deep", False)
    if not isinstance(deep, bool):
        raise InvalidInput(f"deep must be true or false, not {deep!r}", details={"field": "deep"})
    manager = request.app[MANAGER]
    record = await manager.record(_id(request))
    return ok({"migrationId": record.id, "report": await manager.verify(record.id, deep=deep, urls=_urls(data))})


async def rollback(request: web.Request) -> web.Response:
    return await _control(request, lambda m, mid, data: m.rollback(mid, _urls(data)))


async def sync(request: web.Request) -> web.Response:
    data = await body(request)
    _only(data, {"every", "sourceDB", "targetDB"}, "sync takes every (seconds between passes; none: one pass), and "
                                                   "sourceDB/targetDB when their passwords are masked")
    every = data.get("every")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int | float) or not 1 <= every <= 86400):
        raise InvalidInput(f"every must be a number of seconds from 1 to 86400 (or null for one pass), not {every!r}",
                           details={"field": "every"})
    manager = request.app[MANAGER]
    record = await manager.record(_id(request))
    run = await manager.sync(record.id, None if every is None else float(every), _urls(data))
    started = {**migration_json(run.record, run.status), "startTime": run.started_at, "every": every}
    return ok({"message": "Sync started" if every is None else f"Continuous sync started: a pass every {every:g} s",
               "migration": started}, status=202)


async def cutover(request: web.Request) -> web.Response:
    data = await body(request)
    _only(data, {"sourceDB", "targetDB"}, "cutover takes only sourceDB/targetDB (when their passwords are masked)")
    manager = request.app[MANAGER]
    record = await manager.record(_id(request))
    return ok(await manager.cutover(record.id, _urls(data)))


async def report(request: web.Request) -> web.Response:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "md"):
        raise InvalidInput(f"query parameter 'format' must be json or md, not {fmt!r}", details={"field": "format"})
    record, found = await request.app[MANAGER].report(_id(request))
    if fmt == "md":
        return web.Response(text=markdown(found, migration_id=record.id, source=record.source, target=record.target),
                            content_type="text/markdown")
    return ok({"migrationId": record.id, "report": found})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/health", health)
    r.add_get("/metrics", metrics)
    r.add_get("/api/openapi.json", openapi)
    r.add_get("/api/migrations", history)
    r.add_get("/api/migrations/events", events)
    r.add_post("/api/migrations/initialize", initialize)
    for prefix in ("/api/migrations", f"/api/migrations/{{id:{ID_PATTERN}}}"):
        r.add_post(f"{prefix}/plan", plan)
        r.add_get(f"{prefix}/plan", get_plan)
        r.add_post(f"{prefix}/execute", execute)
        r.add_post(f"{prefix}/pause", pause)
        r.add_post(f"{prefix}/resume", resume)
        r.add_post(f"{prefix}/cancel", cancel)
        r.add_get(f"{prefix}/summary", summary)
        r.add_get(f"{prefix}/log", logs)
        r.add_delete(f"{prefix}/log", delete_logs)
        r.add_get(f"{prefix}/rejects", rejects)
        r.add_post(f"{prefix}/verify", verify)
        r.add_post(f"{prefix}/rollback", rollback)
        r.add_get(f"{prefix}/report", report)
        r.add_post(f"{prefix}/sync", sync)
        r.add_post(f"{prefix}/cutover", cutover)
    r.add_get(f"/api/migrations/{{id:{ID_PATTERN}}}", one)

