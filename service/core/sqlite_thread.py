"""One SQLite connection used from worker threads, one call at a time (state store and connector)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from service.core.errors import EndpointError, TerminalError

T = TypeVar("T")


class SqliteDatabase:
    def __init__(self, path: Path, *, read_only: bool, timeout: float) -> None:
        self.path = path
        self._read_only = read_only
        self._timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                if self._read_only:
                    if not self.path.is_file():
                        raise TerminalError(f"SQLite file {self.path} does not exist")
                    conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self._timeout,
                                           check_same_thread=False, isolation_level=None)
                else:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    conn = sqlite3.connect(self.path, timeout=self._timeout, check_same_thread=False,
                                           isolation_level=None)
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as exc:
                raise TerminalError(f"SQLite file {self.path}: {exc}") from None
            except OSError as exc:
                raise TerminalError(f"SQLite file {self.path}: {exc.strerror}") from None
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` in a worker thread, serialised with every other call."""

        def call() -> T:
            with self._lock:
                try:
                    return fn(self._open())
                except sqlite3.DatabaseError as exc:
                    raise EndpointError(f"SQLite file {self.path}: {exc}") from exc

        return await asyncio.to_thread(call)

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(close)
