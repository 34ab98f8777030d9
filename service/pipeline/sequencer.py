"""Commit ordering for parallel writers: writers prepare batches concurrently but commit in order,
so the committed rows are always a contiguous prefix of the source's read order and one position
is an exact checkpoint."""

from __future__ import annotations

import asyncio


class CommitSequencer:
    def __init__(self, first_seq: int = 0) -> None:
        self._next = first_seq
        self._changed = asyncio.Condition()

    @property
    def next_seq(self) -> int:
        return self._next

    async def wait_turn(self, seq: int) -> None:
        """Wait until every batch before `seq` has committed."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._next == seq)

    async def advance(self, seq: int) -> None:
        """Mark `seq` committed and wake the writer of `seq + 1`."""
        async with self._changed:
            if seq != self._next:
                raise RuntimeError(f"batch {seq} committed out of turn (expected {self._next})")
            self._next = seq + 1
            self._changed.notify_all()
