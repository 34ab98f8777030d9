"""The secret canary: a unique password, set on a real PostgreSQL role, travels in the source and
target URLs of every flow — a clean PG→PG run, a run with rejected rows, verify, rollback (after a
restart, with the URL sent again), connections that fail, a `${VAR}` reference, the CLI — while
the service logs at DEBUG. Everything a user or operator can see is collected: every API answer
(headers and body, errors too), every WebSocket message, every log record, the CLI's output and the
bytes of every file in the state store's folder. The password must appear in none of them.

(The test cluster may use trust authentication, so the server need not check the password; what
matters is that it is in the URLs the service is given.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType

from tests.conftest import NewDatabase, PgServer
from tests.support import pg
from tests.support.api import AUTH, Api
from tests.support.bigtable import create_big_table
from tests.support.cli import Cli
from tests.support.pgcluster import free_port

EVENTS = "/api/migrations/events"
ENDED = ("completed", "failed", "cancelled", "interrupted", "rolled_back")
LOG_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
VAR = "MIGRATOR_CANARY_PASSWORD"
CHECKED_TABLE = ("CREATE TABLE big (id bigint PRIMARY KEY, name text, amount numeric(12,2), note text,"
                 " CONSTRAINT no_seven CHECK (id % 100 <> 7))")  # refuses 1 row in 100: rejects


# -- the canary role and its databases ---------------------------------------------------------------------------
@dataclass
class Canary:
    """A role `role` with the password `password` (`canary-<hex>`), owner of the databases it makes."""

    role: str
    password: str
    new_pg_db: NewDatabase
    databases: list[str] = field(default_factory=list)

    @property
    def secret(self) -> str:
        """The random part of the password: what must never be seen, whole or without its prefix."""
        return self.password.removeprefix("canary-")

    def url(self, dsn: str, *, password: str | None = None, port: int | None = None) -> str:
        """`dsn` as the canary role, with the password (or `password`, e.g. a `${VAR}`) in the URL."""
        parts = urlsplit(dsn)
        port = port or parts.port
        host = f"{parts.hostname}:{port}" if port else str(parts.hostname)
        return urlunsplit(parts._replace(netloc=f"{self.role}:{password or self.password}@{host}"))

    async def database(self, admin: PgServer) -> str:
        """A fresh database owned by the role: its URL with the password."""
        dsn = await self.new_pg_db()
        name = urlsplit(dsn).path.lstrip("/")
        await pg.execute(admin.admin_dsn, f'ALTER DATABASE "{name}" OWNER TO {self.role}')
        self.databases.append(name)
        return self.url(dsn)


@pytest.fixture
async def canary(pg_server: PgServer, new_pg_db: NewDatabase) -> AsyncIterator[Canary]:
    role, password = f"canary_{uuid.uuid4().hex[:12]}", f"canary-{uuid.uuid4().hex}"
    await pg.execute(pg_server.admin_dsn, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    made = Canary(role, password, new_pg_db)
    try:
        yield made
    finally:  # its databases go first (new_pg_db's clean-up skips them), else the role cannot be dropped
        await pg.execute(pg_server.admin_dsn, *(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)' for db in made.databases),
                         f"DROP ROLE IF EXISTS {role}")


# -- what a user or operator sees ---------------------------------------------------------------------------------
@dataclass
class Seen:
    """Every text a user or operator could see, with where it was seen."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str) -> None:
        self.items.append((where, text))

    def where(self, prefix: str) -> list[str]:
        return [text for where, text in self.items if where.startswith(prefix)]

    def leaks(self, secret: str) -> list[str]:
        found = []
        for where, text in self.items:
            at = text.find(secret)
            if at >= 0:
                found.append(f"{where}: …{text[max(0, at - 120):at + len(secret) + 40]!r}…")
        return found

    def add_files(self, folder: Path, when: str) -> list[Path]:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        for path in files:
            self.add(f"file {path} ({when})", path.read_bytes().decode("latin-1"))  # byte for byte
        return files

    def add_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        for record in caplog.records:
            self.add(f"log record {record.name} {record.levelname}", LOG_FORMAT.format(record))


def assert_no_leak(seen: Seen, canary: Canary) -> None:
    leaks = seen.leaks(canary.secret)
    assert not leaks, f"the canary password was seen in {len(leaks)} place(s):\n" + "\n".join(leaks[:10])


