"""`migrator` — serve the API (default), or run a migration headless with progress bars.

    migrator run SPEC.yaml [--batch-size N] [--parallel N] …
    migrator run --source URL --target URL [--tables a,b] [--batch-size N] [--parallel N]
    migrator sync SPEC.yaml [--every 10s | --cutover]
    migrator serve [--host H] [--port P]

Exit status: 0 when every row is migrated (rejects are reported, not fatal), 1 when the run
failed, 2 for bad input (URL, spec, unknown table), 130 when interrupted (run again to resume).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console

from service.core.batch import Reject
from service.core.errors import InvalidInput, MigratorError
from service.core.hosts import HostPolicy
from service.core.settings import Settings, load_settings
from service.quality.rejects import rows_csv
from service.runs.migration import Endpoints, Migration, create_or_resume, resolve
from service.runs.spec import MigrationSpec
from service.store import StateStore, open_state_store

if TYPE_CHECKING:
    from service.cli.progress import ProgressView


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="migrator", description="Move data between PostgreSQL, SQLite, CSV and MongoDB.")
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run a migration headless, with progress bars (re-run to resume)")
    _spec_arguments(run)
    run.add_argument("--batch-size", type=int, dest="batchSize")
    run.add_argument("--parallel", type=int, dest="parallelBatches")
    run.add_argument("--mode", choices=["insert", "upsert", "replace"])
    run.add_argument("--on-error", choices=["reject", "skip_batch", "stop"], dest="onError")
    run.add_argument("--timeout", type=float)
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--again", action="store_true",
                     help="run a spec that already completed once more (its rows are written again)")
    run.add_argument("--verbose", "-v", action="store_true", help="log what the run does to stderr")
    run.add_argument("--dry-run", action="store_true", dest="dry_run",
                     help="apply the spec's transforms, rules and dedupe to a sample of each table and report "
                          "what would fail; write nothing")
    run.add_argument("--sample", type=int, default=1000, help="rows per table for --dry-run (default 1000)")
    run.add_argument("--rejects", type=Path, metavar="DIR",
                     help="when the run ends, write each table's rejected rows, whole, to DIR/<table>.csv with "
                          "a _migrator_error column; corrected, DIR loads again as a CSV source")
    run.add_argument("--verify", choices=["counts", "deep", "off"],
                     help="the verification at the end of the run (default: the spec's, else counts)")
    plan = sub.add_parser("plan", help="show what a run would do: tables, counts, load order, target types, estimate")
    _spec_arguments(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    check = sub.add_parser("verify", help="verify the latest run of a spec: counts, and with --deep row checksums "
                                          "naming missing, extra and different keys (exit 1 when not ok)")
    _spec_arguments(check)
    check.add_argument("--deep", action="store_true", help="compare every row (checksums), not only counts")
    check.add_argument("--json", action="store_true", help="print the report as JSON, not Markdown")
    undo = sub.add_parser("rollback", help="return the target to its state before a migration's run (by id; "
                                           "`migrator` lists ids in its output, the API in GET /api/migrations)")
    undo.add_argument("id", help="the migration id, e.g. 20261125-193129-4ba252")
    undo.add_argument("--target", help="the target URL again, when the stored one had a literal password")
    undo.add_argument("--force", action="store_true",
                      help="roll back a migration still marked executing: its `migrator run` was killed outright "
                           "(make sure no process is still running it)")
    sync = sub.add_parser("sync", help="incremental migrations (spec `incremental`): the next sync pass of the "
                                       "spec's migration — the first copies everything — or, with --every, a pass "
                                       "every so often until Ctrl-C")
    _spec_arguments(sync)
    sync.add_argument("--every", type=_duration, metavar="DURATION",
                      help="keep syncing: a pass every DURATION (e.g. 10s, 5m, 1h, or seconds), showing the lag")
    sync.add_argument("--cutover", action="store_true",
                      help="the last pass: then the foreign keys, a deep verification and the capture slot dropped "
                           "(stop writing to the source first); exit 1 when the target does not match")
    sync.add_argument("--quiet", action="store_true", help="no progress bars")
    sync.add_argument("--verbose", "-v", action="store_true", help="log what the run does to stderr")
    demo = sub.add_parser("demo", help="write demo CSV data (users, products, orders) into the data folder")
    demo.add_argument("--folder", type=Path, help="where to write (default: $MIGRATOR_DATA_DIR/demo)")
    serve = sub.add_parser("serve", help="start the HTTP service (default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    return p


def _resolve(spec: MigrationSpec, settings: Settings) -> Endpoints:
    """The spec's endpoints, database hosts checked against MIGRATOR_ALLOWED_HOSTS."""
    return resolve(spec, settings.data_dir, hosts=HostPolicy(settings.allowed_hosts))


