"""Self-check of tests/support/mongo.py, run by hand: `.venv/bin/python -m tests.support.mongo_selfcheck`.

Starts two servers side by side, round-trips a document through each with the async driver, checks
TEST_MONGO_URL reuse (no process), and that stop() leaves nothing listening."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

from pymongo import AsyncMongoClient

from tests.support.mongo import MongoServer


async def roundtrip(url: str, tag: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, serverSelectionTimeoutMS=3000)
    try:
        coll = client["selfcheck"]["docs"]
        await coll.insert_one({"_id": tag, "n": 1})
        assert await coll.find_one({"_id": tag}) == {"_id": tag, "n": 1}
    finally:
        await client.close()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    os.environ.pop("TEST_MONGO_URL", None)
    t0 = time.monotonic()
    a, b = MongoServer().start(), MongoServer().start()
    print(f"two servers up in {time.monotonic() - t0:.2f}s: {a.url} {b.url}")
    try:
        assert a.port != b.port
        asyncio.run(roundtrip(a.url, "a"))
        asyncio.run(roundtrip(b.url, "b"))
        os.environ["TEST_MONGO_URL"] = a.url
        ext = MongoServer().start()
        assert ext.proc is None and ext.url == a.url
        asyncio.run(roundtrip(ext.url, "ext"))
        ext.stop()
        assert listening(a.port), "stop() of an external server must not stop it"
        del os.environ["TEST_MONGO_URL"]
    finally:
        a.stop()
        b.stop()
    assert not listening(a.port) and not listening(b.port)
    assert a.root is None and b.root is None
    print("mongo support self-check: ok")


if __name__ == "__main__":
    main()
