"""JSON in and out (orjson): request bodies checked with messages that name the field, and the
success / error envelopes of DESIGN.md §3."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web

from service.core.errors import InvalidInput


def dumps(obj: object) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


def ok(body: Mapping[str, object], status: int = 200) -> web.Response:
    return web.json_response({"success": True, **body}, status=status, dumps=dumps)


def error_response(status: int, code: str, message: str, details: object,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    error: dict[str, object] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return web.json_response({"success": False, "error": error}, status=status, dumps=dumps, headers=headers)


async def body(request: web.Request) -> dict[str, object]:
    """The JSON object in the body (`{}` when empty). Any content type is read as JSON: the seed's
    curl calls do not all send one."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"the request body must be a JSON object, not {type(data).__name__}")
    return data


def string_field(data: Mapping[str, object], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"field {name!r} must be a non-empty string"
                           + ("" if value is None else f", not {type(value).__name__}"), details={"field": name})
    return value


def int_query(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"query parameter {name!r} must be a whole number, not {raw!r}",
                           details={"field": name}) from None
    if not lo <= value <= hi:
        raise InvalidInput(f"query parameter {name!r} must be from {lo} to {hi}, not {value}",
                           details={"field": name})
    return value
