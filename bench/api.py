"""`make bench`, part 2: a migration through the HTTP API, watched by 50 WebSocket clients vs none.

A real `migrator serve` process migrates ROWS (default 1,000,000) PostgreSQL rows to PostgreSQL
via initialize → plan → execute; the time is the server's own `durationSeconds`. Runs alternate
between no WebSocket client and CLIENTS=50 clients reading every event (in ABBA order); each
figure is the median of API_REPEAT=6 runs, each after the previous target was vacuumed and a CHECKPOINT. Target: with clients ≤ 1.05 × without.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import GENERATE, ROWS, TABLE_DDL, psql_for, run_sql  # noqa: E402
from tests.support.pgcluster import Cluster  # noqa: E402

REPEAT = int(os.environ.get("API_REPEAT", "6"))  # runs are noisy (±0.3 s): more of them
CLIENTS = int(os.environ.get("CLIENTS", "50"))
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def migrate(http: aiohttp.ClientSession, base: str, source: str, target: str) -> float:
    async def post(path: str, body: dict[str, object], status: int = 200) -> dict[str, object]:
        async with http.post(base + path, json=body, headers=AUTH) as resp:
            data: dict[str, object] = await resp.json()
            if resp.status != status:
                raise SystemExit(f"{path} -> {resp.status}: {data}")
            return data

    await post("/api/migrations/initialize", {"sourceDB": source, "targetDB": target})
    await post("/api/migrations/plan", {"tables": ["users"], "batchSize": 5000, "verify": False})
    await post("/api/migrations/execute", {}, 202)
    while True:
        await asyncio.sleep(0.2)
        async with http.get(base + "/api/migrations/summary", headers=AUTH) as resp:
            summary = (await resp.json())["summary"]
        if summary["status"] == "completed":
            if summary["migratedCount"] != ROWS:
                raise SystemExit(f"migrated {summary['migratedCount']} of {ROWS} rows")
            return float(summary["durationSeconds"])
        if summary["status"] not in ("executing", "pausing", "paused"):
            raise SystemExit(f"the migration ended {summary['status']}: {summary.get('error')}")


async def watch(http: aiohttp.ClientSession, url: str, counts: list[int], ready: asyncio.Event,
                connected: list[int]) -> None:
    async with http.ws_connect(url) as ws:
        connected[0] += 1
        if connected[0] == CLIENTS:
            ready.set()
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                counts[0] += 1


async def run(base: str, source: str, target_of: list[str], settle: Callable[[str | None], None]
              ) -> tuple[float, float, int]:
    bare: list[float] = []
    watched: list[float] = []
    received = [0]
    async with aiohttp.ClientSession() as http:
        for i in range(REPEAT * 2):
            with_clients = i % 4 in (1, 2)  # ABBA order: a drift over the runs favours neither side
            target = target_of[i]
            await asyncio.to_thread(settle, target_of[i - 1] if i else None)
            if not with_clients:
                bare.append(await migrate(http, base, source, target))
                continue
            ready, connected = asyncio.Event(), [0]
            ws_url = base.replace("http://", "ws://") + f"/api/migrations/events?token={TOKEN}"
            async with asyncio.TaskGroup() as tg:
                watchers = [tg.create_task(watch(http, ws_url, received, ready, connected)) for _ in range(CLIENTS)]
                await ready.wait()
                watched.append(await migrate(http, base, source, target))
                await asyncio.sleep(0.5)  # let the final events arrive
                for w in watchers:
                    w.cancel()
    if os.environ.get("VERBOSE"):
        print(f"    no client: {', '.join(f'{t:.2f}' for t in bare)} s; {CLIENTS} clients: "
              f"{', '.join(f'{t:.2f}' for t in watched)} s", flush=True)
    return statistics.median(bare), statistics.median(watched), received[0]


def main() -> int:
    cluster = Cluster(fsync=True).start()
    work = Path(tempfile.mkdtemp(prefix="migrator-bench-api-"))
    psql = psql_for(cluster)

    sql = partial(run_sql, psql)

    server: subprocess.Popen[bytes] | None = None
    try:
        targets = [f"t{i}" for i in range(REPEAT * 2)]
        for db in ("src", *targets):
            sql("postgres", f"CREATE DATABASE {db}")
        sql("src", TABLE_DDL)
        print(f"API bench: generating {ROWS:,} rows …", flush=True)
        sql("src", GENERATE)
        sql("src", "VACUUM ANALYZE users")
        port = free_port()
        env = {**os.environ, "MIGRATOR_STATE_URL": f"sqlite:///{work}/state.db", "MIGRATOR_DATA_DIR": str(work),
               "MIGRATOR_API_TOKEN": TOKEN, "MIGRATOR_PORT": str(port), "MIGRATOR_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "migrator"), "serve"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(work / "serve.err", "wb"))
        base = f"http://127.0.0.1:{port}"

        async def up() -> None:
            async with aiohttp.ClientSession() as http:
                for _ in range(200):
                    try:
                        async with http.get(base + "/health") as resp:
                            if resp.status == 200:
                                return
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
            raise SystemExit("migrator serve did not start: " + (work / "serve.err").read_text())

        asyncio.run(up())
        dsn = f"postgresql://postgres@127.0.0.1:{cluster.port}"
        def settle(previous: str | None) -> None:
            """Vacuum the last run's target now (not autovacuum during the next run), then CHECKPOINT."""
            if previous:
                sql(previous.rsplit("/", 1)[1], "VACUUM ANALYZE users")
            sql("postgres", "CHECKPOINT")

        bare, watched, received = asyncio.run(run(base, f"{dsn}/src", [f"{dsn}/{t}" for t in targets], settle))
        ratio = watched / bare
        print(f"(d) PG -> PG via API, {ROWS:,} rows: no WebSocket client {bare:.2f} s, {CLIENTS} clients "
              f"{watched:.2f} s  → {ratio:.2f}× (target ≤ 1.05; clients received {received:,} messages)", flush=True)
        print("    within target" if ratio <= 1.05 else "    OVER TARGET", flush=True)
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
