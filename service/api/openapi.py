"""The OpenAPI 3.1 description of every route and body (`GET /api/openapi.json`)."""

from __future__ import annotations

from functools import cache

from service import __version__

_ERROR = {
    "type": "object", "required": ["success", "error"],
    "properties": {"success": {"const": False}, "error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}},
}
_URL = {"type": "string", "minLength": 1, "description": "postgresql://…, mongodb://…, csv:///dir, sqlite:///file.db; "
        "${VAR} is replaced from the server's environment"}
_TYPE_NAME = {"type": "string", "description": "string, integer, float, decimal(p,s), boolean, date, timestamp, "
              "json, binary, uuid, objectid, or [type]"}
_SPEC = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "tables": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        "targetTables": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
        "batchSize": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "parallelBatches": {"type": "integer", "minimum": 1, "maximum": 32},
        "parallelTables": {"type": "integer", "minimum": 1, "maximum": 16},
        "verify": {"enum": [True, False, "deep", "counts", "off"], "description": "the verification at the end of a run"},
        "validation": {"type": "boolean"},
        "retryFailed": {"type": "boolean"},
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "mode": {"enum": ["insert", "upsert", "replace"]},
        "onError": {"enum": ["reject", "skip_batch", "stop"]},
        "rules": {"type": "object", "description": "table -> column -> {type, required, format, min, max, enum, "
                  "pattern, unique}"},
        "transforms": {"type": "object", "description": "table -> list of {rename|lowercase|trim|default|cast|drop}"},
        "dedupe": {"type": "object", "description": "table -> {key: [columns], keep: first|last|reject|fix, "
                   "againstTarget: bool}"},
        "csv": {"type": "object", "description": "delimiter, quote, escape, encoding, header, nullValues, types, …"},
        "name": {"type": "string"},
    },
}
_SUMMARY = {
    "type": "object",
    "properties": {k: {} for k in ("id", "status", "totalRecords", "migratedCount", "failedCount", "rejectedCount", "skippedCount", "readCount", "estimatedSeconds", "estimateRatio",
                                   "progress", "duration", "durationSeconds", "startTime", "endTime", "throughput",
                                   "etaSeconds", "tables")},
}
_LOG = {
    "type": "object", "required": ["timestamp", "level", "message"],
    "properties": {"id": {"type": "integer"}, "timestamp": {"type": "string"},
                   "level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]}, "message": {"type": "string"},
                   "table": {"type": ["string", "null"]}, "batch": {"type": "integer"}, "recordId": {},
                   "value": {"type": "string"}, "error": {"type": "string"}},
}
_EMPTY = {"type": "object", "maxProperties": 0}
_RESUME = {"type": "object", "additionalProperties": False,
           "properties": {"sourceDB": _URL, "targetDB": _URL},
           "description": "empty, or the URLs again when the stored ones had a literal password (masked at rest)"}


def _ok(description: str, schema: dict[str, object] | None = None, content_type: str = "application/json",
        status: str = "200") -> dict[str, object]:
    return {status: {"description": description,
                     "content": {content_type: {"schema": schema or {"type": "object"}}}}}


def _errors(*codes: int) -> dict[str, object]:
    return {str(c): {"description": _REASONS[c], "content": {"application/json": {"schema": _ERROR}}}
            for c in (401, *codes)}


def _switching() -> dict[str, object]:
    return {"101": {"description": "switching protocols"}}


_REASONS = {400: "bad input (names the field)", 401: "no or wrong API token", 403: "WebSocket Origin not allowed",
            404: "no such migration",
            409: "the migration is not in a state that allows this", 502: "a database could not be reached"}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def _verb(summary: str, body: dict[str, object] | None, ok: dict[str, object], *codes: int) -> dict[str, object]:
    op: dict[str, object] = {"summary": summary, "responses": {**ok, **_errors(*codes)}}
    if body is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return op


def _current_and_by_id(path: str, ops: dict[str, dict[str, object]]) -> dict[str, object]:
    by_id = {m: {**op, "parameters": [_ID]} for m, op in ops.items()}
    return {f"/api/migrations/{path}": ops, f"/api/migrations/{{id}}/{path}": by_id}


