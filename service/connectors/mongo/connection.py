"""Connecting to MongoDB: one AsyncMongoClient per source/sink, errors with the masked URL."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    ConfigurationError,
    ConnectionFailure,
    InvalidURI,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from service.core.errors import EndpointError, InvalidUrl, TerminalError, TransientError
from service.core.urls import EndpointUrl

Document = dict[str, Any]


def database_name(url: EndpointUrl) -> str:
    name = urlsplit(url.secret_url).path.lstrip("/")
    if not name or "/" in name:
        raise InvalidUrl(f"MongoDB URL {url.masked!r} must name a database: mongodb://host:27017/dbname")
    return name


def describe(url: EndpointUrl) -> str:
    parts = urlsplit(url.masked)
    return f"{parts.hostname}{':' + str(parts.port) if parts.port else ''}/{parts.path.lstrip('/')}"


def open_database(url: EndpointUrl, timeout: float) -> tuple[AsyncMongoClient[Document], AsyncDatabase[Document]]:
    """A client (connects lazily) and the URL's database. Dates come back timezone-aware (UTC);
    UUIDs use the standard binary representation (subtype 4)."""
    name = database_name(url)
    ms = max(1, int(timeout * 1000))
    try:
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            url.secret_url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=max(ms, 60_000),
            tz_aware=True,
            uuidRepresentation="standard", appname="migrator")
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        raise InvalidUrl(f"MongoDB URL {url.masked!r}: {url.redact(str(exc))}") from None
    return client, client[name]


def endpoint_error(exc: PyMongoError, url: EndpointUrl, doing: str) -> EndpointError:
    """The driver's error as ours: transient (retry may help) or terminal, password-free."""
    where = describe(url)
    reason = url.redact(str(exc).split(", Timeout:")[0])
    if isinstance(exc, ServerSelectionTimeoutError):
        return TransientError(f"cannot connect to MongoDB at {where}: {reason}")
    if isinstance(exc, AutoReconnect | ConnectionFailure):
        return TransientError(f"MongoDB at {where}: connection lost while {doing}: {reason}")
    if isinstance(exc, OperationFailure) and exc.code in (13, 18, 8000):
        return TerminalError(f"MongoDB at {where}: not authorized ({reason})")
    return EndpointError(f"MongoDB at {where}: {doing} failed: {reason}")


def reraise_swallowed_cancel() -> None:
    """Raise the task's pending cancellation, if a driver call swallowed it.

    PyMongo sends commands through `asyncio.wait_for`, which on Python 3.11 returns the result
    instead of raising when the cancellation arrives just as the command completes. The task then
    runs on as if never cancelled (a cancelled migration would never stop). Called after driver
    calls on paths a cancellation must stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def ping(db: AsyncDatabase[Document], url: EndpointUrl) -> None:
    """Connect (lazily, on the first command), or a clear EndpointError."""
    try:
        await db.command("ping")
    except PyMongoError as exc:
        raise endpoint_error(exc, url, "connecting") from None
    reraise_swallowed_cancel()
