"""The pause gate the producer passes before reading each batch."""

from __future__ import annotations

import asyncio


class Gate:
    """Open by default. `close()` makes `passage()` wait until `open()`; nothing polls."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def open(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    async def passage(self) -> None:
        """Return at once while open; otherwise wait for `open()`."""
        await self._open.wait()