async def call(api: Api, seen: Seen, method: str, path: str, body: object = None,
               *, expect: tuple[int, ...] | None = None) -> tuple[int, Any]:
    """Status and decoded body of a request; its headers and body text are `seen`."""
    kwargs: dict[str, Any] = {"headers": AUTH}
    if body is not None:
        kwargs["json"] = body
    async with api.client.request(method, path, **kwargs) as resp:
        text = await resp.text()
        seen.add(f"{method} {path} -> {resp.status}", f"{dict(resp.headers)}\n{text}")
        if expect is not None:
            assert resp.status in expect, f"{method} {path} -> {resp.status}: {text}"
        return resp.status, json.loads(text) if resp.content_type == "application/json" else text


async def wait_ended(api: Api, seen: Seen, mid: str, timeout: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            _, body = await call(api, seen, "GET", f"/api/migrations/{mid}/summary", expect=(200,))
            if body["summary"]["status"] in ENDED:
                return body["summary"]  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)


async def look_at_everything(api: Api, seen: Seen, mid: str) -> dict[str, int]:
    """GET every view of migration `mid` (and the current one); the status of each."""
    views = [f"/api/migrations/{mid}{v}" for v in (
        "", "/summary", "/log?limit=100000", "/log?level=debug", "/log?level=error", "/rejects",
        "/rejects?format=csv", "/rejects?format=csv&layout=summary", "/report", "/report?format=md", "/plan")]
    views += ["/api/migrations", "/api/migrations/summary", "/api/migrations/log", "/api/migrations/rejects",
              "/api/migrations/report?format=md", "/metrics", "/health"]
    statuses = {}
    for path in views:
        statuses[path], _ = await call(api, seen, "GET", path, expect=(200, 404, 409))
    return statuses


