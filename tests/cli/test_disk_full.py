"""A full disk under a CSV target: the run fails with a clear message naming the file and the
cause; no file that looks complete is left (only the hidden partial one); the last checkpoint
stays valid, so once there is room again the same command resumes and the file ends exact."""

from __future__ import annotations

import csv
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NewDatabase
from tests.support import pg
from tests.support.bigtable import create_big_table
from tests.support.cli import Cli

ROWS = 40_000  # about 3 MB of CSV


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (this test needs root, as the suite runs; skipped where mounting is refused)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_fails_the_run_clearly_and_a_resume_after_room_is_made_ends_exact(
    cli: Cli, new_pg_db: NewDatabase, small_disk: Path
) -> None:
    source = await new_pg_db()
    await create_big_table(source, ROWS)
    out = small_disk / "out"
    args = ("run", "--source", source, "--target", f"csv:///{out}", "--tables", "big", "--batch-size", "2000",
            "--quiet")

    full = await cli.run(*args)

    assert full.returncode == 1, full.stdout + full.stderr
    [line] = full.error_lines()
    assert "No space left on device" in line and "big.csv" in line, line
    assert not (out / "big.csv").exists()  # nothing that looks complete
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []

    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    again = await cli.run(*args)

    assert again.returncode == 0, again.stdout + again.stderr
    assert "Resuming" in again.stdout
    with (out / "big.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "name", "amount", "note"]
    ids = [int(r[0]) for r in rows[1:]]
    assert sorted(ids) == list(range(1, ROWS + 1))  # every row once: none lost, none twice
    assert await pg.count_rows(source, "big") == ROWS