@cache
def document() -> dict[str, object]:
    paths: dict[str, object] = {
        "/health": {"get": {"summary": "liveness (no token)", "security": [],
                            "responses": _ok("status, version, uptime")}},
        "/metrics": {"get": {"summary": "Prometheus metrics (no token)", "security": [],
                             "responses": _ok("text format", {"type": "string"}, "text/plain")}},
        "/api/openapi.json": {"get": _verb("this document", None, _ok("OpenAPI 3.1"))},
        "/api/migrations": {"get": {**_verb("history, newest first", None, _ok("{success, migrations}"), 400),
                                    "parameters": [{"name": "limit", "in": "query",
                                                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}]}},
        "/api/migrations/events": {"get": {
            "summary": "WebSocket of live events: snapshot, status, progress, log, plan, report; send "
                       "{\"action\": \"pause\"|\"resume\"|\"cancel\"}",
            "parameters": [{"name": "migration", "in": "query", "schema": {"type": "string"}},
                           {"name": "token", "in": "query", "schema": {"type": "string"}}],
            "responses": _switching() | _errors(403, 404)}},
        "/api/migrations/initialize": {"post": _verb(
            "test both connections and create a migration",
            {"type": "object", "required": ["sourceDB", "targetDB"],
             "properties": {"sourceDB": _URL, "targetDB": _URL}},
            _ok("{success, message, migration}"), 400, 502)},
        "/api/migrations/{id}": {"get": {**_verb("one migration: record, spec (passwords masked) and summary",
                                                 None, _ok("{success, migration, summary}"), 404),
                                         "parameters": [_ID]}},
    }
    per_run = {
        "plan": {"post": _verb("plan with spec options (tables, batchSize, rules, transforms, …)", _SPEC,
                               _ok("{success, plan}"), 400, 404, 409, 502),
                 "get": _verb("the plan made in this service process", None, _ok("{success, plan}"), 404, 409)},
        "execute": {"post": _verb("start the planned migration in the background", _EMPTY,
                                  _ok("{success, message, migration}", status="202"), 400, 404, 409)},
        "pause": {"post": _verb("stop reading; batches already read are written", _EMPTY,
                                _ok("{success, status}"), 400, 404, 409)},
        "resume": {"post": _verb("continue a paused run, or an interrupted/failed/cancelled one from its "
                                 "checkpoint", _RESUME, _ok("{success, status}"), 400, 404, 409, 502)},
        "cancel": {"post": _verb("stop the run; the last checkpoint stays valid", _EMPTY,
                                 _ok("{success, status}"), 400, 404, 409)},
        "summary": {"get": _verb("counts, progress, duration, throughput, ETA, per table", None,
                                 _ok("{success, summary}", {"type": "object", "properties": {
                                     "success": {"const": True}, "summary": _SUMMARY}}), 404)},
        "log": {"get": {**_verb("log entries, oldest first", None, _ok("array of entries", {
                    "type": "array", "items": _LOG}), 400, 404),
                        "parameters": [
                            {"name": "level", "in": "query", "schema": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]}},
                            {"name": "table", "in": "query", "schema": {"type": "string"}},
                            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                         "maximum": 100000}},
                            {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}}]},
                "delete": _verb("delete the log entries", None, _ok("{success, deleted}"), 404)},
        "rejects": {"get": {**_verb("rejected rows with reasons", None, _ok("{success, count, rejects} or CSV"),
                                    400, 404),
                            "parameters": [{"name": "table", "in": "query", "schema": {"type": "string"}},
                                           {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}},
                                           {"name": "layout", "in": "query", "schema": {"enum": ["rows", "summary"]}},
                                           {"name": "limit", "in": "query",
                                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000000}}]}},
        "verify": {"post": _verb("compare the target with the source minus the rejects: counts, and with deep "
                                 "row checksums naming missing, extra and different keys; integrity (PostgreSQL)",
                                 {"type": "object", "additionalProperties": False,
                                  "properties": {"deep": {"type": "boolean"}, "sourceDB": _URL, "targetDB": _URL}},
                                 _ok("{success, report: {ok, tables: [...]}}"), 400, 404, 409, 502)},
        "rollback": {"post": _verb("return the target to its state before the run: drop what it created, delete "
                                   "what it inserted, restore what it overwrote; again to finish an interrupted one",
                                   _RESUME, _ok("{success, status}"), 400, 404, 409, 502)},
        "sync": {"post": _verb("incremental migrations: the next sync pass (pass 0, everything, when it is "
                               "planned); with every, a pass every that many seconds until cancel or cutover",
                               {"type": "object", "additionalProperties": False,
                                "properties": {"every": {"type": ["number", "null"], "minimum": 1, "maximum": 86400},
                                               "sourceDB": _URL, "targetDB": _URL}},
                               _ok("{success, migration}", status="202"), 400, 404, 409, 502)},
        "cutover": {"post": _verb("a last sync pass, a deep verification, the change-capture slot dropped: "
                                  "reports lag (0) and the verification", _RESUME,
                                  _ok("{success, migrationId, status, lagRows, ok, report}"), 400, 404, 409, 502)},
        "report": {"get": {**_verb("the latest verification report, as JSON or Markdown", None,
                                   _ok("{success, report} or text/markdown"), 400, 404),
                           "parameters": [{"name": "format", "in": "query", "schema": {"enum": ["json", "md"]}}]}},
    }
    for name, ops in per_run.items():
        paths.update(_current_and_by_id(name, ops))
    return {
        "openapi": "3.1.0",
        "info": {"title": "migrator", "version": __version__,
                 "description": "Control API of the migration service. Verbs under /api/migrations/ act on the most "
                                "recent migration; under /api/migrations/{id}/ on that one."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