class Events:
    """Every message of a WebSocket opened before the flows start, as it arrives."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.texts: list[str] = []
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for msg in self.ws:
            self.texts.append(msg.data if msg.type is WSMsgType.TEXT else repr(msg))

    async def wait_for(self, kind: str, mid: str, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while not any(f'"type":"{kind}"' in t and mid in t for t in self.texts):
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._task, 5)


@contextlib.asynccontextmanager
async def watching(api: Api, seen: Seen) -> AsyncIterator[Events]:
    async with api.client.ws_connect(EVENTS, headers=AUTH) as ws:
        events = Events(ws)
        try:
            yield events
        finally:
            await events.close()
            for text in events.texts:
                seen.add("websocket message", text)


def store_folder(state_url: str) -> Path:
    return Path(state_url.removeprefix("sqlite:///")).parent


# -- the API -------------------------------------------------------------------------------------------------------
async def test_runs_with_rejects_verify_and_rollback_after_a_restart_never_show_the_password(
    make_api: Callable[..., Any], canary: Canary, pg_server: PgServer, state_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = Seen()
    source, clean, checked = [await canary.database(pg_server) for _ in range(3)]
    await create_big_table(source, 2_000, table="users")
    await create_big_table(source, 3_000)
    await pg.execute(checked, CHECKED_TABLE)

    async with make_api() as api, watching(api, seen) as events:
        _, init = await call(api, seen, "POST", "/api/migrations/initialize",
                             {"sourceDB": source, "targetDB": clean}, expect=(200,))
        first = init["migration"]["id"]
        assert ":***@" in init["migration"]["source"], init
        await call(api, seen, "POST", f"/api/migrations/{first}/plan",
                   {"tables": ["users", "big"], "batchSize": 500, "verify": "deep"}, expect=(200,))
        await call(api, seen, "POST", f"/api/migrations/{first}/execute", {}, expect=(202,))
        done = await wait_ended(api, seen, first)
        assert done["status"] == "completed", done
        await events.wait_for("report", first)

        _, init = await call(api, seen, "POST", "/api/migrations/initialize",
                             {"sourceDB": source, "targetDB": checked}, expect=(200,))
        second = init["migration"]["id"]
        await call(api, seen, "POST", "/api/migrations/plan", {"tables": ["big"], "batchSize": 500}, expect=(200,))
        await call(api, seen, "POST", "/api/migrations/execute", {}, expect=(202,))
        done = await wait_ended(api, seen, second)
        assert (done["status"], done["migratedCount"], done["failedCount"]) == ("completed", 2_970, 30), done
        await events.wait_for("report", second)

        for mid in (first, second):
            _, verified = await call(api, seen, "POST", f"/api/migrations/{mid}/verify", {"deep": True},
                                     expect=(200,))
            assert verified["report"]["ok"] is True, verified
        statuses = await look_at_everything(api, seen, first)
        assert statuses[f"/api/migrations/{first}/report?format=md"] == 200
        assert statuses[f"/api/migrations/{first}/plan"] == 200
        statuses = await look_at_everything(api, seen, second)
        assert statuses[f"/api/migrations/{second}/rejects?format=csv"] == 200
        assert '"type":"log"' in "".join(events.texts)

    async with make_api() as api, watching(api, seen):  # a restart: the literal passwords are gone
        _, refused = await call(api, seen, "POST", "/api/migrations/rollback", {}, expect=(409,))
        assert "password" in refused["error"]["message"], refused
        await call(api, seen, "POST", f"/api/migrations/{first}/verify", {"deep": True}, expect=(409,))
        # (Both URLs: with the target's alone it is refused — see the test after this one.)
        _, rolled = await call(api, seen, "POST", "/api/migrations/rollback",
                               {"sourceDB": source, "targetDB": checked}, expect=(200,))
        assert rolled["status"] == "rolled_back", rolled
        _, verified = await call(api, seen, "POST", f"/api/migrations/{first}/verify",
                                 {"deep": True, "sourceDB": source, "targetDB": clean}, expect=(200,))
        assert verified["report"]["ok"] is True, verified
        for mid in (first, second):
            await look_at_everything(api, seen, mid)
        seen.add_files(store_folder(state_url), "while the service runs")

    await pg.assert_exact_copy(source, clean, "users")
    await pg.assert_exact_copy(source, clean, "big")
    assert await pg.count_rows(checked, "big") == 0
    seen.add_files(store_folder(state_url), "after the service stopped")
    seen.add_logs(caplog)
    assert any(r.name.startswith("service.") for r in caplog.records), "no log record of the service was captured"
    assert_no_leak(seen, canary)


async def test_after_a_restart_a_rollback_needs_only_the_target_password_sent_again(
    make_api: Callable[..., Any], canary: Canary, pg_server: PgServer,
) -> None:
    """A rollback only touches the target: like `migrator rollback ID --target URL`, the API takes
    `{"targetDB": url}` when the stored URLs lost their literal passwords."""
    source, target = await canary.database(pg_server), await canary.database(pg_server)
    await create_big_table(source, 500)
    async with make_api() as api:
        mid = await api.start(source, target, tables=["big"])
        assert (await api.wait_status("completed", "failed", migration=mid))["status"] == "completed"
    async with make_api() as api:
        answer = await api.call("POST", f"/api/migrations/{mid}/rollback", {"targetDB": target}, status=None)
        assert answer.get("status") == "rolled_back", f"rollback with the target URL sent again: {answer}"
    assert await pg.count_rows(target, "big") == 0


async def test_verify_does_not_silently_check_other_databases_than_the_urls_sent_with_it(
    api: Api, canary: Canary, pg_server: PgServer,
) -> None:
    """`POST …/verify {"sourceDB": url}` after a restart reads `url`; in the process that ran the
    migration it must not verify the run's own source instead and answer `ok` (the same request,
    two meanings)."""
    source, target = await canary.database(pg_server), await canary.database(pg_server)
    await create_big_table(source, 500)
    mid = await api.start(source, target, tables=["big"])
    assert (await api.wait_status("completed", "failed", migration=mid))["status"] == "completed"
    dead_source = canary.url(source, port=free_port())

    answer = await api.call("POST", f"/api/migrations/{mid}/verify", {"deep": True, "sourceDB": dead_source},
                            status=None)

    assert answer["success"] is False, f"verify with a source nobody answers at, in the run's process: {answer}"


async def test_failing_connections_and_a_failed_run_never_show_the_password(
    make_api: Callable[..., Any], canary: Canary, pg_server: PgServer, state_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = Seen()
    source, target = await canary.database(pg_server), await canary.database(pg_server)
    await create_big_table(source, 1_000)
    port = free_port()  # nothing listens there
    dead_source, dead_target = canary.url(source, port=port), canary.url(target, port=port)

    async with make_api() as api, watching(api, seen) as events:
        for urls, side in (({"sourceDB": dead_source, "targetDB": target}, "source"),
                           ({"sourceDB": source, "targetDB": dead_target}, "target")):
            _, refused = await call(api, seen, "POST", "/api/migrations/initialize", urls, expect=(502,))
            assert refused["success"] is False and side in refused["error"]["message"], refused
            assert str(port) in refused["error"]["message"], refused

        ran = await api.start(source, target, tables=["big"], batchSize=250)
        assert (await wait_ended(api, seen, ran))["status"] == "completed"

    async with make_api() as api, watching(api, seen) as events:  # a restart: the URLs must be sent again
        # The completed run verified and rolled back with a URL nobody answers at.
        for urls in ({"sourceDB": dead_source, "targetDB": target}, {"sourceDB": source, "targetDB": dead_target}):
            await call(api, seen, "POST", f"/api/migrations/{ran}/verify", {"deep": True, **urls}, expect=(502,))
        await call(api, seen, "POST", f"/api/migrations/{ran}/rollback", {"sourceDB": source, "targetDB": dead_target},
                   expect=(502,))
        await look_at_everything(api, seen, ran)

        # A run resumed with a source nobody answers at: it retries, then fails.
        _, init = await call(api, seen, "POST", "/api/migrations/initialize",
                             {"sourceDB": source, "targetDB": target}, expect=(200,))
        mid = init["migration"]["id"]
        await call(api, seen, "POST", "/api/migrations/plan",
                   {"tables": ["big"], "batchSize": 250,
                    "retryFailed": {"attempts": 2, "backoff": 0.05, "maxBackoff": 0.1}}, expect=(200,))
        await call(api, seen, "POST", "/api/migrations/cancel", {}, expect=(200,))
        await call(api, seen, "POST", "/api/migrations/resume", {"sourceDB": dead_source}, expect=(200,))
        done = await wait_ended(api, seen, mid)
        assert done["status"] == "failed", done
        assert str(port) in str(done["error"]), done
        await events.wait_for("status", mid)
        statuses = await look_at_everything(api, seen, mid)
        assert statuses[f"/api/migrations/{mid}/report"] == 404
        logged = "".join(seen.where(f"GET /api/migrations/{mid}/log?limit"))
        assert '"level":"ERROR"' in logged, "the failed run logged no ERROR entry"
        seen.add_files(store_folder(state_url), "while the service runs")

    seen.add_files(store_folder(state_url), "after the service stopped")
    seen.add_logs(caplog)
    assert any(r.levelno >= logging.WARNING and r.name.startswith("service.") for r in caplog.records)
    assert_no_leak(seen, canary)


async def test_a_var_reference_is_stored_as_written_and_its_value_never_shown(
    make_api: Callable[..., Any], canary: Canary, pg_server: PgServer, state_url: str,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(VAR, canary.password)
    seen = Seen()
    source, target = await canary.database(pg_server), await canary.database(pg_server)
    await create_big_table(source, 1_500)
    by_reference = (canary.url(source, password=f"${{{VAR}}}"), canary.url(target, password=f"${{{VAR}}}"))

    async with make_api() as api, watching(api, seen) as events:
        _, init = await call(api, seen, "POST", "/api/migrations/initialize",
                             {"sourceDB": by_reference[0], "targetDB": by_reference[1]}, expect=(200,))
        mid = init["migration"]["id"]
        await call(api, seen, "POST", "/api/migrations/plan", {"tables": ["big"], "batchSize": 300}, expect=(200,))
        await call(api, seen, "POST", "/api/migrations/execute", {}, expect=(202,))
        assert (await wait_ended(api, seen, mid))["status"] == "completed"
        await events.wait_for("report", mid)
        await look_at_everything(api, seen, mid)

    async with make_api() as api, watching(api, seen):  # a restart: the reference is resolved again
        _, one = await call(api, seen, "GET", f"/api/migrations/{mid}", expect=(200,))
        spec = one["migration"]["spec"]
        assert (spec["source"], spec["target"]) == by_reference, spec
        _, verified = await call(api, seen, "POST", f"/api/migrations/{mid}/verify", {"deep": True}, expect=(200,))
        assert verified["report"]["ok"] is True, verified
        await look_at_everything(api, seen, mid)
        files = seen.add_files(store_folder(state_url), "while the service runs")

    await pg.assert_exact_copy(source, target)
    assert any(f"${{{VAR}}}".encode() in path.read_bytes() for path in files if path.name.startswith("state.db")), \
        "the state store does not keep the ${VAR} reference"
    seen.add_files(store_folder(state_url), "after the service stopped")
    seen.add_logs(caplog)
    assert_no_leak(seen, canary)


async def store_modes(make_api: Callable[..., Any], canary: Canary, pg_server: PgServer,
                      state_url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Permission bits of each state store file while a service that planned a migration runs,
    and after it stopped."""
    source, target = await canary.database(pg_server), await canary.database(pg_server)
    await create_big_table(source, 100)
    store = Path(state_url.removeprefix("sqlite:///"))

    def modes() -> dict[str, int]:
        return {p.name: p.stat().st_mode & 0o777 for p in store.parent.iterdir() if p.name.startswith(store.name)}

    async with make_api() as api:
        await api.start(source, target, tables=["big"])
        await api.wait_status("completed", "failed")
        running = modes()
    return running, modes()


