"""Running `migrator` as a user does: a separate process with the MIGRATOR_* environment."""

from __future__ import annotations

import asyncio
import os
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
