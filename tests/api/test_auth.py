"""Who may use the service and what it gives away: the API token on every `/api/*` route and the
WebSocket, the WebSocket's Origin check, passwords that never leave the server (responses, events,
the state store), and the Prometheus metrics that need no token."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.api import AUTH, TOKEN, Api
from tests.support.bigtable import create_big_table

EVENTS = "/api/migrations/events"
ANY_ID = "20260101-000000-abcdef"
PASSWORD = "S3cret-pw-123"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


async def raw(api: Api, method: str, path: str, body: object = None,
              headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Status and body text of a request, exactly as a client receives them."""
    kwargs: dict[str, Any] = {"headers": AUTH if headers is None else headers}
    if body is not None:
        kwargs["json"] = body
    async with api.client.request(method, path, **kwargs) as resp:
        return resp.status, await resp.text()


async def assert_refused_without_token(api: Api, method: str, path: str) -> None:
    for headers, why in (({}, "no token"), ({"Authorization": "Bearer wrong-token"}, "a wrong token"),
                         ({"Authorization": f"Basic {TOKEN}"}, "the token under another scheme")):
        status, text = await raw(api, method, path, headers=headers)
        assert status == 401, f"{method} {path} with {why} -> {status}: {text}"
        body = json.loads(text)
        assert body["success"] is False and body["error"]["code"] == "unauthorized", text
        assert "Authorization: Bearer" in body["error"]["message"], text
    status, _ = await raw(api, method, f"{path}?token=wrong-token", headers={})
    assert status == 401, f"{method} {path}?token=wrong-token -> {status}"


async def test_every_documented_api_route_refuses_a_missing_or_wrong_token(api: Api) -> None:
    status, text = await raw(api, "GET", "/api/openapi.json")
    assert status == 200, f"GET /api/openapi.json -> {status}: {text}"
    paths: dict[str, dict[str, Any]] = json.loads(text)["paths"]
    routes = [(method.upper(), path.replace("{id}", ANY_ID)) for path, ops in paths.items()
              if path.startswith("/api/") for method in ops if method in HTTP_METHODS]
    assert ("POST", "/api/migrations/initialize") in routes and ("GET", EVENTS) in routes
    assert len(routes) >= 20, routes
    for method, path in routes:
        await assert_refused_without_token(api, method, path)


