"""Property: whatever a client sends to any operation of the OpenAPI document, the answer is
never a 5xx, is JSON (but for /metrics and rejects as CSV), carries the error envelope when it
is an error, and uses a status the document lists for that operation.

Requests are drawn from the document itself (GET /api/openapi.json): path ids are the id of a
real PostgreSQL-backed migration or arbitrary text, query parameters follow their schemas or
are arbitrary text, bodies are built from the operation's requestBody schema, or are arbitrary
JSON, or arbitrary bytes. File URLs in generated bodies point inside the data folder."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import NewDatabase
from tests.support.api import AUTH, Api
from tests.support.bigtable import create_big_table
from tests.support.csvtext import write_csv

Schema = Mapping[str, Any]
WEBSOCKET = "/api/migrations/events"
METHODS = ("get", "post", "put", "delete", "patch")

JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=20))
ANY_JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    query: tuple[tuple[str, Schema], ...]
    body: Schema | None
    statuses: frozenset[int]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: bytes | None
    documented: frozenset[int]
    auth: str = "token"  # token | missing | wrong

    def __str__(self) -> str:
        return f"{self.method} {self.path} query={list(self.query)} body={self.body!r:.300} auth={self.auth}"


def operations(document: Mapping[str, Any]) -> list[Operation]:
    """Every path × method of an OpenAPI document but the WebSocket route."""
    found = []
    for path, item in document["paths"].items():
        if path == WEBSOCKET:
            continue
        for method, op in item.items():
            if method not in METHODS:
                continue
            query = tuple((p["name"], p.get("schema", {})) for p in op.get("parameters", []) if p["in"] == "query")
            content = op.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema") if content else None
            found.append(Operation(method.upper(), path, query, body, frozenset(int(s) for s in op["responses"])))
    return found


Hint = Callable[[str, Schema], "st.SearchStrategy[Any] | None"]
ANY_TEXT = st.text(max_size=30)


def from_schema(schema: Schema, hint: Hint, name: str = "") -> st.SearchStrategy[Any]:
    """Values valid for a JSON schema (the subset the service's document uses). `hint(name,
    schema)` may give the strategy for the property `name` (e.g. to mix meaningful URLs and
    table names into arbitrary text); None keeps the schema's own."""
    hinted = hint(name, schema)
    if hinted is not None:
        return hinted
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(*(from_schema({**schema, "type": k}, hint, name) for k in kind))
    if kind == "object":
        if schema.get("maxProperties") == 0:
            return st.just({})
        props: Mapping[str, Schema] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        if not props:
            extra = schema.get("additionalProperties")
            values = from_schema(extra, hint, name) if isinstance(extra, Mapping) else ANY_JSON
            keys = from_schema({"type": "string"}, hint, name)
            return st.just({}) | st.dictionaries(keys, values, max_size=3)
        return st.fixed_dictionaries(
            {k: from_schema(s, hint, k) for k, s in props.items() if k in required},
            optional={k: from_schema(s, hint, k) for k, s in props.items() if k not in required})
    if kind == "array":
        least = schema.get("minItems", 0)
        return st.lists(from_schema(schema.get("items", {}), hint, name), min_size=least, max_size=max(3, least))
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if kind == "number":
        low = schema.get("exclusiveMinimum", schema.get("minimum"))
        return st.floats(min_value=low, max_value=schema.get("maximum"), exclude_min="exclusiveMinimum" in schema,
                         allow_nan=False, allow_infinity=False)
    if kind == "string":
        return ANY_TEXT.filter(lambda s: len(s) >= schema.get("minLength", 0))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return ANY_JSON


def to_query(value: object) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


@st.composite
def requests(draw: st.DrawFn, ops: Sequence[Operation], migration_id: str, hint: Hint) -> Request:
    op = draw(st.sampled_from(ops))
    path = op.path
    if "{id}" in path:
        mid = draw(st.just(migration_id) | st.text(max_size=30))
        path = path.replace("{id}", quote(mid, safe=""))
    query = []
    for name, schema in op.query:
        if draw(st.booleans()):
            value = draw(from_schema(schema, hint, name).map(to_query) | st.text(max_size=20))
            query.append((name, value))
    if draw(st.integers(0, 9)) == 0:
        query.append((draw(st.text(min_size=1, max_size=8)), draw(st.text(max_size=8))))
    body = None
    if op.body is not None:
        built = from_schema(op.body, hint).map(lambda v: json.dumps(v).encode())
        body = draw(st.one_of(
            built,
            built,
            ANY_JSON.map(lambda v: json.dumps(v).encode()),
            st.binary(max_size=64),
        ))
    auth = draw(st.sampled_from(["token"] * 8 + ["missing", "wrong"]))
    return Request(op.method, path, tuple(query), body, op.statuses, auth)


@dataclass(frozen=True)
class Target:
    api: Api
    ops: list[Operation]
    migration_id: str
    hint: Hint

    def __repr__(self) -> str:  # hypothesis prints it with a failing example
        return f"Target(migration_id={self.migration_id!r}, {len(self.ops)} operations)"


@pytest.fixture
async def target(api: Api, new_pg_db: NewDatabase, data_dir: Path) -> Target:
    """A planned PostgreSQL → PostgreSQL migration of a 40-row table; CSV folders and a SQLite
    file inside the data folder, so that every URL the requests use is reachable (an unreachable
    one is a fair 502); and the operations of the service's OpenAPI document."""
    source, dest = await new_pg_db(), await new_pg_db()
    await create_big_table(source, 40, table="t")
    (data_dir / "inside").mkdir()
    (data_dir / "out").mkdir()
    write_csv(data_dir / "inside" / "people.csv", ["id", "name"], [[1, "ann"], [2, "bob"]])
    with contextlib.closing(sqlite3.connect(data_dir / "fuzz.db")) as db, db:
        db.execute("CREATE TABLE people (id integer PRIMARY KEY, name text)")
        db.execute("INSERT INTO people VALUES (1, 'ann'), (2, 'bob')")
    init = await api.post("/api/migrations/initialize", {"sourceDB": source, "targetDB": dest})
    mid = init["migration"]["id"]
    await api.post(f"/api/migrations/{mid}/plan", {"tables": ["t"], "batchSize": 10})
    document = await api.get("/api/openapi.json")
    ops = operations(document)
    assert {("POST", "/api/migrations/{id}/plan"), ("GET", "/metrics")} <= {(o.method, o.path) for o in ops}
    urls = st.sampled_from([source, dest, "csv:///inside", "csv:///out", "sqlite:///fuzz.db"])
    tables = st.sampled_from(["t", "people", "public.t"])

    def hint(name: str, schema: Schema) -> st.SearchStrategy[Any] | None:
        if schema.get("type") == "string" and name in ("sourceDB", "targetDB"):
            return st.one_of(urls, urls, urls, ANY_TEXT)
        if schema.get("type") == "string" and name in ("tables", "table", "targetTables", "rules", "transforms",
                                                       "dedupe"):
            return st.one_of(tables, tables, ANY_TEXT)
        if name == "timeout":  # a connect timeout of 1e-300 s makes a fair 502 ("timed out"), not a bug
            return st.floats(min_value=1, max_value=1e9)
        return None

    return Target(api, ops, mid, hint)


async def check(api: Api, request: Request) -> int:
    """Send `request` and check the answer's contract; its status."""
    headers = dict(AUTH) if request.auth == "token" else (
        {} if request.auth == "missing" else {"Authorization": "Bearer wrong-token"})
    async with api.client.request(request.method, request.path, params=list(request.query), data=request.body,
                                  headers=headers) as resp:
        status, content_type, raw = resp.status, resp.content_type, await resp.read()
    text = raw.decode(errors="replace")
    assert status < 500, f"{request} -> {status}: {text[:500]}"
    assert "Traceback" not in text, f"{request} -> {status}: {text[:500]}"
    bare = request.path.split("?")[0]
    if request.auth != "token" and bare.startswith("/api/"):  # every /api route, whatever else is wrong
        assert status == 401, f"{request} -> {status}: {text[:300]}"
        answer = orjson.loads(raw)
        assert answer["success"] is False and answer["error"]["code"] == "unauthorized", text[:300]
        return status
    if bare.endswith("/report") and status == 200 and content_type == "text/markdown":
        assert ("format", "md") in request.query, request
        return status
    if bare == "/metrics" and status == 200:
        assert content_type == "text/plain", f"{request} -> {content_type}"
        return status
    if bare.endswith("/rejects") and status == 200 and content_type == "text/csv":
        assert ("format", "csv") in request.query, request
        return status
    assert content_type == "application/json", f"{request} -> {status} {content_type}: {text[:300]}"
    answer = orjson.loads(raw)
    if status >= 400:
        assert isinstance(answer, dict) and answer["success"] is False, f"{request} -> {status}: {text[:300]}"
        error = answer["error"]
        assert isinstance(error["code"], str) and error["code"], f"{request}: {text[:300]}"
        assert isinstance(error["message"], str) and error["message"], f"{request}: {text[:300]}"
    elif isinstance(answer, dict) and "success" in answer:
        assert answer["success"] is True, f"{request} -> {status}: {text[:300]}"
    assert status in request.documented, f"{request} -> {status} (documented: {sorted(request.documented)}): {text[:300]}"
    return status


@settings(max_examples=600, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
async def test_no_request_built_from_the_openapi_document_gets_a_5xx_or_a_bare_error(
        target: Target, data: st.DataObject) -> None:
    request = data.draw(requests(target.ops, target.migration_id, target.hint), label="request")
    await check(target.api, request)
