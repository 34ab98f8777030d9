"""Gate: the pause switch the producer passes before reading each batch."""

from __future__ import annotations

import asyncio

import pytest

from service.pipeline.gate import Gate


async def test_passage_is_immediate_while_open() -> None:
    gate = Gate()
    assert gate.is_open
    async with asyncio.timeout(0.5):
        await gate.passage()


async def test_passage_waits_while_closed_until_opened() -> None:
    gate = Gate()
    gate.close()
    waiting = asyncio.create_task(gate.passage())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await asyncio.shield(waiting)
    assert not waiting.done()
    gate.open()
    async with asyncio.timeout(1):
        await waiting


async def test_passage_can_be_cancelled_while_closed() -> None:
    gate = Gate()
    gate.close()
    waiting = asyncio.create_task(gate.passage())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(1):
            await waiting