async def test_every_api_route_the_app_serves_refuses_a_missing_or_wrong_token(api: Api) -> None:
    app = api.client.app
    assert app is not None
    routes = {(r.method, r.resource.canonical.replace("{id}", ANY_ID)) for r in app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/api/") and r.method != "HEAD"}
    assert len(routes) >= 20, routes
    for method, path in sorted(routes):
        await assert_refused_without_token(api, method, path)


async def test_health_and_metrics_need_no_token(api: Api) -> None:
    for path in ("/health", "/metrics"):
        status, text = await raw(api, "GET", path, headers={})
        assert status == 200, f"GET {path} -> {status}: {text}"
    status, text = await raw(api, "GET", "/health", headers={})
    assert json.loads(text)["status"] == "ok"


async def test_the_websocket_needs_the_token_in_the_header_or_the_query(api: Api) -> None:
    for path, headers in ((EVENTS, {}), (f"{EVENTS}?token=wrong-token", {}),
                          (EVENTS, {"Authorization": "Bearer wrong-token"})):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with api.client.ws_connect(path, headers=headers):
                pass
        assert refused.value.status == 401, (path, headers)
    for path, headers in ((f"{EVENTS}?token={TOKEN}", {}), (EVENTS, AUTH)):
        async with api.client.ws_connect(path, headers=headers) as ws:
            first = await ws.receive_json(timeout=10)
        assert first["type"] == "snapshot"


async def ws_status(api: Api, origin: str) -> int:
    """101 when a WebSocket with this Origin is accepted, else the refusal's HTTP status."""
    try:
        async with api.client.ws_connect(EVENTS, headers=AUTH, origin=origin) as ws:
            first = await ws.receive_json(timeout=10)
            assert first["type"] == "snapshot"
            return 101
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


def own_origin(api: Api) -> str:
    return f"http://{api.client.host}:{api.client.port}"


async def test_a_websocket_from_a_foreign_origin_is_refused_and_from_its_own_accepted(api: Api) -> None:
    assert await ws_status(api, "http://evil.example") == 403
    assert await ws_status(api, f"http://evil.example:{api.client.port}") == 403
    assert await ws_status(api, own_origin(api)) == 101


async def test_allowed_origins_replace_the_servers_own(make_api: Callable[..., Any]) -> None:
    async with make_api(allowed_origins=("http://dash.example",)) as api:
        assert await ws_status(api, "http://dash.example") == 101
        assert await ws_status(api, own_origin(api)) == 403
        assert await ws_status(api, "http://evil.example") == 403


def with_password(dsn: str, password: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is not None:
        pytest.skip("the test PostgreSQL DSN has a password of its own; this test needs trust auth")
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


async def test_a_literal_password_appears_in_no_response_event_or_state_file(
        api: Api, new_pg_db: NewDatabase, state_url: str) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, 2_000, table="users")
    secret_source, secret_target = with_password(source, PASSWORD), with_password(target, PASSWORD)

    bodies: list[str] = []
    async with api.client.ws_connect(EVENTS, headers=AUTH) as ws:
        status, text = await raw(api, "POST", "/api/migrations/initialize",
                                 {"sourceDB": secret_source, "targetDB": secret_target})
        assert status == 200, text
        bodies.append(text)
        mid = json.loads(text)["migration"]["id"]
        for method, path, body in (("POST", "/api/migrations/plan", {"tables": ["users"], "batchSize": 500}),
                                   ("POST", "/api/migrations/execute", {})):
            status, text = await raw(api, method, path, body)
            assert status in (200, 202), text
            bodies.append(text)
        events: list[str] = []
        while not events or json.loads(events[-1])["type"] != "report":
            msg = await ws.receive(timeout=30)
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            events.append(msg.data)
    assert json.loads(events[-1])["summary"]["status"] == "completed"
    assert await pg.count_rows(target, "users") == 2_000

    for path in ("/api/migrations/summary", "/api/migrations", f"/api/migrations/{mid}", "/api/migrations/log",
                 f"/api/migrations/{mid}/plan", "/api/migrations/rejects"):
        status, text = await raw(api, "GET", path)
        assert status == 200, f"GET {path} -> {status}: {text}"
        bodies.append(text)
    assert "***" in json.loads(bodies[0])["migration"]["source"]

    leaks = [b for b in bodies + events if PASSWORD in b]
    assert not leaks, leaks[:3]
    store_file = Path(state_url.removeprefix("sqlite:///"))
    files = [p for p in store_file.parent.iterdir() if p.name.startswith(store_file.name)]
    assert store_file in files
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), f"the password is stored in {path}"


async def test_a_var_reference_is_kept_in_the_spec_and_resolved_from_the_environment(
        api: Api, new_pg_db: NewDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATOR_TEST_PG_PASSWORD", PASSWORD)
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, 1_000, table="users")
    by_reference = (with_password(source, "${MIGRATOR_TEST_PG_PASSWORD}"),
                    with_password(target, "${MIGRATOR_TEST_PG_PASSWORD}"))
    mid = await api.start(*by_reference, tables=["users"], batchSize=250)
    assert (await api.wait_status("completed", "failed", migration=mid))["status"] == "completed"
    assert await pg.count_rows(target, "users") == 1_000

    status, text = await raw(api, "GET", f"/api/migrations/{mid}")
    assert status == 200, text
    assert PASSWORD not in text
    spec = json.loads(text)["migration"]["spec"]
    assert (spec["source"], spec["target"]) == by_reference


async def test_metrics_count_the_rows_and_batches_of_a_run(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, 3_000, table="users")
    mid = await api.start(source, target, tables=["users"], batchSize=500)
    assert (await api.wait_status("completed", "failed", migration=mid))["status"] == "completed"
    batches = sum(1 for e in await api.get(f"/api/migrations/{mid}/log") if e["message"].startswith("Batch "))
    assert batches >= 6

    async with api.client.get("/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("migrator_rows_total", (("outcome", "migrated"),))] == 3_000
    assert samples[("migrator_batches_total", ())] == batches
    buckets = {dict(labels)["le"]: value for (name, labels), value in samples.items()
               if name == "migrator_batch_seconds_bucket"}
    assert len(buckets) > 3 and buckets["+Inf"] == batches
    assert list(buckets.values()) == sorted(buckets.values())
    assert samples[("migrator_batch_seconds_count", ())] == batches
