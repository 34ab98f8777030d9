"""Running `migrator` as a user does: a separate process with the MIGRATOR_* environment."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIGRATOR = ROOT / ".venv" / "bin" / "migrator"


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


class Cli:
    """`migrator` with a state store and data folder of the test's own, run in `workdir`."""

    def __init__(self, workdir: Path, *, state_url: str, data_dir: Path) -> None:
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        self.env.update(MIGRATOR_STATE_URL=state_url, MIGRATOR_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
        self._runs = 0

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        """Start `migrator ARGS`; its output goes to files (a pipe nobody drains could stall it)."""
        self._runs += 1
        out = open(self.workdir / f"migrator-{self._runs}.out", "wb")
        err = open(self.workdir / f"migrator-{self._runs}.err", "wb")
        with out, err:
            return await asyncio.create_subprocess_exec(
                str(MIGRATOR), *args, cwd=self.workdir, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=err,
            )

    def output(self) -> tuple[str, str]:
        """stdout and stderr of the last process started."""
        return tuple(  # type: ignore[return-value]
            (self.workdir / f"migrator-{self._runs}.{ext}").read_text(errors="replace") for ext in ("out", "err")
        )

    async def run(self, *args: str, timeout: float = 60) -> Result:
        proc = await self.start(*args)
        try:
            async with asyncio.timeout(timeout):
                returncode = await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return Result(returncode, *self.output())


async def stopped(proc: asyncio.subprocess.Process, how: signal.Signals, timeout: float) -> int:
    """Send `how` to a running `migrator` and return its exit status (it must end within `timeout` s)."""
    proc.send_signal(how)
    async with asyncio.timeout(timeout):
        return await proc.wait()


async def kill_when(cli: Cli, args: tuple[str, ...], committed: Callable[[], Awaitable[int]]) -> int:
    """Start `migrator ARGS`, SIGKILL it as soon as some rows are committed; returns that count."""
    proc = await cli.start(*args)
    try:
        async with asyncio.timeout(60):
            while (done := await committed()) == 0:
                if proc.returncode is not None:
                    pytest.fail(f"migrator ended (exit {proc.returncode}) before any row was committed: "
                                f"{cli.output()[1]}")
                await asyncio.sleep(0.005)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; use more rows"
    return done


async def kill_half_way_and_rerun(cli: Cli, args: tuple[str, ...], committed: Callable[[], Awaitable[int]],
                                  total: int) -> Result:
    """`kill -9` of `migrator ARGS` once some but not all of its `total` rows are committed, then the
    same command again: returns that second run's result, checked to exit 0 saying it resumed."""
    await kill_when(cli, args, committed)
    assert 0 < await committed() < total
    result = await cli.run(*args)
    assert result.returncode == 0, result.stderr
    assert "Resuming" in result.stdout
    return result


@dataclass(frozen=True)
class Kill:
    """One `kill -9` of `kill_many`: where it was aimed and what the target held once the process was gone."""

    attempt: int
    kind: str  # "early": `delay` s after the start; "mid": `delay` s after this run's first commit reaching `aim`
    delay: float
    aim: int  # the row count this run was to reach before its kill ("early": at the latest)
    before: int  # rows committed when this run started
    after: int  # rows committed once the killed process was gone
    seconds: float  # how long the killed process ran

    def mid_run(self, total: int) -> bool:
        """Killed with some but not all of the `total` rows in the target."""
        return 0 < self.after < total

    def __str__(self) -> str:
        return (f"kill {self.attempt}: {self.kind} +{self.delay:.3f}s (aim {self.aim}), ran {self.seconds:.3f}s, "
                f"rows {self.before} -> {self.after}")


async def kill_many(cli: Cli, args: tuple[str, ...], committed: Callable[[], Awaitable[int]], *, total: int,
                    kills: int, rng: random.Random, early: tuple[float, float] = (0.05, 0.6),
                    extra: tuple[float, float] = (0.0, 0.01), early_share: float = 0.3,
                    timeout: float = 60) -> list[Kill]:
    """`kill -9` of `migrator ARGS` `kills` times, the same command started again after each (so that
    it resumes), at moments drawn from `rng`. Each run aims at a random row count `aim` within the
    next 1/(kills left + 1) of the `total` rows still to copy, so that the kills spread over the whole
    migration. About `early_share` of the kills are "early": a random `early` s after the start (while
    the process starts, resumes, or writes its first batches), at the latest once `committed()`
    reaches `aim`; the others "mid": a random `extra` s after this run's first commit that reaches
    `aim` (between or amid batches). Every SIGKILL lands on a live process: the test fails when a run
    ends by itself first (an error, or the migration completed — then use more rows or smaller
    batches). Returns the kills, each printed as it happens; the caller then runs the command to the
    end and checks the target."""
    n_early = min(kills, max(1, round(kills * early_share))) if kills > 1 else 0
    kinds = ["early"] * n_early + ["mid"] * (kills - n_early)
    rng.shuffle(kinds)
    loop = asyncio.get_running_loop()
    done: list[Kill] = []
    for attempt, kind in enumerate(kinds, 1):
        before = await committed()
        aim = before + 1 + int(rng.random() * (total - before) / (kills - attempt + 2))
        delay = rng.uniform(*early) if kind == "early" else rng.uniform(*extra)
        started = loop.time()
        proc = await cli.start(*args)
        try:
            async with asyncio.timeout(timeout):
                deadline = started + delay if kind == "early" else None
                while (proc.returncode is None and (deadline is None or loop.time() < deadline)
                       and await committed() < aim):
                    await asyncio.sleep(0.002)
                if kind == "mid" and proc.returncode is None:
                    try:
                        async with asyncio.timeout(delay):
                            await proc.wait()
                    except TimeoutError:
                        pass
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
        seconds = loop.time() - started
        if proc.returncode != -signal.SIGKILL:
            out, err = cli.output()
            pytest.fail(f"kill {attempt} ({kind} +{delay:.3f}s, aim {aim}) did not land: migrator ended by itself "
                        f"with exit {proc.returncode} after {seconds:.3f}s (rows {before} -> {await committed()}); "
                        f"a completed run needs more rows or smaller batches\n{out[-2000:]}\n{err[-4000:]}")
        kill = Kill(attempt, kind, delay, aim, before, await committed(), seconds)
        print(kill)
        done.append(kill)
    return done
