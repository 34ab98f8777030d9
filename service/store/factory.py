"""Opening the StateStore that MIGRATOR_STATE_URL names."""

from __future__ import annotations

import os
from pathlib import Path

from service.core.errors import ConfigError, InvalidUrl
from service.core.urls import mask, substitute
from service.store.base import StateStore
from service.store.postgres import PostgresStateStore
from service.store.sqlite import SqliteStateStore


async def open_state_store(url: str, *, base: Path | None = None) -> StateStore:
    """The opened store: `sqlite:///rel/state.db` (relative to `base`, default the working folder),
    `sqlite:////abs/state.db`, or `postgresql://…` / `postgres://…` (schema `migrator_state`).

    `${NAME}` in the URL is replaced from the environment. Tables missing from the store are
    created (idempotent). Raises ConfigError for a URL it cannot use or a store it cannot open;
    its message shows the URL with the password masked.
    """
    try:
        resolved = substitute(url, os.environ)
    except InvalidUrl as exc:
        raise ConfigError(f"MIGRATOR_STATE_URL: {exc.message}") from None
    scheme = resolved.partition("://")[0].lower()
    if scheme == "sqlite":
        return await SqliteStateStore(_sqlite_path(resolved, mask(url), base)).open()
    if scheme in ("postgresql", "postgres"):
        return await PostgresStateStore(resolved, mask(url)).open()
    raise ConfigError(f"MIGRATOR_STATE_URL {mask(url)!r} must be sqlite:///path or postgresql://…")


def _sqlite_path(url: str, masked: str, base: Path | None) -> Path:
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(f"MIGRATOR_STATE_URL {masked!r} must look like sqlite:///var/state.db")
    raw = rest[1:]
    return Path(raw) if raw.startswith("/") else (base or Path.cwd()) / raw
