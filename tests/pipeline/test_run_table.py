"""run_table: producer -> stage -> N writers over bounded channels, with the pause gate.

Driven with the in-memory ListSource / ListTableWriter (tests/support/memory.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from service.core.batch import Batch, Checkpoint
from service.core.schema import TableSchema
from service.pipeline.gate import Gate
from service.pipeline.pipeline import PipelineConfig, first_cause, run_table
from service.pipeline.progress import InFlight, TableProgress
from tests.support.memory import ListSource, ListTableWriter

ROWS = [{"id": i, "name": f"row {i}"} for i in range(1000)]


async def identity(batch: Batch) -> Batch:
    return batch


@dataclass
class Run:
    """One table's pipeline with everything a test looks at."""

    source: ListSource
    schema: TableSchema
    writer: ListTableWriter
    gate: Gate = field(default_factory=Gate)
    in_flight: InFlight = field(default_factory=InFlight)
    progress: TableProgress = field(default_factory=lambda: TableProgress("t", "t", len(ROWS)))
    committed: list[Checkpoint] = field(default_factory=list)

    async def on_commit(self, batch: Batch, checkpoint: Checkpoint) -> None:
        self.committed.append(checkpoint)

    async def __call__(self, *, batch_size: int = 10, parallel: int = 1, capacity: int = 2,
                       start: Checkpoint | None = None) -> None:
        await run_table(
            batches=self.source.read(self.schema, after=start.position if start else None,
                                     start_row=1, batch_size=batch_size, native=None),
            stage=identity, writer=self.writer, progress=self.progress, start=start, gate=self.gate,
            in_flight=self.in_flight, on_commit=self.on_commit,
            config=PipelineConfig(parallel=parallel, channel_capacity=capacity),
        )


async def make_run(*, rows: list[dict[str, object]] = ROWS, source: ListSource | None = None,
                   **writer_options: object) -> Run:
    source = source or ListSource({"t": rows})
    schema = await source.describe("t")
    return Run(source, schema, ListTableWriter(schema, **writer_options))  # type: ignore[arg-type]


async def test_every_row_is_written_once_in_source_order() -> None:
    run = await make_run()
    async with asyncio.timeout(5):
        await run(batch_size=7)
    assert run.writer.rows == ROWS
    assert run.progress.written == len(ROWS)
    assert run.committed[-1].position == len(ROWS)


async def test_parallel_writers_commit_checkpoints_in_read_order() -> None:
    # Later batches are prepared faster, so they are ready first; commits must still go in order.
    run = await make_run(max_writers=4, delay=lambda seq: 0.02 * (4 - seq % 4))
    async with asyncio.timeout(10):
        await run(batch_size=50, parallel=4)
    assert run.writer.rows == ROWS
    positions = [c.position for c in run.committed]
    assert positions == list(range(50, len(ROWS) + 1, 50))
    assert [c.rows_written for c in run.committed] == positions
    assert [c.batches for c in run.committed] == list(range(1, len(positions) + 1))


async def test_a_resumed_table_continues_the_counts_of_its_checkpoint() -> None:
    run = await make_run()
    start = Checkpoint(position=600, rows_written=600, rows_failed=0, batches=6)
    async with asyncio.timeout(5):
        await run(batch_size=100, start=start)
    assert run.writer.rows == ROWS[600:]
    assert run.committed[-1] == Checkpoint(position=1000, rows_written=1000, rows_failed=0, batches=10)


async def test_a_stalled_writer_stops_the_reader_after_a_bounded_number_of_batches() -> None:
    run = await make_run()
    run.writer.hold.clear()
    task = asyncio.create_task(run(batch_size=1, parallel=2, capacity=2))
    await asyncio.sleep(0.3)
    read_while_stalled = run.source.batches_read
    await asyncio.sleep(0.2)
    # read and not committed: one per writer (2) plus the one being prepared, whatever the channels hold
    assert read_while_stalled <= 2 + 1
    assert run.source.batches_read == read_while_stalled
    assert run.writer.rows == []
    run.writer.hold.set()
    async with asyncio.timeout(10):
        await task
    assert run.writer.rows == ROWS


async def test_a_writer_error_fails_run_table_with_that_error_without_hanging() -> None:
    boom = RuntimeError("disk on fire")
    run = await make_run(max_writers=3, fail_on=5, error=boom)
    with pytest.raises(BaseException) as raised:
        async with asyncio.timeout(5):
            await run(batch_size=10, parallel=3)
    assert first_cause(raised.value) is boom
    assert [c.position for c in run.committed] == [10, 20, 30, 40, 50]
    assert run.in_flight.count == 0


async def test_a_source_error_fails_run_table_with_that_error_without_hanging() -> None:
    boom = ConnectionResetError("source went away")
    run = await make_run(source=ListSource({"t": ROWS}, fail_at=3, error=boom))
    with pytest.raises(BaseException) as raised:
        async with asyncio.timeout(5):
            await run(batch_size=10, parallel=2)
    assert first_cause(raised.value) is boom
    assert run.writer.rows == ROWS[:30]


async def test_a_stage_error_fails_run_table_with_that_error_without_hanging() -> None:
    boom = ValueError("bad transform")
    run = await make_run()

    async def stage(batch: Batch) -> Batch:
        if batch.seq == 2:
            raise boom
        return batch

    with pytest.raises(BaseException) as raised:
        async with asyncio.timeout(5):
            await run_table(
                batches=run.source.read(run.schema, after=None, start_row=1, batch_size=10, native=None),
                stage=stage, writer=run.writer, progress=run.progress, start=None, gate=run.gate,
                in_flight=run.in_flight, on_commit=run.on_commit, config=PipelineConfig(parallel=2),
            )
    assert first_cause(raised.value) is boom
    assert run.writer.rows == ROWS[:20]


async def test_a_closed_gate_stops_reading_until_it_opens() -> None:
    run = await make_run()
    run.gate.close()
    task = asyncio.create_task(run(batch_size=10))
    await asyncio.sleep(0.2)
    assert run.source.batches_read == 0
    assert not task.done()
    run.gate.open()
    async with asyncio.timeout(5):
        await task
    assert run.writer.rows == ROWS


async def test_closing_the_gate_mid_table_lets_read_batches_commit_then_reads_nothing_more() -> None:
    run = await make_run()
    run.writer.hold.clear()
    task = asyncio.create_task(run(batch_size=10))
    await asyncio.sleep(0.1)
    run.gate.close()
    run.writer.hold.set()
    async with asyncio.timeout(2):
        await run.in_flight.wait_zero()  # what Migration.pause() waits for
    read = run.source.batches_read
    assert len(run.writer.rows) == 10 * read
    await asyncio.sleep(0.2)
    assert run.source.batches_read == read
    assert not task.done()
    run.gate.open()
    async with asyncio.timeout(5):
        await task
    assert run.writer.rows == ROWS


async def test_cancelling_run_table_ends_every_stage_promptly() -> None:
    run = await make_run()
    run.writer.hold.clear()
    task = asyncio.create_task(run(batch_size=10, parallel=3))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(1):
            await task
    assert run.in_flight.count == 0
    assert run.writer.rows == []
