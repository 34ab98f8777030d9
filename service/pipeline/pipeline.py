"""One table's pipeline: producer -> stage -> N writers, linked by bounded channels.

    Source.read ─▶ Channel ─▶ stage (validate/transform) ─▶ Channel ─▶ N × TableWriter.write ─▶ on_commit
      ▲ the producer passes the pause Gate before reading each batch

Guarantees: memory is bounded by the channel capacities (a slow writer slows the reader); batches
commit in read order, so after each commit `on_commit` receives an exact checkpoint; an error in
any stage cancels the others and is raised as the run's cause; cancellation propagates to every
task and leaves the last committed checkpoint valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from service.connectors.base import TableWriter
from service.core.batch import Batch, Checkpoint, Reject
from service.pipeline.channel import Channel
from service.pipeline.gate import Gate
from service.pipeline.progress import InFlight, TableProgress
from service.pipeline.sequencer import CommitSequencer

log = logging.getLogger(__name__)

Stage = Callable[[Batch], Awaitable[Batch]]
OnCommit = Callable[[Batch, Checkpoint], Awaitable[None]]


@dataclass
class PipelineConfig:
    parallel: int = 1
    # Batches each channel holds; None: as many as there are writers (memory is bounded by
    # about 2 × capacity + writers + the source's read-ahead, whatever the table's size).
    channel_capacity: int | None = None


def first_cause(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = inner[0] if inner else exc.exceptions[0]
    return exc


async def run_table(
    *,
    batches: AsyncGenerator[Batch, None],
    stage: Stage,
    writer: TableWriter,
    progress: TableProgress,
    start: Checkpoint | None,
    gate: Gate,
    in_flight: InFlight,
    on_commit: OnCommit,
    config: PipelineConfig,
) -> None:
    """Move every batch of `batches` through `stage` into `writer`. Returns when all are committed."""
    parallel = max(1, min(config.parallel, writer.max_writers))
    capacity = max(1, config.channel_capacity or parallel)
    read_ch: Channel[Batch] = Channel(capacity)
    write_ch: Channel[Batch] = Channel(capacity)
    # Batches read and not yet committed: one per writer plus the one being prepared. This, not
    # the channels' sum, bounds memory (with the source's own read-ahead), at any table size.
    credits = asyncio.Semaphore(parallel + 1)
    sequencer = CommitSequencer(0)
    # Cumulative counters as of the last commit: the checkpoint recorded with each batch.
    committed = start or Checkpoint(position=None, rows_written=0, rows_failed=0, batches=0)
    mine = 0  # this table's share of in_flight, given back if the run ends early

    def flight(n: int) -> None:
        nonlocal mine
        mine += n
        in_flight.add(n)

    async def produce() -> None:
        # aclosing: a stopped or failed run closes the source's reader (files, cursors) at once.
        async with contextlib.aclosing(batches) as it:
            await _produce(it)

    async def _produce(it: AsyncIterator[Batch]) -> None:
        while True:
            # The credit first, the gate last: nothing may wait between passing the gate and
            # counting the read in flight, or a pause could complete and a read still start.
            await credits.acquire()
            try:
                await gate.passage()
            except BaseException:
                credits.release()
                raise
            flight(1)  # counted before reading, so a pause waits for this read too
            began = time.monotonic()
            try:
                batch = await anext(it, None)
            except BaseException:
                flight(-1)
                credits.release()
                raise
            if batch is None:
                flight(-1)
                credits.release()
                break
            batch.read_at = began
            progress.read += batch.rows_read
            await read_ch.put(batch)
        await read_ch.close()

    async def transform() -> None:
        async for batch in read_ch:
            await write_ch.put(await stage(batch))
        await write_ch.close()

    async def write() -> None:
        nonlocal committed
        async for batch in write_ch:

            refused: list[Reject] = []

            async def turn(refusals: Sequence[Reject], batch: Batch = batch) -> Checkpoint:
                # `committed` is read late on purpose: the cumulative counts as of our turn.
                refused.extend(refusals)
                await sequencer.wait_turn(batch.seq)
                return Checkpoint(
                    position=batch.upto,
                    rows_written=committed.rows_written + batch.rows - len(refused),
                    rows_failed=committed.rows_failed + len(batch.rejects) + len(refused),
                    batches=committed.batches + 1,
                    sink_state=committed.sink_state,
                )

            checkpoint = await writer.write(batch, turn)
            if refused:  # rows the target refused are rejects of this batch like any other
                batch = replace(batch, rejects=[*batch.rejects, *refused])
            # We still hold the turn: the state store sees checkpoints in order.
            try:
                committed = checkpoint
                progress.written = checkpoint.rows_written
                progress.failed = checkpoint.rows_failed
                progress.batches = checkpoint.batches
                await on_commit(batch, checkpoint)
            finally:
                await sequencer.advance(batch.seq)
                flight(-1)
                credits.release()

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce(), name=f"produce:{progress.table}")
            tg.create_task(transform(), name=f"transform:{progress.table}")
            for i in range(parallel):
                tg.create_task(write(), name=f"write:{progress.table}:{i}")
    finally:
        if mine:
            in_flight.add(-mine)
