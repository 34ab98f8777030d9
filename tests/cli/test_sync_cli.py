"""`migrator sync SPEC.yaml` as a user runs it, PostgreSQL → PostgreSQL with a cursor column: one
pass per call (the first copies everything, the next only what changed), or with `--every` a pass
every so often until Ctrl-C (exit 130); a bad `--every` is refused with exit 2."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.cli import Cli, kill_when, stopped

ITEMS = "CREATE TABLE items (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now())"


async def rows(dsn: str) -> list[tuple[object, ...]]:
    if not await pg.fetchval(dsn, "SELECT to_regclass('items') IS NOT NULL"):
        return []
    return await pg.fetch(dsn, "SELECT * FROM items ORDER BY id")


@pytest.fixture
async def spec(new_pg_db: NewDatabase, tmp_path: Path) -> tuple[Path, str, str]:
    """A spec file syncing `items` by its cursor column (deletes detected); its source and target."""
    source, target = await new_pg_db(), await new_pg_db()
    await pg.execute(source, ITEMS, "INSERT INTO items (id, name, updated_at) SELECT i, 'item ' || i, "
                                    "'2026-01-01'::timestamptz + i * interval '1 second' FROM generate_series(1, 200) i")
    path = tmp_path / "sync.yaml"
    path.write_text(f"source: {source}\ntarget: {target}\ntables: [items]\nbatchSize: 50\n"
                    "incremental:\n  items:\n    cursor: updated_at\ndetectDeletes: true\n")
    return path, source, target


async def test_each_sync_call_is_one_pass_and_brings_the_target_level_with_the_source(
    cli: Cli, spec: tuple[Path, str, str]
) -> None:
    path, source, target = spec

    first = await cli.run("sync", str(path))
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert len(await rows(target)) == 200
    assert await rows(target) == await rows(source)

    await pg.execute(source, "INSERT INTO items (id, name) VALUES (201, 'new')",
                     "UPDATE items SET name = 'changed', updated_at = now() WHERE id IN (3, 100)",
                     "DELETE FROM items WHERE id IN (4, 5)")
    second = await cli.run("sync", str(path))
    assert second.returncode == 0, second.stderr
    assert "Syncing migration" in second.stdout  # the same migration, not a new one
    assert "sync pass 1" in second.stdout, second.stdout
    assert await rows(target) == await rows(source)
    assert len(await rows(target)) == 200 + 1 - 2


async def printed(cli: Cli, proc: asyncio.subprocess.Process, text: str, timeout: float = 20) -> str:
    """Wait until the running `migrator` has printed `text`; its output so far."""
    try:
        async with asyncio.timeout(timeout):
            while text not in (out := cli.output()[0]):
                if proc.returncode is not None:
                    pytest.fail(f"migrator ended (exit {proc.returncode}) before printing {text!r}: {cli.output()}")
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"migrator did not print {text!r} within {timeout} s: {cli.output()}")
    return out


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_sync_every_keeps_the_target_level_until_a_signal_which_exits_130(
    cli: Cli, spec: tuple[Path, str, str], stop: signal.Signals
) -> None:
    path, source, target = spec
    assert (await cli.run("sync", str(path))).returncode == 0

    proc = await cli.start("sync", str(path), "--every", "1s")
    try:
        out = await printed(cli, proc, "sync pass 1")  # a pass of its own done: the next changes come later
        assert "a pass every 1 s" in out
        await pg.execute(source, "INSERT INTO items (id, name) VALUES (301, 'while syncing')",
                         "UPDATE items SET name = 'changed', updated_at = now() WHERE id = 7",
                         "DELETE FROM items WHERE id = 8")
        try:
            async with asyncio.timeout(20):
                while await rows(target) != await rows(source):
                    if proc.returncode is not None:
                        pytest.fail(f"migrator sync --every ended (exit {proc.returncode}): {cli.output()}")
                    await asyncio.sleep(0.2)
        except TimeoutError:
            pytest.fail(f"the target did not catch up with the source within 20 s: {cli.output()}")
        await asyncio.sleep(0.3)
        assert proc.returncode is None, f"migrator sync --every ended by itself: {cli.output()}"
        returncode = await stopped(proc, stop, 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stdout, stderr = cli.output()

    assert returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr
    assert "sync pass 2" in stdout, stdout  # the changes came in a later pass of the same process
    assert "resume" in stderr  # says how to go on
    assert await rows(target) == await rows(source)

    await pg.execute(source, "UPDATE items SET name = 'after the stop', updated_at = now() WHERE id = 9")
    again = await cli.run("sync", str(path))  # the stopped sync goes on with one more pass
    assert again.returncode == 0, again.stderr
    assert await rows(target) == await rows(source)


@pytest.mark.parametrize("every", ["0s", "soon", "25h"])
async def test_a_bad_every_exits_2_saying_what_a_duration_is(cli: Cli, spec: tuple[Path, str, str], every: str) -> None:
    path, _, target = spec
    result = await cli.run("sync", str(path), "--every", every)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "--every" in result.stderr and every in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert await rows(target) == []


async def test_sync_cutover_makes_the_last_pass_verifies_deep_and_no_pass_follows(
    cli: Cli, spec: tuple[Path, str, str]
) -> None:
    path, source, target = spec
    assert (await cli.run("sync", str(path))).returncode == 0
    await pg.execute(source, "UPDATE items SET name = 'last change', updated_at = now() WHERE id = 7")

    done = await cli.run("sync", str(path), "--cutover")

    assert done.returncode == 0, done.stderr
    assert "Cut over: lag 0 row(s), verification OK" in done.stdout, done.stdout
    assert await rows(target) == await rows(source)
    again = await cli.run("sync", str(path))
    assert again.returncode == 1 and "was cut over" in again.stderr, again.stderr
    both = await cli.run("sync", str(path), "--cutover", "--every", "5s")
    assert both.returncode == 2 and "--cutover" in both.stderr


@pytest.mark.parametrize("capture", [False, True], ids=["watermark", "change-capture"])
async def test_a_sync_pass_killed_midway_is_finished_exactly_by_the_next_sync(
    cli: Cli, new_pg_db: NewDatabase, tmp_path: Path, capture: bool
) -> None:
    """`kill -9` of `migrator sync` once some of pass 1's rows are in; the next `migrator sync` goes on
    with the same pass from its checkpoint (not from the old mark, not with a new pass), and the
    target equals the source — every update once, no row missing."""
    source, target = await new_pg_db(), await new_pg_db()
    await pg.execute(source, ITEMS, "INSERT INTO items (id, name, updated_at) SELECT i, 'v1', '2026-01-01'::timestamptz "
                                    "+ i * interval '1 second' FROM generate_series(1, 60000) i")
    table = "{capture: true}" if capture else "{cursor: updated_at}"
    path = tmp_path / "sync.yaml"
    path.write_text(f"source: {source}\ntarget: {target}\ntables: [items]\nbatchSize: 500\nparallelBatches: 1\n"
                    f"incremental: {{items: {table}}}\n")
    try:
        assert (await cli.run("sync", str(path))).returncode == 0
        await pg.execute(source, "SET synchronous_commit = on; UPDATE items SET name = 'v2', "
                                 "updated_at = '2026-06-01'::timestamptz + id * interval '1 second' WHERE id % 2 = 0")

        async def updated() -> int:
            return int(str(await pg.fetchval(target, "SELECT count(*) FROM items WHERE name = 'v2'")))

        if capture:  # a capture window is one transaction: kill as soon as the pass has begun instead
            proc = await cli.start("sync", str(path))
            await printed(cli, proc, "Syncing migration", 20)
            await asyncio.sleep(0.3)
            if proc.returncode is not None:
                pytest.skip("the change-capture pass ended before it could be killed; nothing was tested")
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        else:
            await kill_when(cli, ("sync", str(path)), updated)
            assert 0 < await updated() < 30000
        again = await cli.run("sync", str(path))
        assert again.returncode == 0, again.stderr
        assert "sync pass 1" in again.stdout, again.stdout  # the killed pass, finished: not a new one
        assert await rows(target) == await rows(source)
    finally:
        if capture:
            for (slot,) in await pg.fetch(source, "SELECT slot_name FROM pg_replication_slots"):
                await pg.execute(source, f"SELECT pg_drop_replication_slot('{slot}')")