async def test_the_state_store_file_is_readable_by_its_owner_only(
    make_api: Callable[..., Any], canary: Canary, pg_server: PgServer, state_url: str,
) -> None:
    running, stopped = await store_modes(make_api, canary, pg_server, state_url)
    assert running["state.db"] == 0o600, f"state.db has mode {running['state.db']:o} while the service runs"
    assert stopped["state.db"] == 0o600, f"state.db has mode {stopped['state.db']:o} after the service stopped"


async def test_the_state_store_journal_files_are_readable_by_their_owner_only(
    make_api: Callable[..., Any], canary: Canary, pg_server: PgServer, state_url: str,
) -> None:
    """The WAL and shared-memory files hold the same migrations, logs and rejected rows."""
    running, stopped = await store_modes(make_api, canary, pg_server, state_url)
    assert "state.db-wal" in running, running
    wrong = {name: f"{mode:o}" for name, mode in {**running, **stopped}.items() if mode != 0o600}
    assert not wrong, f"state store files readable by others: {wrong}"


# -- the CLI -------------------------------------------------------------------------------------------------------
async def test_the_cli_never_shows_the_password(cli: Cli, canary: Canary, pg_server: PgServer,
                                                state_url: str) -> None:
    seen = Seen()
    source, target = await canary.database(pg_server), await canary.database(pg_server)
    await create_big_table(source, 2_000)
    await pg.execute(target, CHECKED_TABLE)
    port = free_port()
    dead_source, dead_target = canary.url(source, port=port), canary.url(target, port=port)
    cli.env["MIGRATOR_LOG_LEVEL"] = "DEBUG"

    ran = await cli.run("run", "--source", source, "--target", target, "--batch-size", "250", "-v")
    seen.add("migrator run (stdout)", ran.stdout)
    seen.add("migrator run -v (stderr)", ran.stderr)
    assert ran.returncode == 0, ran.stderr
    assert "Batch" in ran.stderr, "-v printed no log"
    assert await pg.count_rows(target, "big") == 1_980
    found = re.search(r"migration (\d{8}-\d{6}-[0-9a-f]+)", ran.stdout)
    assert found, ran.stdout

    for dead in ((dead_source, target), (source, dead_target)):
        failed = await cli.run("run", "--source", dead[0], "--target", dead[1], "-v")
        seen.add(f"migrator run, nothing at port {port} (stdout)", failed.stdout)
        seen.add(f"migrator run, nothing at port {port} (stderr)", failed.stderr)
        assert failed.returncode == 1, (failed.returncode, failed.stderr)
        assert any(str(port) in line for line in failed.error_lines()), failed.stderr

    rolled = await cli.run("rollback", found.group(1), "--target", target)
    seen.add("migrator rollback (stdout)", rolled.stdout)
    seen.add("migrator rollback (stderr)", rolled.stderr)
    assert rolled.returncode == 0, rolled.stderr
    assert await pg.count_rows(target, "big") == 0

    files = seen.add_files(store_folder(state_url), "after the runs")
    assert Path(state_url.removeprefix("sqlite:///")) in files
    assert_no_leak(seen, canary)
