"""Every way a client can ask wrongly gets a JSON error body (DESIGN.md §3) with a fitting
status and a message that names what was wrong — never a 500, never a traceback."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.core.settings import Settings
from tests.conftest import NewDatabase
from tests.support.api import AUTH, Api
from tests.support.bigtable import create_big_table
from tests.support.csvtext import write_csv

CLOSED = "postgresql://u@127.0.0.1:1/db"  # nothing listens on port 1
UNKNOWN_ID = "no-such-migration-0000"


async def send(api: Api, method: str, path: str, *, raw: bytes | None = None,
               body: object = None) -> tuple[int, str, str]:
    """Status, content type and text of an answer; raw bytes or a JSON body."""
    kwargs: dict[str, Any] = {"headers": dict(AUTH)}
    if raw is not None:
        kwargs["data"] = io.BytesIO(raw)
    elif body is not None:
        kwargs["json"] = body
    async with api.client.request(method, path, **kwargs) as resp:
        return resp.status, resp.content_type, await resp.text()


async def error(api: Api, method: str, path: str, status: int, code: str | set[str], *,
                raw: bytes | None = None, body: object = None) -> tuple[str, object]:
    """Send, check the status and the error envelope and code; the message and details."""
    got, content_type, text = await send(api, method, path, raw=raw, body=body)
    assert got == status, f"{method} {path} -> {got}: {text}"
    assert "Traceback" not in text
    assert content_type == "application/json", text
    answer = orjson.loads(text)
    assert answer["success"] is False
    assert set(answer["error"]) <= {"code", "message", "details"}
    codes = {code} if isinstance(code, str) else code
    assert answer["error"]["code"] in codes, answer
    message = answer["error"]["message"]
    assert isinstance(message, str) and message
    return message, answer["error"].get("details")


@pytest.fixture
async def dsns(new_pg_db: NewDatabase) -> tuple[str, str]:
    """A source with a small table `users` (200 rows) and an empty target."""
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, 200, table="users")
    return source, target


@pytest.fixture
async def initialized(api: Api, dsns: tuple[str, str]) -> str:
    """The id of an initialized (not planned) migration between `dsns`."""
    init = await api.post("/api/migrations/initialize", {"sourceDB": dsns[0], "targetDB": dsns[1]})
    return str(init["migration"]["id"])


@pytest.fixture
async def completed(api: Api, dsns: tuple[str, str]) -> str:
    mid = await api.start(*dsns, tables=["users"], batchSize=50)
    await api.wait_status("completed", migration=mid)
    return mid


# -- state ----------------------------------------------------------------------------------------

async def test_execute_before_plan_is_409_asking_to_plan_first(api: Api, initialized: str) -> None:
    message, _ = await error(api, "POST", "/api/migrations/execute", 409, "wrong_state", body={})
    assert "plan" in message.lower() and initialized in message


async def test_pause_of_a_migration_that_is_not_running_is_409(api: Api, initialized: str) -> None:
    message, _ = await error(api, "POST", f"/api/migrations/{initialized}/pause", 409, "wrong_state", body={})
    assert "initialized" in message and "paus" in message


async def test_resume_of_a_completed_migration_is_409(api: Api, completed: str) -> None:
    message, _ = await error(api, "POST", f"/api/migrations/{completed}/resume", 409, "wrong_state", body={})
    assert "completed" in message


async def test_cancel_of_a_completed_migration_is_409(api: Api, completed: str) -> None:
    message, _ = await error(api, "POST", f"/api/migrations/{completed}/cancel", 409, "wrong_state", body={})
    assert "completed" in message
    assert (await api.summary(completed))["status"] == "completed"


async def test_plan_of_a_completed_migration_is_409(api: Api, completed: str) -> None:
    message, _ = await error(api, "POST", f"/api/migrations/{completed}/plan", 409, "wrong_state",
                             body={"tables": ["users"]})
    assert "completed" in message and "plan" in message


async def test_plan_of_an_executing_migration_is_409(api: Api, new_pg_db: NewDatabase) -> None:
    source, target = await new_pg_db(), await new_pg_db()
    await create_big_table(source, 50_000, table="big")
    mid = await api.start(source, target, tables=["big"], batchSize=500, parallelBatches=1)
    try:
        message, _ = await error(api, "POST", f"/api/migrations/{mid}/plan", 409, "wrong_state",
                                 body={"tables": ["big"]})
        assert "executing" in message
    finally:
        await api.post(f"/api/migrations/{mid}/cancel", status=None)
    assert (await api.summary(mid))["status"] in ("cancelled", "completed")


# -- plan input -----------------------------------------------------------------------------------

async def test_plan_with_a_table_that_does_not_exist_is_400_naming_it(api: Api, initialized: str) -> None:
    message, _ = await error(api, "POST", "/api/migrations/plan", 400, "unknown_table",
                             body={"tables": ["users", "no_such_table"]})
    assert "no_such_table" in message
    assert (await api.summary(initialized))["status"] == "initialized"


@pytest.mark.parametrize(("options", "named"), [
    ({"tables": "users"}, "tables"),
    ({"tables": ["users"], "batchSize": "big"}, "batchSize"),
    ({"tables": ["users"], "batchSize": 0}, "batchSize"),
    ({"tables": ["users"], "parallelBatches": True}, "parallelBatches"),
    ({"tables": ["users"], "batchsize": 10}, "batchsize"),
])
async def test_plan_options_of_the_wrong_type_are_400_naming_the_option(
        api: Api, initialized: str, options: dict[str, object], named: str) -> None:
    message, details = await error(api, "POST", "/api/migrations/plan", 400, "invalid_spec", body=options)
    assert f"{named} " in message or f"'{named}'" in message, message
    assert isinstance(details, list) and len(details) == 1


@pytest.mark.parametrize(("body", "named"), [
    ({"sourceDB": 42, "targetDB": "postgresql://u@localhost/db"}, "sourceDB"),
    ({"sourceDB": "postgresql://u@localhost/db", "targetDB": ["x"]}, "targetDB"),
    ({"sourceDB": "postgresql://u@localhost/db"}, "targetDB"),
])
async def test_initialize_with_a_field_of_the_wrong_type_is_400_naming_it(
        api: Api, body: dict[str, object], named: str) -> None:
    message, details = await error(api, "POST", "/api/migrations/initialize", 400, "invalid_input", body=body)
    assert named in message
    assert details == {"field": named}


@pytest.mark.parametrize("raw", [b'{"sourceDB": "postgresql://u@h/db",', b"not json at all", b"\xff\xfe{}"])
async def test_a_malformed_json_body_is_400(api: Api, raw: bytes) -> None:
    message, _ = await error(api, "POST", "/api/migrations/initialize", 400, "invalid_input", raw=raw)
    assert "JSON" in message


async def test_a_json_array_body_is_400_asking_for_an_object(api: Api, initialized: str) -> None:
    message, _ = await error(api, "POST", "/api/migrations/plan", 400, "invalid_input", raw=b'["users"]')
    assert "object" in message and "list" in message


# -- URLs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["ftp://x/y", "oracle://scott:tiger@db/orcl", "no-scheme-at-all"])
async def test_an_unknown_url_scheme_is_400(api: Api, pg_dsn: str, url: str) -> None:
    message, details = await error(api, "POST", "/api/migrations/initialize", 400, "invalid_url",
                                   body={"sourceDB": url, "targetDB": pg_dsn})
    assert "sourceDB" in message and "scheme" in message
    assert "tiger" not in message
    assert details == {"field": "sourceDB"}


@pytest.mark.parametrize("side", ["source", "target"])
async def test_an_unreachable_database_is_502_saying_which_side_and_why(
        api: Api, pg_dsn: str, settings: Settings, side: str) -> None:
    body = {"sourceDB": CLOSED, "targetDB": pg_dsn} if side == "source" else {"sourceDB": pg_dsn, "targetDB": CLOSED}
    began = time.monotonic()
    message, _ = await error(api, "POST", "/api/migrations/initialize", 502,
                             {"endpoint_error", "transient_error", "terminal_error"}, body=body)
    assert time.monotonic() - began < settings.timeout + 1
    assert message.startswith(f"{side} database unreachable"), message
    assert "127.0.0.1:1" in message and "refused" in message.lower(), message
    assert (await api.get("/api/migrations"))["migrations"] == []


@pytest.fixture
def inside(data_dir: Path) -> Path:
    """A CSV folder inside the data folder."""
    folder = data_dir / "inside"
    folder.mkdir()
    write_csv(folder / "people.csv", ["id", "name"], [[1, "ann"], [2, "bob"]])
    return folder


@pytest.mark.parametrize("field", ["sourceDB", "targetDB"])
@pytest.mark.parametrize("url", ["csv:///../outside", "csv:///inside/../../outside", "csv:////etc",
                                 "sqlite:////tmp/x.db", "csv:///escape", "sqlite:///escape/x.db",
                                 "csv:///%2e%2e/outside", "csv:///inside/%2E%2E/%2e%2e/outside",
                                 "sqlite:///%2e%2e/x.db", "csv:///%2fetc"])
async def test_a_file_url_outside_the_data_folder_is_400(
        api: Api, inside: Path, data_dir: Path, tmp_path: Path, field: str, url: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (data_dir / "escape").symlink_to(outside, target_is_directory=True)
    other = "targetDB" if field == "sourceDB" else "sourceDB"
    message, details = await error(api, "POST", "/api/migrations/initialize", 400, "invalid_url",
                                   body={field: url, other: "csv:///inside"})
    assert field in message and "outside the data folder" in message
    assert details == {"field": field}
    assert not (outside / "x.db").exists()


@pytest.mark.parametrize("url", ["csv:///in\x00side", "sqlite:///x\x00.db", "csv:///inside%00"])
async def test_a_nul_in_a_file_url_is_400(api: Api, inside: Path, url: str) -> None:
    message, details = await error(api, "POST", "/api/migrations/initialize", 400, "invalid_url",
                                   body={"sourceDB": url, "targetDB": "csv:///inside"})
    assert "sourceDB" in message and "NUL" in message
    assert details == {"field": "sourceDB"}


async def test_a_csv_folder_inside_the_data_folder_is_accepted(api: Api, inside: Path) -> None:
    init = await api.post("/api/migrations/initialize", {"sourceDB": "csv:///inside", "targetDB": "csv:///out"})
    assert init["migration"]["status"] == "initialized"
    plan = (await api.post("/api/migrations/plan", {"tables": ["people"]}))["plan"]
    assert plan["totalRecords"] == 2


# -- not found ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "verb"), [("GET", "summary"), ("POST", "plan"), ("POST", "execute"),
                                              ("GET", "log")])
async def test_an_unknown_migration_id_is_404(api: Api, initialized: str, method: str, verb: str) -> None:
    body = {"tables": ["users"]} if verb == "plan" else ({} if method == "POST" else None)
    message, _ = await error(api, method, f"/api/migrations/{UNKNOWN_ID}/{verb}", 404, "not_found", body=body)
    assert UNKNOWN_ID in message
    assert (await api.summary(initialized))["status"] == "initialized"


async def test_summary_before_any_migration_is_404_saying_to_initialize(api: Api) -> None:
    message, _ = await error(api, "GET", "/api/migrations/summary", 404, "not_found")
    assert "initialize" in message


async def test_an_unknown_route_is_a_json_404(api: Api) -> None:
    message, _ = await error(api, "GET", "/api/migrations/x/y/z", 404, "not_found")
    assert "/api/migrations/x/y/z" in message
    message, _ = await error(api, "GET", "/nothing-here", 404, "not_found")
    assert "/nothing-here" in message


@pytest.mark.parametrize(("method", "path"), [("POST", "/api/migrations/summary"), ("DELETE", "/health"),
                                              ("PUT", "/api/migrations/plan")])
async def test_a_wrong_method_is_a_json_405(api: Api, method: str, path: str) -> None:
    message, _ = await error(api, method, path, 405, "method_not_allowed", body={} if method == "PUT" else None)
    assert method in message and path in message


async def test_a_body_over_one_mebibyte_is_a_json_413(api: Api) -> None:
    big = orjson.dumps({"sourceDB": "x" * (1024 * 1024 + 16), "targetDB": "y"})
    await error(api, "POST", "/api/migrations/initialize", 413, "body_too_large", raw=big)
    assert (await api.get("/api/migrations"))["migrations"] == []


# -- query parameters -----------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "named"), [("level=LOUD", "level"), ("limit=0", "limit"), ("limit=abc", "limit"),
                                              ("after=-1", "after"), ("limit=1e3", "limit")])
async def test_a_bad_log_query_parameter_is_400_naming_it(api: Api, initialized: str, query: str, named: str) -> None:
    for path in ("/api/migrations/log", f"/api/migrations/{initialized}/log"):
        message, details = await error(api, "GET", f"{path}?{query}", 400, "invalid_input")
        assert f"'{named}'" in message
        assert details == {"field": named}


async def test_rejects_in_an_unknown_format_is_400_naming_it(api: Api, initialized: str) -> None:
    message, details = await error(api, "GET", "/api/migrations/rejects?format=xml", 400, "invalid_input")
    assert "'format'" in message and "xml" in message
    assert details == {"field": "format"}


@pytest.mark.parametrize("options", [{"targetTables": {"people": "../../outside"}}, {"tables": ["../people"]},
                                     {"targetTables": {"people": "a/b"}}])
async def test_table_names_that_would_lead_out_of_a_folder_are_400(
        api: Api, inside: Path, data_dir: Path, options: dict[str, object]) -> None:
    await api.post("/api/migrations/initialize", {"sourceDB": "csv:///inside", "targetDB": "csv:///out"})
    message, _ = await error(api, "POST", "/api/migrations/plan", 400, "invalid_spec", body=options)
    assert "is not a table name" in message
    assert not (data_dir.parent / "outside.csv").exists()


@pytest.mark.parametrize("url", ["csv:///${HOME}", "postgresql://u@${HOSTNAME}/db", "sqlite:///${PATH}.db"])
async def test_a_var_outside_the_credentials_is_400_and_its_value_never_shown(
        api: Api, inside: Path, url: str) -> None:
    message, _ = await error(api, "POST", "/api/migrations/initialize", 400, "invalid_url",
                             body={"sourceDB": url, "targetDB": "csv:///inside"})
    assert "may only stand for a user name or password" in message
    assert os.environ.get("HOME", "/nonexistent") not in message
