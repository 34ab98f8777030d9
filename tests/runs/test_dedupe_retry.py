"""Duplicate detection across a retry: the keys committed before a transient failure count as
seen when the table goes on from its checkpoint (they are read back from the target), so no
duplicate is written. The failure is a connection reset injected into the SQLite writer."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from service.connectors.sqlite.sink import SqliteTableWriter
from service.store.base import StateStore
from tests.support.runs import prepare

EMAILS = ["a", "b", "c", "a", "d", "e", "f", "a", "g", "h"]


@pytest.mark.parametrize("keep", ["first", "fix"])
async def test_no_duplicate_key_is_written_across_a_retry(
    store: StateStore, data_dir: Path, monkeypatch: pytest.MonkeyPatch, keep: str
) -> None:
    (data_dir / "src").mkdir()
    (data_dir / "src" / "users.csv").write_text("id,email\n" + "".join(f"{i},{e}\n" for i, e in enumerate(EMAILS, 1)))
    real = SqliteTableWriter.write
    calls = [0]

    async def reset_on_the_third_batch(self: SqliteTableWriter, batch: Any, turn: Any) -> Any:
        calls[0] += 1
        if calls[0] == 3:
            raise ConnectionResetError(104, "Connection reset by peer")
        return await real(self, batch, turn)

    monkeypatch.setattr(SqliteTableWriter, "write", reset_on_the_third_batch)
    run = await prepare(store, {"source": "csv:///src", "target": "sqlite:///out.db", "batchSize": 3,
                                "parallelBatches": 1, "verify": "off", "retryFailed": {"attempts": 2, "backoff": 0.01},
                                "dedupe": {"users": {"key": "email", "keep": keep}}}, data_dir)
    await run.run()

    assert run.status == "completed" and calls[0] > 3  # the failure happened, and was retried
    with closing(sqlite3.connect(data_dir / "out.db")) as db:
        emails = [e for (e,) in db.execute("SELECT email FROM users ORDER BY id")]
    assert len(emails) == len(set(emails)), emails
    if keep == "first":
        assert emails == ["a", "b", "c", "d", "e", "f", "g", "h"]
    else:  # every row kept, later copies suffixed (the numbers may differ after a retry)
        assert len(emails) == len(EMAILS) and sorted(e.split("-")[0] for e in emails) == sorted(EMAILS)
