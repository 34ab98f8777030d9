"""The migration spec (DESIGN.md §5), from a plan body, a YAML/JSON file or CLI flags."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson

from service.connectors.csv.dialect import CsvOptions
from service.connectors.mongo.options import MongoOptions
from service.core.errors import InvalidSpec
from service.core.urls import storable
from service.sync.options import SyncOptions

Mode = Literal["insert", "upsert", "replace"]
OnError = Literal["reject", "skip_batch", "stop"]
MODES = ("insert", "upsert", "replace")
ON_ERROR = ("reject", "skip_batch", "stop")
KNOWN = {
    "source", "target", "tables", "batchSize", "parallelBatches", "validation", "retryFailed", "timeout",
    "mode", "onError", "rules", "transforms", "dedupe", "csv", "mongo", "targetTables", "name", "maxErrors",
    "sample", "parallelTables", "verify", "incremental", "detectDeletes",
}
# Keys that decide what a run does: two runs with equal values are the same migration (resume).
_IDENTITY = ("source", "target", "tables", "targetTables", "mode", "rules", "transforms", "dedupe", "csv", "mongo",
             "incremental", "detectDeletes")


@dataclass(frozen=True)
class MigrationSpec:
    source: str
    target: str
    tables: tuple[str, ...] | None = None
    target_tables: Mapping[str, str] = field(default_factory=dict)
    batch_size: int = 5000
    parallel_batches: int = 3
    parallel_tables: int = 1  # tables of one level of the load order (plan.order) loaded at once
    verify: Literal["off", "counts", "deep"] = "counts"  # the verification at the end of a run
    validation: bool = True
    retry_failed: bool = True  # transient errors: the table starts again from its checkpoint …
    retry_attempts: int = 5  # … at most this many times per table
    retry_backoff: float = 0.5  # seconds before the first retry, doubled each time (with jitter) …
    retry_max_backoff: float = 30.0  # … up to this
    timeout: float = 30.0
    mode: Mode = "insert"
    on_error: OnError = "reject"
    rules: Mapping[str, object] = field(default_factory=dict)
    transforms: Mapping[str, object] = field(default_factory=dict)
    dedupe: Mapping[str, object] = field(default_factory=dict)
    csv: CsvOptions = field(default_factory=CsvOptions)
    mongo: MongoOptions = field(default_factory=MongoOptions)
    max_errors: int | None = None  # rejected rows allowed before the run stops
    max_errors_percent: float | None = None  # … or as a share of the rows read
    sync: SyncOptions = field(default_factory=SyncOptions)  # incremental sync: later passes copy changes
    sample: int | None = None  # plan only: a dry run of the quality steps on this many rows per table
    raw: Mapping[str, object] = field(default_factory=dict, compare=False)

    def target_name(self, table: str) -> str:
        return self.target_tables.get(table, table.rsplit(".", 1)[-1] if "." in table else table)

    def storable(self) -> dict[str, object]:
        """The spec as kept in the state store: literal passwords masked, `${VAR}` kept."""
        return {**self.raw, "source": storable(self.source), "target": storable(self.target)}

    def fingerprint(self) -> str:
        """Same value for the same migration asked again (so a re-run resumes it)."""
        ident = {k: self.raw.get(k) for k in _IDENTITY}
        return hashlib.sha256(orjson.dumps(ident, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]

    @classmethod
    def from_file(cls, path: Path, overrides: Mapping[str, object] | None = None) -> MigrationSpec:
        try:
            text = path.read_text()
        except OSError as exc:
            raise InvalidSpec([f"cannot read spec file {path}: {exc.strerror}"]) from None
        import yaml  # only spec files need it

        try:
            data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else orjson.loads(text)
        except (yaml.YAMLError, orjson.JSONDecodeError) as exc:
            kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
            raise InvalidSpec([f"spec file {path} is not valid {kind}: {exc}"]) from None
        if not isinstance(data, dict):
            raise InvalidSpec([f"spec file {path} must hold a mapping of options"])
        return cls.from_dict({**data, **(overrides or {})})

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> MigrationSpec:
        """Validate every option and report every problem at once."""
        problems: list[str] = [f"unknown option {k!r}" for k in d if k not in KNOWN]
        for k in ("source", "target"):
            if not isinstance(d.get(k), str) or not str(d.get(k)).strip():
                problems.append(f"{k} is required (a URL such as postgresql://… or csv:///dir)")
        tables = d.get("tables")
        if tables is not None and (
            not isinstance(tables, list) or not tables or not all(isinstance(t, str) and t for t in tables)
        ):
            problems.append("tables must be a non-empty list of table names")
        elif isinstance(tables, list) and len(set(tables)) != len(tables):
            problems.append("tables lists a table more than once")

        def integer(key: str, default: int, lo: int, hi: int) -> int:
            v = d.get(key, default)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                problems.append(f"{key} must be a whole number from {lo} to {hi}, not {v!r}")
                return default
            return v

        def boolean(key: str, default: bool) -> bool:
            v = d.get(key, default)
            if not isinstance(v, bool):
                problems.append(f"{key} must be true or false, not {v!r}")
                return default
            return v

        def choice(key: str, default: str, allowed: tuple[str, ...]) -> str:
            v = d.get(key, default)
            if v not in allowed:
                problems.append(f"{key} must be one of {', '.join(allowed)}, not {v!r}")
                return default
            return str(v)

        def mapping(key: str) -> Mapping[str, object]:
            v = d.get(key, {})
            if v is None:
                return {}
            if not isinstance(v, Mapping):
                problems.append(f"{key} must be a mapping of table -> settings")
                return {}
            return v

        batch_size = integer("batchSize", 5000, 1, 1_000_000)
        parallel = integer("parallelBatches", 3, 1, 32)
        parallel_tables = integer("parallelTables", 1, 1, 16)
        verify = d.get("verify", True)
        if verify not in (True, False, "deep", "counts", "off"):
            problems.append(f"verify must be true (counts), \"deep\" (checksums too) or false, not {verify!r}")
            verify = True
        timeout = d.get("timeout", 30)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            problems.append(f"timeout must be a positive number of seconds, not {timeout!r}")
            timeout = 30
        target_tables = mapping("targetTables")
        if not all(isinstance(v, str) and v for v in target_tables.values()):
            problems.append("targetTables must map source table -> target table name")
        # A table name becomes a file name for CSV and SQLite: none may reach out of its folder.
        for where, names in (("tables", tables if isinstance(tables, list) else []),
                             ("targetTables", [*target_tables, *target_tables.values()])):
            problems += [f"{where}: {name!r} is not a table name (no /, \\, .. or NUL)" for name in names
                         if isinstance(name, str) and _unsafe_name(name)]
        csv_opts = CsvOptions()
        raw_csv = d.get("csv")
        if raw_csv is not None and not isinstance(raw_csv, Mapping):
            problems.append("csv must be a mapping of CSV options")
        else:
            try:
                csv_opts = CsvOptions.from_spec(raw_csv)
            except InvalidSpec as exc:
                problems.extend(exc.problems)
        mongo_opts = MongoOptions()
        try:
            mongo_opts = MongoOptions.from_spec(d.get("mongo"))
        except InvalidSpec as exc:
            problems.extend(exc.problems)
        sync = SyncOptions()
        try:
            sync = SyncOptions.from_spec(d.get("incremental"), d.get("detectDeletes"))
        except InvalidSpec as exc:
            problems.extend(exc.problems)
        if sync.enabled and isinstance(tables, list):
            problems += [f"incremental.{t}: not among the spec's tables" for t in sync.tables if t not in tables]
        problems += _sync_conflicts(sync, d)
        max_errors, max_percent = _max_errors(d.get("maxErrors"), problems)
        retry = _retry(d.get("retryFailed", True), problems)
        sample = integer("sample", 1000, 1, 1_000_000) if "sample" in d else 0
        spec = cls(
            source=str(d.get("source", "")).strip(),
            target=str(d.get("target", "")).strip(),
            tables=tuple(tables) if isinstance(tables, list) else None,
            target_tables={str(k): str(v) for k, v in target_tables.items()},
            batch_size=batch_size,
            parallel_batches=parallel,
            parallel_tables=parallel_tables,
            verify="off" if verify in (False, "off") else "deep" if verify == "deep" else "counts",
            validation=boolean("validation", True),
            retry_failed=retry[0],
            retry_attempts=retry[1],
            retry_backoff=retry[2],
            retry_max_backoff=retry[3],
            timeout=float(timeout),
            mode=choice("mode", "insert", MODES),  # type: ignore[arg-type]
            on_error=choice("onError", "reject", ON_ERROR),  # type: ignore[arg-type]
            rules=mapping("rules"),
            transforms=mapping("transforms"),
            dedupe=mapping("dedupe"),
            csv=csv_opts,
            mongo=mongo_opts,
            max_errors=max_errors,
            max_errors_percent=max_percent,
            sync=sync,
            sample=sample or None,
            raw=dict(d),
        )
        if problems:
            raise InvalidSpec(problems)
        return spec


def _sync_conflicts(sync: SyncOptions, d: Mapping[str, object]) -> list[str]:
    """Steps a sync cannot combine with: duplicate detection and `unique` rules remember what they
    saw, and an update of a row is a second sight of its key; deletes compare the source's keys
    with the target's, which a transform may have changed."""
    problems = []
    def section(key: str) -> Mapping[str, object]:
        value = d.get(key)
        return value if isinstance(value, Mapping) else {}

    dedupe, rules, transforms = section("dedupe"), section("rules"), section("transforms")
    for table, opts in sync.tables.items():
        if dedupe.get(table):
            problems.append(f"dedupe.{table}: an incremental table is written by key (an updated row replaces "
                            "its old version); drop the dedupe")
        columns = rules.get(table)
        if isinstance(columns, Mapping):
            problems += [f"rules.{table}.{c}.unique: an incremental table's rows come back when they change; "
                         "rely on the target's unique index instead" for c, r in columns.items()
                         if isinstance(r, Mapping) and r.get("unique")]
        if table in transforms and (sync.detect_deletes or opts.capture):
            problems.append(f"transforms.{table}: deletes are found by the source's keys, which transforms may "
                            "change; drop detectDeletes/capture for this table or its transforms")
    return problems