def _duration(text: str) -> float:
    """`10s`, `5m`, `1h` or plain seconds, from 1 s to a day."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 10s, 5m, 1h)")
    seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not 1 <= seconds <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: give from 1 second to 24 hours")
    return seconds


def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", type=Path, help="a YAML or JSON spec file")
    parser.add_argument("--source", help="source URL")
    parser.add_argument("--target", help="target URL")
    parser.add_argument("--tables", help="comma-separated tables (default: all)")


def _spec(args: argparse.Namespace) -> MigrationSpec:
    overrides: dict[str, object] = {}
    for key in ("source", "target", "batchSize", "parallelBatches", "mode", "onError", "timeout", "verify"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    if args.tables:
        overrides["tables"] = [t.strip() for t in args.tables.split(",") if t.strip()]
    if args.spec is not None:
        return MigrationSpec.from_file(args.spec, overrides)
    return MigrationSpec.from_dict(overrides)


async def _dry_run(spec: MigrationSpec, endpoints: Endpoints, sample: int, console: Console) -> int:
    from rich.table import Table

    from service.runs.dryrun import dry_run

    report = await dry_run(spec, endpoints.source, list(spec.tables) if spec.tables else None, sample)
    view = Table(title=f"Dry run on up to {sample} rows per table (nothing written)")
    for col in ("table", "sampled", "would fail", "by rule", "warnings"):
        view.add_column(col)
    for table, r in report.items():
        by_rule = r["byRule"]
        assert isinstance(by_rule, dict)
        view.add_row(table, str(r["sampled"]), str(r["wouldFail"]),
                     ", ".join(f"{k} {v}" for k, v in by_rule.items()) or "-", str(r["warnings"]))
    console.print(view)
    return 0


async def _plan(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from rich.table import Table

    from service.plan.planner import make_plan

    spec = _spec(args)
    endpoints = _resolve(spec, settings)
    plan = await make_plan(spec, endpoints.source, endpoints.target)
    if args.json:
        print(orjson.dumps(plan, option=orjson.OPT_INDENT_2).decode())
        return 0
    view = Table(title=f"Plan: {endpoints.source.masked} → {endpoints.target.masked}")
    for col in ("#", "table", "records", "target", "depends on", "creates"):
        view.add_column(col)
    tables: dict[str, Any] = {str(t["name"]): t for t in plan["tables"]}  # type: ignore[attr-defined]
    order: list[str] = plan["order"]  # type: ignore[assignment]
    for i, name in enumerate(order, 1):
        t = tables[name]
        count = f"~{t['totalRecords']:,}" if t["countIsEstimate"] else f"{t['totalRecords']:,}"
        view.add_row(str(i), name, count, str(t["target"]), ", ".join(t["dependsOn"]) or "-", str(t["create"]))
    console.print(view)
    for note in plan["orderNotes"]:  # type: ignore[attr-defined]
        console.print(f"order: {note}", soft_wrap=True)
    estimate = plan["estimate"]
    assert isinstance(estimate, dict)
    console.print(f"{plan['totalRecords']:,} records, about {plan['estimatedSeconds']} s "
                  f"({estimate['rowsPerSecond']:,} rows/s, {estimate['method']})", soft_wrap=True)
    return 0


async def _verify(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from service.runs.verification import verify_migration
    from service.verify.report import markdown

    spec = _spec(args)
    endpoints = _resolve(spec, settings)
    store = await open_state_store(settings.state_url)
    try:
        record = await store.find_latest(spec.fingerprint())
        if record is None:
            raise InvalidInput("no run of this spec in the state store: run it first (migrator run …)")
        report = await verify_migration(store, record.id, spec, endpoints.source, endpoints.target, deep=args.deep)
    finally:
        await store.close()
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        console.print(markdown(report, migration_id=record.id, source=endpoints.source.masked,
                               target=endpoints.target.masked), markup=False, soft_wrap=True)
    return 0 if report["ok"] else 1


async def _rollback(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from service.core.urls import lost_password
    from service.runs.rollback import roll_back

    store = await open_state_store(settings.state_url)
    try:
        record = await store.get_migration(args.id)
        if record is None:
            raise InvalidInput(f"no migration with id {args.id!r} in {settings.state_url}")
        target = args.target or str(record.spec.get("target", ""))
        if lost_password(target):
            raise InvalidInput("the stored target URL had a literal password, which is not kept: give it again "
                               "with --target URL")
        options = {k: v for k, v in record.spec.items() if k not in ("source", "target")}
        spec = MigrationSpec.from_dict({"source": str(record.spec.get("source", "")), "target": target, **options})
        endpoints = _resolve(spec, settings)
        console.print(f"Rolling back migration {record.id} ({record.status}) in {endpoints.target.masked} …",
                      soft_wrap=True)
        done = await roll_back(store, record, spec, endpoints.target, force=args.force, source=endpoints.source)
    finally:
        await store.close()
    for line in done or ["nothing of this run was in the target"]:
        console.print(f"  {line}", soft_wrap=True, markup=False)
    console.print(f"Migration {record.id} is rolled_back.")
    return 0


async def _run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    spec = _spec(args)
    endpoints = _resolve(spec, settings)
    if args.dry_run:
        if args.sample < 1:
            raise InvalidInput("--sample must be at least 1")
        return await _dry_run(spec, endpoints, args.sample, console)
    store = await open_state_store(settings.state_url)
    try:
        from service.cli.progress import ProgressView, summary_table  # rich's progress is slow to import

        if not args.again:
            done = await store.find_latest(spec.fingerprint())
            if done is not None and done.status == "completed":
                console.print(f"Migration {done.id} with this spec already completed at {done.ended_at}; nothing to "
                              "do. Use --again to copy the rows once more.", soft_wrap=True)
                return 0
        record, resumed = await create_or_resume(store, spec, endpoints)
        view = ProgressView(console)
        migration = Migration(record, spec, endpoints, store, listeners=[] if args.quiet else [view])
        console.print(f"{'Resuming' if resumed else 'Starting'} migration {record.id}: "
                      f"{endpoints.source.masked} → {endpoints.target.masked}", soft_wrap=True)
        started = time.monotonic()
        try:
            await _watched(migration.run(), view, quiet=args.quiet)
        finally:
            console.print(summary_table(migration, time.monotonic() - started))
            if args.rejects is not None:
                await _write_rejects(store, record.id, args.rejects, console)
        return 0
    finally:
        await store.close()


async def _watched(work: Coroutine[Any, Any, None], view: ProgressView, *, quiet: bool) -> None:
    """Run `work` (a migration's run or sync), with progress bars unless `quiet`; SIGTERM stops it
    as Ctrl-C does."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        if quiet:
            await work
        else:
            with view.progress:
                await work
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _sync(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from service.cli.progress import ProgressView, summary_table
    from service.runs.migration import find_for_sync

    spec = _spec(args)
    if args.cutover and args.every:
        raise InvalidInput("--cutover is one last pass: not with --every (stop the continuous sync, then cut over)")
    if not spec.sync.enabled:
        raise InvalidInput("the spec has no incremental tables: add incremental: {table: {cursor: column}} "
                           "(or {capture: true} for PostgreSQL change capture)")
    endpoints = _resolve(spec, settings)
    store = await open_state_store(settings.state_url)
    try:
        record, existing = await find_for_sync(store, spec, endpoints)
        view = ProgressView(console)
        migration = Migration(record, spec, endpoints, store, listeners=[] if args.quiet else [view])
        console.print(f"{'Syncing' if existing else 'Starting'} migration {record.id}: {endpoints.source.masked} → "
                      f"{endpoints.target.masked}" + (f", a pass every {args.every:g} s (Ctrl-C stops)"
                                                      if args.every else ""), soft_wrap=True)
        started = time.monotonic()
        migration.cutting_over = args.cutover
        try:
            await _watched(migration.keep_in_sync(args.every), view, quiet=args.quiet)
        finally:
            console.print(summary_table(migration, time.monotonic() - started))
        if not args.cutover:
            return 0
        from service.runs.verification import verify_migration
        from service.verify.report import markdown

        async def verify() -> dict[str, object]:
            return await verify_migration(store, record.id, spec, endpoints.source, endpoints.target, deep=True)

        answer = await migration.cut_over(verify)
        report = answer["report"]
        assert isinstance(report, dict)
        console.print(markdown(report, migration_id=record.id, source=endpoints.source.masked,
                               target=endpoints.target.masked), markup=False, soft_wrap=True)
        if answer.get("message"):
            console.print(f"Not cut over: {answer['message']}", soft_wrap=True)
            return 1
        console.print(f"Cut over: lag {answer['lagRows']} row(s), verification {'OK' if answer['ok'] else 'FAILED'}"
                      + (f", replication slot {answer['slotDropped']} dropped" if answer["slotDropped"] else ""),
                      soft_wrap=True)
        return 0 if answer["ok"] else 1
    finally:
        await store.close()


_UNSAFE = re.compile(r"[^\w.-]")


async def _write_rejects(store: StateStore, migration_id: str, folder: Path, console: Console) -> None:
    """Each table's rejected rows to `folder`/<table>.csv (the rows layout of service.quality.rejects)."""
    if folder.exists() and not folder.is_dir():
        console.print(f"--rejects {folder}: not a folder; the rejected rows are not written", soft_wrap=True)
        return
    found = await store.rejects(migration_id, limit=10_000_000)
    tables: dict[str, list[Reject]] = {}
    for r in found:
        tables.setdefault(r.table, []).append(r)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for table, rejects in tables.items():
        name = _UNSAFE.sub("_", table).lstrip(".") or "table"  # a file in the folder, never outside it
        path = folder / f"{name}.csv"
        path.write_text(rows_csv(rejects))
        written.append(str(path))
    where = ", ".join(written) or f"nothing to write to {folder}"
    console.print(f"{len(found)} rejected row(s): {where}", soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    try:
        settings = load_settings()
        # The run's outcome is printed once, as one line; -v shows the log as it happens.
        verbose = getattr(args, "verbose", False)
        logging.basicConfig(level=logging.INFO if verbose else logging.CRITICAL,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if args.command in ("run", "plan", "verify", "sync"):
            if args.spec is None and not (args.source and args.target):
                print("error: give a spec file, or both --source and --target", file=sys.stderr)
                return 2
            command = {"run": _run, "plan": _plan, "verify": _verify, "sync": _sync}[args.command]
            return asyncio.run(command(args, settings, console))
        if args.command == "rollback":
            return asyncio.run(_rollback(args, settings, console))
        if args.command == "demo":
            from service.cli.demo import write_demo

            folder = args.folder or settings.data_dir / "demo"
            counts = write_demo(folder)
            console.print(f"demo data in {folder}: " + ", ".join(f"{t} {n:,} rows" for t, n in counts.items()))
            return 0
        from service.api.app import serve

        return serve(settings, host=getattr(args, "host", None), port=getattr(args, "port", None))
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("stopped: run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    except InvalidInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except MigratorError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
