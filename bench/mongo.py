"""`make bench`, part 3: MongoDB against the raw driver alone, on the same data, in the same run.

    (e) Mongo -> PG  `migrator run`  vs  a plain find() scan of the collection (AsyncMongoClient,
                                         batch_size 5000, every document decoded and consumed)
    (f) PG -> Mongo  `migrator run`  vs  insert_many of the same documents (already built in memory
                                         as dicts; batches of 5000, ordered=False) into a fresh database

MONGO_DOCS (default 200,000) documents with a nested address {street, city, zip}, a tags array
(2-4 strings), two dates, an int, a float and two strings, in the nx-27017 stand-in (or the
server at TEST_MONGO_URL); the PostgreSQL side is a cluster with fsync on, the source table holding
the same data as jsonb address, text[] tags and timestamptz dates.
Our runs are `migrator run` subprocesses (interpreter start-up included); the raw driver runs in
this process (the documents for insert_many built beforehand, not timed), a new client per run.
Each time printed is the median of MONGO_REPEAT=3 runs, ours and the driver alternating, each
into a fresh target; each result is checked (count and the content of a few documents) first.
VERBOSE=1 prints every run's time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from bson import ObjectId
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import psql_for, run_sql, timed  # noqa: E402
from tests.support.mongo import MongoServer  # noqa: E402
from tests.support.pgcluster import Cluster  # noqa: E402

DOCS = int(os.environ.get("MONGO_DOCS", "200000"))
REPEAT = int(os.environ.get("MONGO_REPEAT", "3"))
BATCH = 5000
TARGET = 1.3
MIGRATOR = str(ROOT / ".venv" / "bin" / "migrator")
COLL = "people"
UTC = dt.UTC
BASE = dt.datetime(2020, 1, 1, tzinfo=UTC)
CITIES = ["Berlin", "Lyon", "Porto", "Kraków", "Zürich", "Austin", "Osaka", "Lagos", "Lima", "Perth", "Oslo"]
TAGS = ["new", "vip", "churn-risk", "beta", "newsletter", "partner", "eu", "us", "mobile", "legacy", "trial"]
PG_DDL = f"""CREATE TABLE {COLL}(_id text PRIMARY KEY, name text, email text, age integer, score double precision,
 created_at timestamptz, updated_at timestamptz, address jsonb, tags text[])"""
Doc = dict[str, Any]


def oid(i: int) -> ObjectId:
    return ObjectId(bytes.fromhex(f"65a0b000{i:016x}"))


def document(i: int) -> Doc:
    created = BASE + dt.timedelta(minutes=i, milliseconds=i % 1000)  # BSON dates keep milliseconds
    return {
        "_id": oid(i),
        "name": f"Name {i}",
        "email": f"user{i}@example.com",
        "age": 18 + i % 70,
        "score": (i % 100_003) / 7,
        "created_at": created,
        "updated_at": created + dt.timedelta(days=i % 30, milliseconds=123),
        "address": {"street": f"{1 + i % 999} Main Street", "city": CITIES[i % len(CITIES)], "zip": f"{i % 100000:05d}"},
        "tags": [TAGS[(i + 3 * k) % len(TAGS)] for k in range(2 + i % 3)],
    }


def spots() -> list[int]:
    return sorted({0, 1, 2, DOCS // 3, DOCS // 2, DOCS - 2, DOCS - 1})


def db_url(server: str, db: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path=f"/{db}"))


def client(url: str) -> AsyncMongoClient[Doc]:
    return AsyncMongoClient(url, tz_aware=True)


# -- the raw driver alone -----------------------------------------------------------------------
async def raw_scan(url: str, db: str) -> tuple[int, dict[ObjectId, Doc]]:
    """A plain find() of the whole collection, every document decoded; a few kept for the check."""
    wanted = {oid(i) for i in spots()}
    seen: dict[ObjectId, Doc] = {}
    n = 0
    mongo = client(url)
    try:
        async for doc in mongo[db][COLL].find({}, batch_size=BATCH):
            n += 1
            if doc["_id"] in wanted:
                seen[doc["_id"]] = doc
    finally:
        await mongo.close()
    return n, seen


async def raw_insert(url: str, db: str, docs: list[Doc]) -> None:
    mongo = client(url)
    try:
        coll = mongo[db][COLL]
        for k in range(0, len(docs), BATCH):
            await coll.insert_many(docs[k:k + BATCH], ordered=False)
    finally:
        await mongo.close()


def timed_here(make: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = asyncio.run(make())
    return time.perf_counter() - start, result


# -- checks: a fast wrong answer is no answer ----------------------------------------------------
def same_documents(where: str, found: dict[Any, Doc]) -> None:
    for i in spots():
        want = document(i)
        got = found.get(want["_id"])
        if got != want:
            raise SystemExit(f"{where}: document {i} is\n  {got}\nnot\n  {want}")


async def check_mongo(url: str, db: str, who: str = "") -> None:
    mongo = client(url)
    try:
        coll = mongo[db][COLL]
        n = await coll.count_documents({})
        if n != DOCS:
            raise SystemExit(f"{who}mongo {db}.{COLL}: {n:,} documents, not {DOCS:,}")
        found = {d["_id"]: d async for d in coll.find({"_id": {"$in": [oid(i) for i in spots()]}})}
    finally:
        await mongo.close()
    same_documents(f"{who}mongo {db}.{COLL}", found)


async def check_pg(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        n = await conn.fetchval(f"SELECT count(*) FROM {COLL}")
        if n != DOCS:
            raise SystemExit(f"postgres {dsn}: {n:,} rows in {COLL}, not {DOCS:,}")
        rows = await conn.fetch(f"SELECT * FROM {COLL} WHERE _id = any($1::text[])", [str(oid(i)) for i in spots()])
    finally:
        await conn.close()
    found: dict[Any, Doc] = {}
    for row in rows:
        doc = dict(row)
        doc["_id"] = ObjectId(doc["_id"])
        for k in ("address", "tags"):  # JSON columns: compared as the values they hold
            if isinstance(doc.get(k), str):
                doc[k] = json.loads(doc[k])
        found[doc["_id"]] = doc
    same_documents(f"postgres {dsn}", found)


async def drop(url: str, db: str) -> None:
    mongo = client(url)
    try:
        await mongo.drop_database(db)
    finally:
        await mongo.close()


# -- loading the sources (not timed) -------------------------------------------------------------
async def load_pg(dsn: str, docs: list[Doc]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(PG_DDL)
        await conn.copy_records_to_table(COLL, records=(
            (str(d["_id"]), d["name"], d["email"], d["age"], d["score"], d["created_at"], d["updated_at"],
             json.dumps(d["address"]), d["tags"]) for d in docs))
    finally:
        await conn.close()


def main() -> int:
    cluster = Cluster(fsync=True).start()
    mongo = MongoServer()
    work = Path(tempfile.mkdtemp(prefix="migrator-bench-mongo-"))
    psql = psql_for(cluster)
    env = {**os.environ, "MIGRATOR_DATA_DIR": str(work)}

    sql = partial(run_sql, psql)

    runs = [0]

    def ours(source: str, target: str) -> tuple[float, int]:
        runs[0] += 1  # a state store of its own: each run is a new migration, not a resume
        run_env = {**env, "MIGRATOR_STATE_URL": f"sqlite:///{work}/state-{runs[0]}.db"}
        return timed([MIGRATOR, "run", "--quiet", "--verify", "off", "--source", source, "--target", target,
                      "--batch-size", str(BATCH)], env=run_env)

    src = ""
    try:
        mongo.start()
        url = mongo.url
        tag = f"b{os.getpid()}"  # database names of their own, should TEST_MONGO_URL be a shared server
        src = f"{tag}_src"
        print(f"Mongo bench: generating {DOCS:,} documents into {'TEST_MONGO_URL' if mongo.external else 'nx-27017'}"
              " and PostgreSQL …", flush=True)
        docs = [document(i) for i in range(DOCS)]
        gc.freeze()  # the collector need not walk these on every run of the driver below
        asyncio.run(raw_insert(url, src, docs))
        asyncio.run(check_mongo(url, src, "the source: "))
        sql("postgres", "CREATE DATABASE pgsrc")
        asyncio.run(load_pg(cluster.dsn_for("pgsrc"), docs))
        sql("pgsrc", f"VACUUM ANALYZE {COLL}")

        print(f"\n{DOCS:,} documents ({'TEST_MONGO_URL' if mongo.external else 'nx-27017 stand-in'}, PostgreSQL "
              f"fsync on); same run; median of {REPEAT} runs each; raw driver in-process\n")
        print(f"{'path':<12} {'ours s':>8} {'raw s':>8} {'ratio':>7} {'target':>7}  raw driver", flush=True)

        def report(name: str, our_runs: list[tuple[float, int]], raw_runs: list[float], what: str) -> None:
            # No peak RSS here: a child forked from this process (holding every document) would
            # report this process's pages as its own.
            our_time = statistics.median(t for t, _ in our_runs)
            raw_time = statistics.median(raw_runs)
            ratio = our_time / raw_time
            print(f"{name:<12} {our_time:>8.2f} {raw_time:>8.2f} {ratio:>6.2f}x {'<=' + str(TARGET):>7}  "
                  f"{what}{'' if ratio <= TARGET else '   (over target)'}", flush=True)
            if os.environ.get("VERBOSE"):
                print(f"{'':<12} runs: ours {', '.join(f'{t:.2f}' for t, _ in our_runs)}; "
                      f"raw {', '.join(f'{t:.2f}' for t in raw_runs)}", flush=True)

        # (e) Mongo -> PG vs a plain find() scan
        e_ours: list[tuple[float, int]] = []
        e_raw: list[float] = []
        for i in range(REPEAT * 2):
            if i % 4 in (0, 3):  # ABBA order: a drift over the runs favours neither side
                target = f"e_ours_{i}"
                sql("postgres", f"CREATE DATABASE {target}")
                sql("postgres", "CHECKPOINT")
                e_ours.append(ours(db_url(url, src), cluster.dsn_for(target)))
                asyncio.run(check_pg(cluster.dsn_for(target)))  # ours: the PostgreSQL table
                sql("postgres", f"DROP DATABASE {target}")
            else:
                seconds, (n, seen) = timed_here(lambda: raw_scan(url, src))
                if n != DOCS:
                    raise SystemExit(f"the raw scan read {n:,} documents, not {DOCS:,}")
                same_documents("the raw scan", seen)
                e_raw.append(seconds)
        report("Mongo -> PG", e_ours, e_raw, "find() scan")

        # (f) PG -> Mongo vs insert_many of the same documents
        f_ours: list[tuple[float, int]] = []
        f_raw: list[float] = []
        for i in range(REPEAT * 2):
            target = f"{tag}_f{i}"
            if i % 4 in (0, 3):
                f_ours.append(ours(cluster.dsn_for("pgsrc"), db_url(url, target)))
            else:
                f_raw.append(timed_here(lambda: raw_insert(url, target, docs))[0])
            asyncio.run(check_mongo(url, target, "PG -> Mongo, ours: " if i % 4 in (0, 3) else "PG -> Mongo, raw: "))
            asyncio.run(drop(url, target))
        report("PG -> Mongo", f_ours, f_raw, "insert_many")

        return 0
    finally:
        if mongo.external and src:
            asyncio.run(drop(mongo.url, src))
        mongo.stop()
        cluster.stop()
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    sys.exit(main())
