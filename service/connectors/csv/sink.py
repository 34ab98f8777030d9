"""CSV files as a target, written atomically: rows go to a hidden partial file (its length after
each batch is the checkpoint's `sink_state`) that is fsynced and renamed into place at the end.
A resumed run truncates the partial file to the checkpointed length, so no row is doubled.

Batches are not fsynced one by one: a write() that returned survives a crash of the process
(`kill -9`), which is the same durability the state store's checkpoints have; an OS crash loses
both, and the resumed run then truncates to whatever checkpoint survived."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv

from service.connectors.base import CommitTurn, OnRefusal
from service.connectors.csv.dialect import CsvOptions, table_path
from service.core.arrow_text import printable
from service.core.batch import Batch, Checkpoint, NativeFormat, NativePayload
from service.core.errors import EndpointError, InvalidInput, TerminalError
from service.core.excel import neutralised
from service.core.schema import ForeignKey, TableSchema
from service.core.urls import EndpointUrl


class CsvSink:
    kind = "csv"

    def __init__(self, url: EndpointUrl, *, options: CsvOptions | None = None, replace_existing: bool = False) -> None:
        assert url.path is not None
        self.url = url
        self.root: Path = url.path
        self.options = options or CsvOptions()
        self.replace_existing = replace_existing

    async def check(self) -> None:
        folder = self.root.parent if self.root.suffix.lower() == ".csv" else self.root
        if not folder.exists():
            try:
                folder.mkdir(parents=True)
            except OSError as exc:
                raise TerminalError(f"cannot create CSV target folder {folder}: {exc.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise TerminalError(f"CSV target folder {folder} is not writable")

    def column_types(self, source: TableSchema) -> list[tuple[str, str]]:
        return [(c.name, "text") for c in source.columns]  # a CSV file has text only

    async def probe_write(self, source: TableSchema, data: pa.RecordBatch) -> float:
        """Write the rows as CSV to a hidden file in the target folder, synced, then removed."""
        await self.check()
        folder = self.root.parent if self.root.suffix.lower() == ".csv" else self.root

        def probe() -> float:
            started = time.monotonic()
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".migrator-probe-", suffix=".csv") as f:
                pacsv.write_csv(printable(data), f)
                f.flush()
                os.fsync(f.fileno())
                return time.monotonic() - started

        try:
            return await asyncio.to_thread(probe)
        except OSError as exc:
            raise TerminalError(f"cannot write to CSV target folder {folder}: {exc.strerror}") from None

    async def rollback(self, migration_id: str) -> list[str]:
        """Undo the migration: files it created are removed, files it replaced get their old
        content back, its unfinished partial files are removed. Running it again changes nothing."""
        folder = self.root.parent if self.root.suffix.lower() == ".csv" else self.root

        def undo() -> list[str]:
            done: list[str] = []
            if not folder.is_dir():
                return ["nothing to undo: no target folder"]
            for partial in folder.glob(f".*.{migration_id}.partial"):
                partial.unlink()
                done.append(f"removed the unfinished {partial.name}")
            manifest = _manifest(folder, migration_id)
            files: dict[str, str] = orjson.loads(manifest.read_bytes()) if manifest.exists() else {}
            for name, how in files.items():
                path, before = folder / name, _before(folder / name, migration_id)
                if how == "replaced" and before.exists():
                    os.replace(before, path)
                    done.append(f"restored {name} as it was before the run")
                elif how == "created" and path.exists():
                    path.unlink()
                    done.append(f"removed {name} (the run created it)")
            for left in folder.glob(f".*.{migration_id}.before"):  # kept aside, but never replaced
                left.unlink()
            manifest.unlink(missing_ok=True)
            _sync(folder)
            return done

        try:
            return await asyncio.to_thread(undo)
        except OSError as exc:
            raise TerminalError(f"rolling back in CSV folder {folder}: {exc.strerror}") from None

    async def add_foreign_keys(self, table: str, keys: Sequence[ForeignKey],
                               migration_id: str) -> list[tuple[str, str]]:
        return [("WARNING", f"{table}: foreign key {k.name} not recreated (CSV files have no foreign keys)") for k in keys]

    async def open_table(self, source: TableSchema, target_name: str, migration_id: str) -> CsvTableWriter:
        await self.check()
        path = table_path(self.root, target_name)
        partial = path.with_name(f".{path.name}.{migration_id}.partial")
        ours = _listed(path.parent, migration_id, path.name)  # published by this run before it stopped
        if path.exists() and not partial.exists() and not self.replace_existing and not ours:
            raise InvalidInput(f"target file {path} already exists; remove it, or use mode: replace to overwrite it")
        return CsvTableWriter(path, partial, source, target_name, self.options, migration_id)

    async def close(self) -> None:
        return None


class CsvTableWriter:
    on_refusal: OnRefusal = "fail"  # nothing to isolate: conformed rows are never refused here
    max_writers = 1  # one file, appended in order

    def __init__(self, path: Path, partial: Path, source: TableSchema, name: str, options: CsvOptions,
                 migration_id: str) -> None:
        self.path = path
        self.partial = partial
        self.migration_id = migration_id
        self.options = options
        self.schema = TableSchema(name=name, columns=source.columns, key=(), native_kind="csv")
        self.created = not path.exists()
        self._offset = 0

    def native_formats(self, source: TableSchema) -> frozenset[NativeFormat]:
        default = self.options.delimiter == "," and self.options.quote == '"' and self.options.is_utf8
        if not default:
            return frozenset()
        return frozenset({self._native})

    @property
    def _native(self) -> NativeFormat:
        """The pass-through payload this writer takes: the server's CSV, excel-safe when asked."""
        return NativeFormat.CSV_SAFE if self.options.excel_safe else NativeFormat.CSV

    def _header(self) -> bytes:
        out = io.StringIO()
        csv.writer(out, delimiter=self.options.delimiter, quotechar=self.options.quote or '"',
                   quoting=csv.QUOTE_MINIMAL if self.options.quote else csv.QUOTE_NONE,
                   lineterminator="\n").writerow(self.schema.column_names)
        return out.getvalue().encode(self.options.encoding) if self.options.header else b""

    def _resumable(self, stored: Checkpoint | None) -> bool:
        """A checkpoint holds only with its file: a partial file at least as long as it says."""
        return (stored is not None and stored.sink_state is not None and self.partial.exists()
                and self.partial.stat().st_size >= stored.sink_state)

    async def reconcile(self, stored: Checkpoint | None) -> Checkpoint | None:
        def prepare() -> int:
            if self._resumable(stored):
                assert stored is not None and stored.sink_state is not None
                with open(self.partial, "r+b") as f:
                    f.truncate(stored.sink_state)
                    os.fsync(f.fileno())
                return stored.sink_state
            header = self._header()
            with open(self.partial, "wb") as f:
                f.write(header)
                f.flush()
                os.fsync(f.fileno())
            return len(header)

        try:
            self._offset = await asyncio.to_thread(prepare)
        except OSError as exc:
            raise TerminalError(f"cannot write CSV file {self.partial}: {exc.strerror}") from None
        return stored if self._resumable(stored) else None

    def _encode(self, batch: Batch) -> list[bytes]:
        if isinstance(batch.data, NativePayload):
            if batch.data.format is not self._native:
                raise EndpointError(f"CSV sink cannot take a {batch.data.format} payload")
            return batch.data.parts
        data = printable(neutralised(batch.data) if self.options.excel_safe else batch.data)
        out = io.BytesIO()
        pacsv.write_csv(
            data,
            out,
            write_options=pacsv.WriteOptions(
                include_header=False,
                delimiter=self.options.delimiter,
                quoting_style="needed" if self.options.quote else "none",
            ),
        )
        raw = out.getvalue()
        return [raw if self.options.is_utf8 else raw.decode().encode(self.options.encoding)]

    async def write(self, batch: Batch, turn: CommitTurn) -> Checkpoint:
        def append() -> int:
            if not batch.rows:
                return self._offset
            parts = self._encode(batch)
            with open(self.partial, "r+b") as f:
                f.seek(self._offset)
                f.writelines(parts)
                return f.tell()

        try:
            end = await asyncio.to_thread(append)
        except OSError as exc:
            raise TerminalError(f"cannot write CSV file {self.path}: {exc.strerror}") from None
        checkpoint = replace(await turn(()), sink_state=end)
        self._offset = end
        return checkpoint

    async def finish(self) -> list[str]:
        def publish() -> None:
            with open(self.partial, "rb") as f:
                os.fsync(f.fileno())
            # For a rollback: the file it replaces is kept aside, and the run's manifest says
            # whether the file was new or replaced one (written before the file moves in).
            before = _before(self.path, self.migration_id)
            earlier = _listed(self.path.parent, self.migration_id, self.path.name)  # a resumed run's own file
            replaced = self.path.exists() and not before.exists() and earlier is None
            if replaced:
                os.link(self.path, before)
            _record(self.path.parent, self.migration_id, self.path.name,
                    earlier or ("replaced" if replaced or before.exists() else "created"))
            os.replace(self.partial, self.path)
            _sync(self.path.parent)

        try:
            await asyncio.to_thread(publish)
        except OSError as exc:
            raise TerminalError(f"cannot move {self.partial.name} into place as {self.path}: {exc.strerror}") from None
        return []

    async def close(self) -> None:
        return None



