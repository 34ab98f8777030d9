"""Live counters of one table's run, and the in-flight count a pause waits on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum


class TableStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class TableProgress:
    table: str
    target: str
    total: int | None = None
    read: int = 0
    written: int = 0
    failed: int = 0  # rejected rows, `skipped` included
    skipped: int = 0  # rows of batches skipped whole (onError: skip_batch)
    batches: int = 0
    status: TableStatus = TableStatus.PENDING

    @property
    def done(self) -> int:
        return self.written + self.failed

    @property
    def percent(self) -> float:
        if not self.total:
            return 100.0 if self.status is TableStatus.COMPLETED else 0.0
        return min(100.0, 100.0 * self.done / self.total)


class InFlight:
    """Batches read (or being read) and not yet committed, across all tables of a migration.
    A pause is complete when the gate is closed and this reaches zero."""

    def __init__(self) -> None:
        self._count = 0
        self._zero = asyncio.Event()
        self._zero.set()

    @property
    def count(self) -> int:
        return self._count

    def add(self, n: int) -> None:
        self._count += n
        if self._count == 0:
            self._zero.set()
        else:
            self._zero.clear()

    async def wait_zero(self) -> None:
        await self._zero.wait()