def _unsafe_name(name: str) -> bool:
    return any(c in name for c in ("/", "\\", "\x00")) or name.startswith("..") or ".." in name.split(".")


def _retry(raw: object, problems: list[str]) -> tuple[bool, int, float, float]:
    """`retryFailed: true | false | {attempts: 5, backoff: 0.5, maxBackoff: 30}`."""
    if isinstance(raw, bool):
        return raw, 5, 0.5, 30.0
    if not isinstance(raw, Mapping):
        problems.append(f"retryFailed must be true, false or {{attempts, backoff, maxBackoff}}, not {raw!r}")
        return True, 5, 0.5, 30.0
    unknown = sorted(set(raw) - {"attempts", "backoff", "maxBackoff"})
    if unknown:
        problems.append(f"retryFailed has no option {', '.join(unknown)} (use attempts, backoff, maxBackoff)")
    attempts, backoff, most = raw.get("attempts", 5), raw.get("backoff", 0.5), raw.get("maxBackoff", 30.0)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 0 <= attempts <= 100:
        problems.append(f"retryFailed.attempts must be a whole number from 0 to 100, not {attempts!r}")
        attempts = 5
    for name, value in (("backoff", backoff), ("maxBackoff", most)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
            problems.append(f"retryFailed.{name} must be a number of seconds from 0 to 3600, not {value!r}")
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 3600 for v in (backoff, most))
    return attempts > 0, int(attempts), float(backoff) if ok else 0.5, float(most) if ok else 30.0


def _max_errors(raw: object, problems: list[str]) -> tuple[int | None, float | None]:
    """`maxErrors: 100` (rows) or `maxErrors: "5%"` (of the rows read)."""
    if raw is None:
        return None, None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw, None
    if isinstance(raw, str) and raw.strip().endswith("%"):
        try:
            percent = float(raw.strip()[:-1])
            if 0 <= percent <= 100:
                return None, percent
        except ValueError:
            pass
    problems.append(f"maxErrors must be a whole number of rows (e.g. 100) or a percentage (e.g. \"5%\"), not {raw!r}")
    return None, None
