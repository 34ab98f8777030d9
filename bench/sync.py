"""`make bench`, part 5: incremental sync. 1M rows PostgreSQL → PostgreSQL; then 1% of them change
(10,000 updated, 1,000 inserted, 1,000 deleted) and one more pass brings the target in step:
  (i) watermark pass (cursor `updated_at`, indexed): inserts and updates; the deletes stay,
  (j) the same with detectDeletes (every key of both sides is compared),
  (k) change-capture pass (a logical slot: no cursor, deletes seen directly),
each against pass 0 (the full copy) of the same migration, measured in the same run, both as a
user runs them: `migrator sync` (so each time includes starting the process, about 0.5 s).
The target must equal the source after each pass (but for the deletes of (i)).
Targets: (i) ≤ 0.35× the full copy; (j) ≤ 0.85× — it reads and compares every key of both sides
(1M + 1M keys: about 1.5 s here); (k) ≤ 0.6× — PostgreSQL decodes the WAL for the slot, and
decodes it again to count what waits (the lag).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import GENERATE, MIGRATOR, ROWS, TABLE_DDL, psql_for, query_value, run_sql, timed  # noqa: E402
from tests.support.pgcluster import Cluster  # noqa: E402

CHANGES = f"""UPDATE users SET name = name || ' (changed)', updated_at = now() WHERE id % 100 = 7;
INSERT INTO users (id, email, name, age, updated_at) SELECT {ROWS} + g, 'new' || g || '@example.com', 'New', 30, now()
  FROM generate_series(1, {ROWS // 1000}) g;
DELETE FROM users WHERE id % 1000 = 3"""


def main() -> int:
    cluster = Cluster(fsync=True).start()
    work = Path(tempfile.mkdtemp(prefix="migrator-bench-sync-"))
    psql = psql_for(cluster)
    sql = partial(run_sql, psql)

    def digest(db: str, where: str = "") -> str:
        return query_value(psql, db, "SELECT count(*) || ':' || md5(string_agg(id || name, ',' ORDER BY id)) "
                                     f"FROM users{where}")

    try:
        for db in ("src", "cur", "del", "cap"):
            sql("postgres", f"CREATE DATABASE {db}")
        sql("src", TABLE_DDL)
        print(f"sync bench: generating {ROWS:,} rows …", flush=True)
        sql("src", GENERATE)
        # Each row's last change at its own time, as an application's updated_at column has it.
        sql("src", "ALTER TABLE users ADD COLUMN updated_at timestamptz; UPDATE users SET updated_at = created_at; "
                   "ALTER TABLE users ALTER updated_at SET NOT NULL; CREATE INDEX ON users (updated_at)")
        sql("src", "VACUUM ANALYZE users")
        results = []
        cases = (("i", "watermark", "cur", {"cursor": "updated_at"}, False, 0.35),
                 ("j", "watermark + detectDeletes", "del", {"cursor": "updated_at"}, True, 0.85),
                 ("k", "change capture", "cap", {"capture": True}, False, 0.6))
        for letter, name, db, table, deletes, target in cases:
            spec = {"source": cluster.dsn_for("src"), "target": cluster.dsn_for(db), "batchSize": 50000,
                    "verify": False, "incremental": {"users": table}, "detectDeletes": deletes}
            path = work / f"{db}.json"
            path.write_text(json.dumps(spec))
            env = {**os.environ, "MIGRATOR_STATE_URL": f"sqlite:///{work}/state-{db}.db", "MIGRATOR_DATA_DIR": str(work)}
            sql("src", "CHECKPOINT")
            full, _ = timed([MIGRATOR, "sync", "--quiet", str(path)], env=env)
            if digest(db) != digest("src"):
                raise SystemExit(f"{name}: pass 0 did not copy the source exactly")
            sql("src", "BEGIN; " + CHANGES + "; COMMIT")
            sql("src", "CHECKPOINT")
            one, _ = timed([MIGRATOR, "sync", "--quiet", str(path)], env=env)
            kept = f" WHERE id % 1000 <> 3 OR id > {ROWS}" if not deletes and "cursor" in table else ""
            if digest(db, kept) != digest("src"):
                raise SystemExit(f"{name}: the target differs from the source after pass 1")
            results.append((letter, name, one, full, target))
            # The next case starts from the same source again (its changes undone).
            sql("src", f"DELETE FROM users WHERE id > {ROWS}")
            sql("src", f"INSERT INTO users SELECT g, 'user' || g || '@example.com', 'Name ' || g, (g % 90) + 10, "
                       "(array['US','DE','FR','GB'])[g % 4 + 1], (g % 100000) / 1000.0, g % 3 = 0, "
                       "timestamp '2020-01-01' + g * interval '1 minute', 'bio', "
                       f"timestamp '2020-01-01' + g * interval '1 minute' FROM generate_series(1, {ROWS}) g "
                       "WHERE g % 1000 = 3")
        for letter, name, one, full, target in results:
            ratio = one / full
            print(f"({letter}) sync pass over 1% changes, {name}: {one:.2f} s vs pass 0 (full copy) {full:.2f} s "
                  f"→ {ratio:.2f}× (target ≤ {target})" + ("" if ratio <= target else "  OVER TARGET"), flush=True)
        return 0
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
