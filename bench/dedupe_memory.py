"""`make bench`, part of the quality bench: the memory that duplicate detection takes for 10M
distinct keys (issue target: within 300 MB). Run as its own process by bench/quality.py, which
prints this process's peak RSS minus its RSS before the first key (the interpreter and pyarrow).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from service.quality.dedupe import Dedupe  # noqa: E402
from service.quality.rows import Rows  # noqa: E402

BATCH = 50_000


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    keys = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    step = Dedupe("users", ["email"])
    before = peak_mib()
    started = time.perf_counter()
    for start in range(0, keys, BATCH):
        ids = pa.array(range(start, min(start + BATCH, keys)), pa.int64())
        emails = pc.binary_join_element_wise("user", pc.cast(ids, pa.string()), "@example.com", "")
        out = step(Rows.of("users", pa.record_batch({"id": ids, "email": emails}), start + 1, ("id",)))
        if out.rejects:
            raise SystemExit(f"{len(out.rejects)} rejects among distinct keys")
    print(f"{step.distinct_keys} {peak_mib() - before:.0f} {time.perf_counter() - started:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
