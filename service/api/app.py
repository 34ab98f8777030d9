"""The aiohttp application. This first cut serves `/health` and the monitor page placeholder;
the control API and WebSocket events arrive with the service issue."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson
from aiohttp import web

from service import __version__
from service.core.settings import Settings

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
STARTED = web.AppKey("started", float)


async def health(request: web.Request) -> web.Response:
    body = {"status": "ok", "version": __version__, "uptime": round(time.monotonic() - request.app[STARTED], 3)}
    return web.json_response(body, dumps=lambda o: orjson.dumps(o).decode())


async def monitor_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[STARTED] = time.monotonic()
    app.router.add_get("/health", health)
    app.router.add_get("/admin/migrations", monitor_page)
    app.router.add_static("/static/", STATIC_DIR)
    return app


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = host or settings.host, port or settings.port
    print(f"migrator {__version__} listening on http://{host}:{port} (monitor: http://{host}:{port}/admin/migrations)",
          flush=True)
    web.run_app(create_app(settings), host=host, port=port, print=None)
    return 0
