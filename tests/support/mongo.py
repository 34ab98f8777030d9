"""A throw-away MongoDB stand-in (`nx-27017`, a MongoDB wire-protocol server backed by in-memory
SQLite) on a free loopback port, or an existing server from TEST_MONGO_URL.

    server = MongoServer().start()      # TEST_MONGO_URL set: uses that server, starts no process
    try:
        url = server.url                # mongodb://127.0.0.1:PORT
    finally:
        server.stop()

Each instance gets its own temp dir holding its pid and log files: nx-27017 refuses to start while
the pid file it is given names a live process, and its defaults (/tmp/nx_27017.pid, .log) are shared.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.support.pgcluster import free_port, wait_for

ENV_URL = "TEST_MONGO_URL"


def nx_bin() -> str:
    """The nx-27017 launcher of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "nx-27017"
    if beside.exists():
        return str(beside)
    found = shutil.which("nx-27017")
    if found:
        return found
    raise RuntimeError("nx-27017 not found; `pip install nx-27017` or set TEST_MONGO_URL")


def ping(url: str, timeout: float = 2.0) -> None:
    """Raise unless a MongoDB server at `url` answers `ping` within `timeout` seconds."""
    ms = int(timeout * 1000)
    client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms,
                                      socketTimeoutMS=ms)
    try:
        client.admin.command("ping")
    finally:
        client.close()


class MongoServer:
    def __init__(self, *, url: str | None = None, isolated_dbs: bool = False) -> None:
        """`url` (default: $TEST_MONGO_URL) means an existing server and no process. `isolated_dbs`
        runs nx-27017 with `--data-dir memory` (one SQLite database per logical database) instead of
        `--db memory` (all logical databases in one SQLite connection)."""
        self.external = url if url is not None else (os.environ.get(ENV_URL) or None)
        self.isolated_dbs = isolated_dbs
        self.port = 0
        self.root: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> MongoServer:
        if self.external:
            ping(self.external, timeout=timeout)
            return self
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="migrator-mongo-"))
        storage = ["--data-dir", "memory"] if self.isolated_dbs else ["--db", "memory"]
        cmd = [nx_bin(), *storage, "--host", "127.0.0.1", "-p", str(self.port),
               "--pid-file", str(self.root / "nx.pid"), "--log-file", str(self.root / "nx.log")]
        # Foreground mode (no -d), so that the pid we hold is the server's; its stderr logging
        # duplicates the log file, so only the log file is kept.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.root)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nx-27017 exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                wait_for(self.port, timeout=0.5)
                ping(self.url, timeout=2.0)
                return
            except (TimeoutError, PyMongoError):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"nx-27017 on port {self.port} not ready after {timeout}s: "
                                       f"{self.log_tail()}") from None

    def log_tail(self, lines: int = 20) -> str:
        if self.root is None:
            return ""
        try:
            return "\n".join((self.root / "nx.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def url(self) -> str:
        if self.external:
            return self.external
        return f"mongodb://127.0.0.1:{self.port}"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> MongoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
