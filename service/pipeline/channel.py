"""A bounded, closable channel between pipeline stages (backpressure is `await put()`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class _Closed:
    pass


_CLOSED = _Closed()


class Channel(Generic[T]):
    """A FIFO of at most `capacity` items. `close()` lets every consumer's iteration end after the
    items already queued; any number of consumers may iterate concurrently."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._queue: asyncio.Queue[T | _Closed] = asyncio.Queue(maxsize=capacity)
        self._closed = False

    @property
    def capacity(self) -> int:
        return self._queue.maxsize

    def qsize(self) -> int:
        return self._queue.qsize()

    async def put(self, item: T) -> None:
        """Wait for room, then enqueue (this wait is the backpressure)."""
        if self._closed:
            raise RuntimeError("put() on a closed channel")
        await self._queue.put(item)

    async def close(self) -> None:
        """No more items will be put; consumers finish what is queued, then stop."""
        if not self._closed:
            self._closed = True
            await self._queue.put(_CLOSED)

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            item = await self._queue.get()
            if isinstance(item, _Closed):
                # Hand the end marker on to the next consumer.
                # Taking it freed a slot, so this never blocks.
                self._queue.put_nowait(item)
                return
            yield item
