"""The two middlewares every request passes: errors → the JSON error body (DESIGN.md §3), and
the API token on `/api/*`. Nothing a client sends can produce a 500 or show a traceback."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from service.api.json import error_response
from service.core.errors import MigratorError

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_HELP = ("send the header 'Authorization: Bearer <token>' (the token is MIGRATOR_API_TOKEN, or the one "
              "the service printed at start-up); WebSocket and dashboard URLs may carry ?token=<token> instead")
_HTTP_CODES = {400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MigratorError as exc:
        if exc.status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc.message)
        return error_response(exc.status, exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 404:
            message = f"no route {request.method} {request.path}; GET /api/openapi.json lists them"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), message, None)
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the service failed unexpectedly; see its log", None)


def token_auth(token: str | None) -> Middleware:
    """Bearer `token` on every /api/* route (`?token=` too, for WebSocket and dashboard URLs).
    `None` switches checking off (only allowed on a loopback address; see settings)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None or not request.path.startswith("/api/"):
            return await handler(request)
        given = _presented(request)
        if given is None:
            return error_response(401, "unauthorized", f"missing API token: {TOKEN_HELP}", None,
                                  headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode(), token.encode()):
            return error_response(401, "unauthorized", f"wrong API token: {TOKEN_HELP}", None,
                                  headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return await handler(request)

    return check


def _presented(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token") or None
