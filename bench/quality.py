"""`make bench`, part 4: what data quality costs. The 1M-row CSV → PostgreSQL run of bench/run.py,
with rules on 5 columns, 3 transforms and dedupe on email, against the same run without them
(validation off, no transforms, no dedupe). Median of QUALITY_REPEAT=3 runs each, alternating,
each into an empty table after a CHECKPOINT. Target: ≤ 1.15×.
Then the memory of duplicate detection over 10M distinct keys (bench/dedupe_memory.py): ≤ 300 MB.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import GENERATE, MIGRATOR, ROWS, TABLE_DDL, psql_for, query_value, run_sql, timed  # noqa: E402
from tests.support.pgcluster import Cluster  # noqa: E402

REPEAT = int(os.environ.get("QUALITY_REPEAT", "3"))
QUALITY = {
    "rules": {"users": {
        "email": {"required": True, "format": "email"},
        "age": {"type": "integer", "min": 0, "max": 150},
        "country": {"enum": ["US", "DE", "FR", "GB"]},
        "name": {"required": True, "maxLength": 200},
        "score": {"min": 0, "max": 1000},
    }},
    "transforms": {"users": [{"lowercase": ["email"]}, {"trim": ["name"]}, {"uppercase": ["country"]}]},
    "dedupe": {"users": {"key": ["email"], "keep": "first"}},
}


def main() -> int:
    cluster = Cluster(fsync=True).start()
    work = Path(tempfile.mkdtemp(prefix="migrator-bench-quality-"))
    psql = psql_for(cluster)

    sql = partial(run_sql, psql)

    def count(db: str) -> int:
        return int(query_value(psql, db, "SELECT count(*) FROM users"))

    try:
        for db in ("src", "plain", "checked"):
            sql("postgres", f"CREATE DATABASE {db}")
            sql(db, TABLE_DDL)
        print(f"quality bench: generating {ROWS:,} rows …", flush=True)
        sql("src", GENERATE)
        csv_in = work / "in" / "users.csv"
        csv_in.parent.mkdir()
        sql("src", f"\\copy users to '{csv_in}' csv header")
        plain_spec = work / "plain.json"
        checked_spec = work / "checked.json"
        base = {"source": f"csv:///{csv_in}", "batchSize": 50000, "parallelBatches": 2, "verify": False}
        plain_spec.write_text(json.dumps({**base, "target": cluster.dsn_for("plain"), "validation": False}))
        checked_spec.write_text(json.dumps({**base, "target": cluster.dsn_for("checked"), **QUALITY}))
        times: dict[str, list[float]] = {"plain": [], "checked": []}
        for i in range(REPEAT * 2):
            name = ("plain", "checked")[i % 2]
            sql(name, "TRUNCATE users; DROP TABLE IF EXISTS _migrator_checkpoints")
            sql(name, "CHECKPOINT")
            env = {**os.environ, "MIGRATOR_STATE_URL": f"sqlite:///{work}/state-{i}.db", "MIGRATOR_DATA_DIR": str(work)}
            elapsed, _ = timed([MIGRATOR, "run", "--quiet", str(work / f"{name}.json")], env=env)
            times[name].append(elapsed)
            if count(name) != ROWS:
                raise SystemExit(f"{name}: {count(name)} rows loaded, expected {ROWS} (the data has no bad rows)")
        plain, checked = statistics.median(times["plain"]), statistics.median(times["checked"])
        if os.environ.get("VERBOSE"):
            print(f"    runs: plain {times['plain']}, checked {times['checked']}")
        ratio = checked / plain
        print(f"(g) CSV -> PG with 5 rules, 3 transforms, dedupe on email: {checked:.2f} s vs {plain:.2f} s plain "
              f"→ {ratio:.2f}× (target ≤ 1.15)" + ("" if ratio <= 1.15 else "  OVER TARGET"), flush=True)
        dedupe_memory()
        return 0
    finally:
        cluster.stop()


def dedupe_memory(keys: int = 10_000_000) -> None:
    """Duplicate detection over `keys` distinct emails, in its own process (bench/dedupe_memory.py):
    the memory it adds to the process, against the issue's 300 MB."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "dedupe_memory.py"), str(keys)],
                         check=True, capture_output=True, text=True).stdout.split()
    distinct, mib, seconds = int(out[0]), float(out[1]), float(out[2])
    mb = mib * 1.048576
    print(f"(h) dedupe memory: {distinct:,} distinct keys take {mb:.0f} MB ({mib:.0f} MiB) over {seconds:.1f} s "
          f"(target ≤ 300 MB)" + ("" if mb <= 300 else "  OVER TARGET"), flush=True)


if __name__ == "__main__":
    sys.exit(main())
