"""`make bench`: our migrator against psql on the same data, the same cluster, in the same run.

    (a) CSV -> PG   `migrator run`  vs  psql \\copy … from … csv header   (into identical empty tables)
    (b) PG  -> PG   `migrator run`  vs  psql COPY TO STDOUT (binary) | psql COPY FROM STDIN (binary)
    (c) PG  -> CSV  `migrator run`  vs  psql \\copy (select …) to … csv header

Prints each time (the median of REPEAT=3 runs), the ratio ours/reference and our peak RSS, then
checks that memory stays flat: the same runs on FLAT_ROWS=10,000,000 rows (0 skips them).
ROWS=N overrides the row count; VERBOSE=1 prints every run's time; KEEP=1 keeps the files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.pgcluster import Cluster  # noqa: E402

ROWS = int(os.environ.get("ROWS", "1000000"))
REPEAT = int(os.environ.get("REPEAT", "3"))
FLAT_ROWS = int(os.environ.get("FLAT_ROWS", "10000000"))  # 0 skips the memory-flatness runs  # each time printed is the median of REPEAT runs
MIGRATOR = str(ROOT / ".venv" / "bin" / "migrator")
TABLE_DDL = """CREATE TABLE users(id bigint primary key, email text, name text, age int, country char(2),
 score numeric(10,3), active boolean, created_at timestamp, bio text)"""
GENERATE = f"""INSERT INTO users SELECT g, 'user' || g || '@example.com', 'Name ' || g, (g % 90) + 10,
 (array['US','DE','FR','GB'])[g % 4 + 1], (g % 100000) / 1000.0, g % 3 = 0,
 timestamp '2020-01-01' + g * interval '1 minute',
 repeat('bio text, with "quotes", commas and ünïcödé ', 1 + g % 5) FROM generate_series(1, {ROWS}) g"""


def timed(cmd: list[str] | str, *, shell: bool = False, env: dict[str, str] | None = None) -> tuple[float, int]:
    """(seconds, peak RSS in MiB of the process tree's largest child) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, shell=shell, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"command failed: {cmd}\n{err}")
    return elapsed, usage.ru_maxrss // 1024


def psql_for(cluster: Cluster) -> list[str]:
    """psql against the bench cluster, as the postgres user, stopping at the first error."""
    return ["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]


def run_sql(psql: list[str], db: str, text: str) -> None:
    subprocess.run([*psql, "-d", db, "-c", text], check=True, stdout=subprocess.DEVNULL)


def query_value(psql: list[str], db: str, text: str) -> str:
    return subprocess.run([*psql, "-d", db, "-At", "-c", text], check=True, capture_output=True,
                          text=True).stdout.strip()


def main() -> int:
    cluster = Cluster(fsync=True).start()
    work = Path(tempfile.mkdtemp(prefix="migrator-bench-"))
    psql = psql_for(cluster)
    env = {**os.environ, "MIGRATOR_STATE_URL": f"sqlite:///{work}/state.db", "MIGRATOR_DATA_DIR": str(work)}
    sql, value = partial(run_sql, psql), partial(query_value, psql)

    content = "SELECT count(*) || ':' || sum(hashtext(u::text)) FROM users u"

    def same_as_source(db: str) -> None:
        """A fast wrong answer is no answer: every row, every value."""
        if value(db, content) != value("src", content):
            raise SystemExit(f"{db}.users does not hold exactly the source rows")

    try:
        for db in ("src", "ref_a", "ours_a", "ref_b", "ours_b"):
            sql("postgres", f"CREATE DATABASE {db}")
        for db in ("src", "ref_a", "ours_a", "ref_b", "ours_b"):
            sql(db, TABLE_DDL)
        print(f"generating {ROWS:,} rows …", flush=True)
        sql("src", GENERATE)
        sql("src", "VACUUM ANALYZE users")
        csv_in = work / "in" / "users.csv"
        csv_in.parent.mkdir()
        sql("src", f"\\copy users to '{csv_in}' csv header")
        results = []
        runs = [0]

        def ours(source: str, target: str, *extra: str) -> tuple[float, int]:
            runs[0] += 1  # a state store of its own: each run is a new migration, not a resume
            run_env = {**env, "MIGRATOR_STATE_URL": f"sqlite:///{work}/state-{runs[0]}.db"}
            # The load alone, as the references do: the end-of-run verification is measured apart, below.
            return timed([MIGRATOR, "run", "--quiet", "--verify", "off", "--source", source, "--target", target,
                          *extra], env=run_env)

        def median(pairs: list[tuple[float, int]]) -> tuple[float, int]:
            if os.environ.get("VERBOSE"):
                print("  runs:", ", ".join(f"{t:.2f}" for t, _ in pairs))
            times = sorted(t for t, _ in pairs)
            return times[len(times) // 2], max(r for _, r in pairs)

        def fresh(db: str) -> None:
            """An empty target, and no dirty buffers left by the previous run to slow this one."""
            sql(db, "TRUNCATE users; DROP TABLE IF EXISTS _migrator_checkpoints")
            sql(db, "CHECKPOINT")

        # (a) CSV -> PG, into identical empty tables
        a_ours, a_ref = [], []
        for _ in range(REPEAT):
            fresh("ref_a")
            a_ref.append(timed([*psql, "-d", "ref_a", "-c", f"\\copy users from '{csv_in}' csv header"]))
            fresh("ours_a")
            a_ours.append(ours(f"csv:///{csv_in}", cluster.dsn_for("ours_a"), "--batch-size", "50000",
                               "--parallel", "2"))
        same_as_source("ours_a")
        same_as_source("ref_a")
        results.append(("CSV -> PG", *median(a_ours)[:1], median(a_ref)[0], median(a_ours)[1], 0.8))

        # (b) PG -> PG, into identical empty tables
        pipe = (f"{' '.join(psql)} -d src -c 'COPY users TO STDOUT (FORMAT binary)' | "
                f"{' '.join(psql)} -d ref_b -c 'COPY users FROM STDIN (FORMAT binary)'")
        b_ours, b_ref = [], []
        for _ in range(REPEAT):
            fresh("ref_b")
            b_ref.append(timed(pipe, shell=True))
            fresh("ours_b")
            b_ours.append(ours(cluster.dsn_for("src"), cluster.dsn_for("ours_b"), "--batch-size", "50000",
                               "--parallel", "2"))
        same_as_source("ours_b")
        results.append(("PG -> PG", median(b_ours)[0], median(b_ref)[0], median(b_ours)[1], 1.3))
        # The last PG -> PG run, verified: counts, then every row's checksum on both sides.
        verify_env = {**env, "MIGRATOR_STATE_URL": f"sqlite:///{work}/state-{runs[0]}.db"}
        verify_times = {}
        for depth in ("counts", "deep"):
            command = [MIGRATOR, "verify", "--source", cluster.dsn_for("src"), "--target", cluster.dsn_for("ours_b"),
                       "--json", *(["--deep"] if depth == "deep" else [])]
            verify_times[depth] = timed(command, env=verify_env)

        # (c) PG -> CSV
        out_ref = work / "ref.csv"
        c_ours, c_ref = [], []
        for _ in range(REPEAT):
            c_ref.append(timed([*psql, "-d", "src", "-c", f"\\copy (select * from users) to '{out_ref}' csv header"]))
            subprocess.run(["rm", "-rf", str(work / "out")], check=True)
            c_ours.append(ours(cluster.dsn_for("src"), f"csv:///{work}/out", "--batch-size", "50000"))
        # Same header and the same rows (psql writes heap order, migrator key order). Compared by
        # sort/cmp in a shell: this process stays small, since a forked child's peak RSS counts
        # the parent's pages until it execs.
        ours_csv = work / "out" / "users.csv"
        same = subprocess.run(
            ["bash", "-c", f"cmp -s <(head -1 '{ours_csv}') <(head -1 '{out_ref}') && "
                           f"cmp -s <(LC_ALL=C sort -S 200M '{ours_csv}') <(LC_ALL=C sort -S 200M '{out_ref}')"])
        if same.returncode != 0:
            raise SystemExit("the CSV written by migrator differs from psql's")
        results.append(("PG -> CSV", median(c_ours)[0], median(c_ref)[0], median(c_ours)[1], 1.3))

        print(f"\n{ROWS:,} rows of users; same cluster, same run; median of {REPEAT} runs each\n")
        print(f"{'path':<10} {'ours s':>8} {'ref s':>8} {'ratio':>7} {'target':>7} {'peak RSS':>9}")
        ok = True
        for name, our_time, ref_time, rss, target in results:
            ratio = our_time / ref_time
            ok &= ratio <= target
            print(f"{name:<10} {our_time:>8.2f} {ref_time:>8.2f} {ratio:>6.2f}x {'<=' + str(target):>7} {rss:>6} MiB"
                  f"{'' if ratio <= target else '   (over target)'}")
        print(f"peak RSS target: <= 300 MiB for {ROWS:,} rows: "
              f"{'met' if max(r[3] for r in results) <= 300 else 'NOT met'}")
        for depth, (seconds, rss) in verify_times.items():
            print(f"verify PG -> PG ({depth}): {seconds:.2f} s, peak RSS {rss} MiB (the load: "
                  f"{median(b_ours)[0]:.2f} s)")

        if FLAT_ROWS:
            # Memory must not grow with the table: the same CSV -> PG and PG -> CSV on FLAT_ROWS rows.
            print(f"\nmemory flatness: {FLAT_ROWS:,} rows (CSV -> PG, PG -> CSV), one run each …", flush=True)
            sql("src", "TRUNCATE users")
            sql("src", GENERATE.replace(f"generate_series(1, {ROWS})", f"generate_series(1, {FLAT_ROWS})"))
            sql("src", "VACUUM ANALYZE users")
            big = work / "big" / "users.csv"
            big.parent.mkdir()
            sql("src", f"\\copy users to '{big}' csv header")
            fresh("ours_a")
            _, rss_a = ours(f"csv:///{big}", cluster.dsn_for("ours_a"), "--batch-size", "50000", "--parallel", "2")
            same_as_source("ours_a")
            subprocess.run(["rm", "-rf", str(work / "out"), str(big)], check=True)
            _, rss_c = ours(cluster.dsn_for("src"), f"csv:///{work}/out", "--batch-size", "50000")
            for name, small, large in (("CSV -> PG", results[0][3], rss_a), ("PG -> CSV", results[2][3], rss_c)):
                ratio = large / small
                print(f"{name:<10} {ROWS:,} rows: {small} MiB   {FLAT_ROWS:,} rows: {large} MiB   "
                      f"{ratio:.2f}x (target <= 1.2x){'' if ratio <= 1.2 else '   (over target)'}")
        return 0
    finally:
        cluster.stop()
        if not os.environ.get("KEEP"):
            subprocess.run(["rm", "-rf", str(work)])
        else:
            print("kept", work)


if __name__ == "__main__":
    sys.exit(main())
