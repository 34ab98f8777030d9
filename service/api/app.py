"""The aiohttp application: routes, middlewares, and the lifecycle of what it owns.

Start-up opens the state store and starts the RunManager (runs left `executing` by a previous
process become `interrupted`). Shutdown, in order: close WebSockets; let running migrations
reach a batch boundary and checkpoint, then cancel them (`interrupted`); close the store.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from service import __version__
from service.api.keys import HUB, MANAGER, METRICS, ORIGINS, SETTINGS, STARTED
from service.api.metrics import Metrics
from service.api.middleware import errors, token_auth
from service.api.routes import add_routes
from service.api.websocket import Hub
from service.core.settings import Settings
from service.runs.manager import RunManager
from service.store import open_state_store

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
MAX_BODY = 1024 * 1024


async def monitor_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = await open_state_store(settings.state_url)
    manager = app[MANAGER]
    try:
        await manager.start(store)
        yield
    finally:
        await app[HUB].close()
        await manager.stop()
        await store.close()


async def _close_websockets(app: web.Application) -> None:
    await app[HUB].close()


def create_app(settings: Settings, *, token: str | None) -> web.Application:
    """The app; `token` is the API token (None only when auth is switched off)."""
    app = web.Application(middlewares=[errors, token_auth(token)], client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app[STARTED] = time.monotonic()
    app[ORIGINS] = settings.allowed_origins
    metrics = app[METRICS] = Metrics()
    manager = app[MANAGER] = RunManager(data_dir=settings.data_dir, timeout=settings.timeout,
                                        allowed_hosts=settings.allowed_hosts,
                                        max_running=settings.max_running)
    hub = app[HUB] = Hub(manager.live_summary)
    manager.add_listener(hub.on_event)
    manager.add_listener(metrics.on_event)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_close_websockets)
    add_routes(app)
    app.router.add_get("/admin/migrations", monitor_page)
    app.router.add_static("/static/", STATIC_DIR)
    return app


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = host or settings.host, port or settings.port
    if not settings.auth and host not in ("127.0.0.1", "localhost", "::1"):
        print(f"error: MIGRATOR_AUTH=off is only allowed on a loopback address, not {host}", flush=True)
        return 2
    token = None if not settings.auth else settings.api_token or secrets.token_urlsafe(24)
    base = f"http://{host}:{port}"
    print(f"migrator {__version__} listening on {base}", flush=True)
    if token is None:
        print("API token checking is OFF (MIGRATOR_AUTH=off): anyone who can reach this address controls it",
              flush=True)
        print(f"monitor: {base}/admin/migrations", flush=True)
    elif settings.api_token:
        print(f"monitor: {base}/admin/migrations?token=<MIGRATOR_API_TOKEN>", flush=True)
    else:
        print(f"API token (random, set MIGRATOR_API_TOKEN to choose one): {token}", flush=True)
        print(f"monitor: {base}/admin/migrations?token={token}", flush=True)
    web.run_app(create_app(settings, token=token), host=host, port=port, print=None)
    return 0