def _before(path: Path, migration_id: str) -> Path:
    """Where the file a run replaces is kept until it is rolled back."""
    return path.with_name(f".{path.name}.{migration_id}.before")


def _manifest(folder: Path, migration_id: str) -> Path:
    return folder / f".migrator-{migration_id}.json"


def _listed(folder: Path, migration_id: str, name: str) -> str | None:
    """How the run's manifest lists file `name` (created | replaced), if it does."""
    manifest = _manifest(folder, migration_id)
    if not manifest.exists():
        return None
    found = orjson.loads(manifest.read_bytes()).get(name)
    return None if found is None else str(found)


def _record(folder: Path, migration_id: str, name: str, how: str) -> None:
    """Add `name: how` (created | replaced) to the run's manifest, atomically and durably."""
    manifest = _manifest(folder, migration_id)
    files = orjson.loads(manifest.read_bytes()) if manifest.exists() else {}
    if files.get(name) == "replaced":
        return  # a file replaced once stays replaced: its first content is the one to restore
    files[name] = how
    scratch = manifest.with_suffix(".tmp")
    with open(scratch, "wb") as f:
        f.write(orjson.dumps(files))
        f.flush()
        os.fsync(f.fileno())
    os.replace(scratch, manifest)
    _sync(folder)


def _sync(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

