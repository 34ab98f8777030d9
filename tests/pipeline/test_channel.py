"""Channel: a bounded FIFO whose full state is the backpressure between stages."""

from __future__ import annotations

import asyncio

import pytest

from service.pipeline.channel import Channel


async def drain(ch: Channel[int]) -> list[int]:
    return [item async for item in ch]


async def test_put_waits_while_the_channel_is_full() -> None:
    ch: Channel[int] = Channel(2)
    await ch.put(1)
    await ch.put(2)
    blocked = asyncio.create_task(ch.put(3))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await asyncio.shield(blocked)
    assert not blocked.done()
    items = aiter(ch)
    assert await anext(items) == 1
    async with asyncio.timeout(1):
        await blocked  # taking one item made room
    await items.aclose()  # type: ignore[attr-defined]
    assert ch.qsize() == 2


async def test_items_come_out_in_order_and_iteration_ends_after_close() -> None:
    ch: Channel[int] = Channel(10)
    for i in range(5):
        await ch.put(i)
    await ch.close()
    async with asyncio.timeout(1):
        assert await drain(ch) == [0, 1, 2, 3, 4]


async def test_every_concurrent_consumer_stops_after_close() -> None:
    ch: Channel[int] = Channel(1)

    async def produce() -> None:
        for i in range(100):
            await ch.put(i)
        await ch.close()

    async with asyncio.timeout(2):
        results = await asyncio.gather(drain(ch), drain(ch), drain(ch), produce())
    got = sorted(results[0] + results[1] + results[2])
    assert got == list(range(100))


async def test_close_of_a_full_channel_waits_for_room_and_loses_nothing() -> None:
    ch: Channel[int] = Channel(1)
    await ch.put(7)
    closing = asyncio.create_task(ch.close())
    async with asyncio.timeout(1):
        assert await drain(ch) == [7]
        await closing


async def test_put_after_close_is_refused() -> None:
    ch: Channel[int] = Channel(1)
    await ch.close()
    with pytest.raises(RuntimeError):
        await ch.put(1)


def test_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        Channel(0)
