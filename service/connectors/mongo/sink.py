"""Writing MongoDB collections, exactly once without transactions.

Each batch: (1) the ledger (`_migrator_checkpoints`) records the batch's last row as *pending*,
(2) the documents are written (`insert_many(ordered=False)`, or upserts / replacements by `_id`
in modes upsert / replace), (3) the ledger records the checkpoint. After a crash between (1) and
(3) the resumed run re-reads that batch: a duplicate `_id` in it is a document this run already
wrote (checked: it must equal ours) — anywhere else, a duplicate `_id` is a reject naming the key.

Rows become documents: a single-column key becomes `_id` (a composite key an `_id` sub-document of
its columns); a keyless source (a CSV file) gets stable ObjectIds derived from the row, so
replays are recognised too.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from service.connectors.base import CommitTurn, OnRefusal
from service.connectors.mongo import types
from service.connectors.mongo.connection import (
    Document,
    describe,
    endpoint_error,
    open_database,
    ping,
    reraise_swallowed_cancel,
)
from service.connectors.mongo.options import Embed, MongoOptions
from service.connectors.mongo.types import bson_type
from service.core.batch import Batch, Checkpoint, NativeFormat, NativePayload, Reject
from service.core.errors import EndpointError, InvalidInput
from service.core.schema import ForeignKey, TableSchema
from service.core.urls import EndpointUrl

LEDGER = "_migrator_checkpoints"
# Before-images: each document a run is about to write into a collection it did not create, as
# it was before (or absent), kept for a rollback: {_id: {m, c, i}, m, c, doc}.
BEFORE = "_migrator_before"
DUPLICATE_KEY = 11000


class MongoSink:
    kind = "mongodb"

    def __init__(self, url: EndpointUrl, *, timeout: float, mode: str = "insert",
                 options: MongoOptions | None = None) -> None:
        self.url = url
        self.where = describe(url)
        self.mode = mode
        self.options = options or MongoOptions()
        self.client, self.db = open_database(url, timeout)

    async def check(self) -> None:
        await ping(self.db, self.url)

    def column_types(self, source: TableSchema) -> list[tuple[str, str]]:
        return [(c.name, bson_type(c)) for c in source.columns]

    async def rollback(self, migration_id: str) -> list[str]:
        """Undo the migration: every document it wrote into a collection it did not create gets
        its before-image back (or is deleted, if it did not exist before); the collections it
        created are dropped; then its ledger entries and before-images go. Each step can run again,
        so a rollback interrupted half-way finishes when run once more."""
        try:
            done: list[str] = []
            restored: dict[str, int] = {}
            async for entry in self.db[BEFORE].find({"m": migration_id}):
                coll, key, doc = self.db[entry["c"]], entry["_id"]["i"], entry.get("doc")
                if doc is None:
                    await coll.delete_one({"_id": key})
                else:
                    await coll.replace_one({"_id": key}, doc, upsert=True)
                restored[entry["c"]] = restored.get(entry["c"], 0) + 1
            done += [f"restored {n} document(s) of {c} as they were before the run" for c, n in restored.items()]
            prefix = f"{migration_id}/"
            async for entry in self.db[LEDGER].find({}):
                lid = str(entry["_id"])
                if not lid.startswith(prefix) or not entry.get("created"):
                    continue
                name = lid[len(prefix):]
                if name in await self.db.list_collection_names():
                    await self.db.drop_collection(name)
                    done.append(f"dropped collection {name} (the run created it)")
            await self.db[BEFORE].delete_many({"m": migration_id})
            ours = [entry["_id"] async for entry in self.db[LEDGER].find({}) if str(entry["_id"]).startswith(prefix)]
            if ours:
                await self.db[LEDGER].delete_many({"_id": {"$in": ours}})
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, "rolling back") from None
        reraise_swallowed_cancel()
        return done

    async def probe_write(self, source: TableSchema, data: pa.RecordBatch) -> float:
        """insert_many into a collection of its own, dropped after."""
        docs = [{k: v if v is None or isinstance(v, int | float | str | bytes | bool | dt.datetime) else str(v)
                 for k, v in row.items()} for row in data.to_pylist()]
        coll = self.db[f"_migrator_probe_{uuid.uuid4().hex[:12]}"]
        try:
            started = time.monotonic()
            if docs:
                await coll.insert_many(docs, ordered=False)
            return time.monotonic() - started
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, "probing the write speed") from None
        finally:
            try:
                await coll.drop()
            except PyMongoError:
                pass
            reraise_swallowed_cancel()

    async def add_foreign_keys(self, table: str, keys: Sequence[ForeignKey],
                               migration_id: str) -> list[tuple[str, str]]:
        return [("WARNING", f"{table}: foreign key {k.name} not recreated (MongoDB has no foreign keys)") for k in keys]

    async def open_table(self, source: TableSchema, target_name: str, migration_id: str) -> MongoTableWriter:
        embed = self.options.embed.get(source.name)
        ledger = self.db[LEDGER]
        if embed is not None:  # rows go into their parents' documents, not a collection of their own
            lid = f"{migration_id}/{embed.into}/{source.name}"
            try:
                await ledger.update_one({"_id": lid}, {"$setOnInsert": {"created": False, "checkpoint": None,
                                                                         "pending_row": None}}, upsert=True)
            except PyMongoError as exc:
                raise endpoint_error(exc, self.url, f"preparing {embed.into} for {source.name}") from None
            return MongoTableWriter(self, source, embed.into, migration_id, created=False, embed=embed)
        lid = f"{migration_id}/{target_name}"
        try:
            exists = target_name in await self.db.list_collection_names()
            if not exists:
                await self.db.create_collection(target_name)
                # A new collection: any earlier checkpoint of it is void (it was dropped since).
                await ledger.replace_one({"_id": lid}, {"_id": lid, "created": True, "checkpoint": None,
                                                        "pending_row": None}, upsert=True)
            else:
                await ledger.update_one({"_id": lid}, {"$setOnInsert": {"created": False, "checkpoint": None,
                                                                         "pending_row": None}}, upsert=True)
            entry = await ledger.find_one({"_id": lid})
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, f"preparing collection {target_name}") from None
        reraise_swallowed_cancel()
        created = bool(entry and entry.get("created"))
        return MongoTableWriter(self, source, target_name, migration_id, created)

    async def close(self) -> None:
        await self.client.close()


class MongoTableWriter:
    max_writers = 1  # batches commit in order; MongoDB gains little from parallel bulk inserts
    on_refusal: OnRefusal = "reject"

    def __init__(self, sink: MongoSink, source: TableSchema, target: str, migration_id: str, created: bool,
                 embed: Embed | None = None) -> None:
        self.sink = sink
        self.embed = embed
        self.schema = source  # documents take the source's columns as they are
        self.created = created
        self._target = target
        self._migration_id = migration_id
        self._coll = sink.db[target]
        self._ledger = sink.db[LEDGER]
        self._lid = f"{migration_id}/{target}" + (f"/{source.name}" if embed else "")
        self._replay_until = 0  # rows up to this one may already be in the target (a crash mid-batch)
        declared = set(sink.options.object_ids.get(source.name, ()))
        self._converters = [(c.name, conv) for c in source.columns
                            if (conv := types.document_converter(c, c.name in declared)) is not None]
        self._match = sink.options.keys.get(source.name, ("_id",))  # what upsert/replace match on

    def native_formats(self, source: TableSchema) -> frozenset[NativeFormat]:
        return frozenset({NativeFormat.BSON}) if source.native_kind == "mongodb" else frozenset()

    # Incremental sync: writes already replace by key (the sink's mode is upsert then); with
    # `soft_delete` deletes set that field true and writes set it false.
    upsert = False
    soft_delete: str | None = None

    async def prepare_sync(self) -> None:
        return None  # documents take the soft-delete field when it is first set; before-images are kept anyway

    async def flush(self) -> None:
        return None  # each write was acknowledged by the server (the client's write concern)

    async def delete_keys(self, keys: pa.RecordBatch) -> int:
        """Delete the documents with these keys (key columns, as the rows' `_id`) — or set their
        `soft_delete` field true; their versions from before the run are kept for a rollback."""
        if not keys.num_rows or self.embed is not None:
            return 0
        docs, _, _ = self._documents(Batch(seq=0, table=self.schema.name, upto=None, first_row=1, data=keys,
                                           rows_read=keys.num_rows))
        ids = [d["_id"] for d in docs]
        try:
            if not self.created:
                await self._keep_before([{"_id": i} for i in ids] if self._match == ("_id",) else docs)
            if self.soft_delete:
                # (already flagged documents are matched, not modified: modified_count leaves them out)
                result = await self._coll.update_many({"_id": {"$in": ids}}, {"$set": {self.soft_delete: True}})
                return int(result.modified_count)
            return int((await self._coll.delete_many({"_id": {"$in": ids}})).deleted_count)
        except PyMongoError as exc:
            raise endpoint_error(exc, self.sink.url, f"deleting from {self._target}") from None

    async def reconcile(self, stored: Checkpoint | None) -> Checkpoint | None:
        entry = await self._ledger.find_one({"_id": self._lid}) or {}
        self._replay_until = int(entry.get("pending_row") or 0)
        saved = entry.get("checkpoint")
        if not saved:
            return None
        return Checkpoint(saved["position"], saved["rows_written"], saved["rows_failed"], saved["batches"], None)

    async def write(self, batch: Batch, turn: CommitTurn) -> Checkpoint:
        docs, numbers, refused = self._documents(batch)
        last_row = batch.first_row + batch.rows_read - 1
        try:
            await self._ledger.update_one({"_id": self._lid}, {"$set": {"pending_row": last_row}}, upsert=True)
            reraise_swallowed_cancel()
            refused += await self._store(docs, numbers, replay=batch.first_row <= self._replay_until,
                                         table=batch.table)
            reraise_swallowed_cancel()
            checkpoint = await turn(refused)
            await self._ledger.update_one({"_id": self._lid}, {"$set": {"pending_row": None, "checkpoint": {
                "position": checkpoint.position, "rows_written": checkpoint.rows_written,
                "rows_failed": checkpoint.rows_failed, "batches": checkpoint.batches}}}, upsert=True)
            reraise_swallowed_cancel()
        except PyMongoError as exc:
            raise endpoint_error(exc, self.sink.url, f"writing {self._target}") from None
        return checkpoint

    def _documents(self, batch: Batch) -> tuple[list[Any], list[int], list[Reject]]:
        """The batch's documents, each one's source row number, and the rows that cannot become
        documents (a value BSON cannot hold) as rejects."""
        if isinstance(batch.data, NativePayload):
            parts = batch.data.parts
            return [RawBSONDocument(p) for p in parts], list(range(batch.first_row, batch.first_row + len(parts))), []
        data: pa.RecordBatch = batch.data
        rows: list[Document] = data.to_pylist()
        numbers = (batch.numbers.to_pylist() if batch.numbers is not None
                   else list(range(batch.first_row, batch.first_row + len(rows))))
        bad: dict[int, Reject] = {}
        for name, conv in self._converters:
            for i, row in enumerate(rows):
                value = row.get(name)
                if value is not None:
                    try:
                        row[name] = conv(value)
                    except (types.Misfit, ValueError, ArithmeticError) as exc:
                        key = ",".join(str(row.get(k)) for k in self.schema.key) or None
                        bad.setdefault(i, Reject(batch.table, numbers[i], key, name, str(value)[:1000], "type",
                                                 f"{name}: {value!r} cannot be stored in MongoDB: {exc}"))
        if bad:
            rows = [r for i, r in enumerate(rows) if i not in bad]
            numbers = [n for i, n in enumerate(numbers) if i not in bad]
        if self.embed is None:
            self._key(rows, numbers, batch.table)
        return rows, numbers, list(bad.values())

    def _key(self, rows: list[Document], numbers: list[int], table: str) -> None:
        """`_id` of each row: its key column(s), or for a keyless source its own `_id` column, else
        a stable ObjectId from its source row number (the same on every replay)."""
        key = self.schema.key
        if len(key) == 1:
            if key[0] != "_id":
                for row in rows:
                    row["_id"] = row.pop(key[0])
        elif key:
            for row in rows:
                row["_id"] = {k: row.pop(k) for k in key}
        else:
            for row, number in zip(rows, numbers):
                if row.get("_id") is None:
                    row["_id"] = types.synthetic_id(self._migration_id, table, str(number))

    async def _store(self, docs: list[Any], numbers: list[int], *, replay: bool, table: str) -> list[Reject]:
        if not docs:
            return []
        if self.embed is not None:
            return await self._embed(docs, numbers, table, self.embed)
        if not self.created:
            await self._keep_before([_plain(d) for d in docs])
        try:
            if self.sink.mode == "insert":
                await self._coll.insert_many(docs, ordered=False)
            else:
                await self._coll.bulk_write([self._upsert(d) for d in docs], ordered=False)
            return []
        except BulkWriteError as exc:
            refused = await self._refusals(exc, docs, numbers, replay=replay, table=table)
        if refused and self.on_refusal == "fail":
            first = refused[0]
            raise InvalidInput(f"row {first.row} of {table} was refused ({first.message}) and onError is stop")
        if refused and self.on_refusal == "skip_batch":
            # Take back what this batch wrote, so the whole batch is in the rejects.
            refused_rows = {r.row for r in refused}
            written = [d for d, n in zip(docs, numbers) if n not in refused_rows]
            if written and self.sink.mode == "insert":
                await self._coll.delete_many({"_id": {"$in": [_plain(d)["_id"] for d in written]}})
            refused += [Reject(table, n, types.key_text(_plain(d).get("_id")), None, None, "skip_batch",
                               f"batch skipped: {refused[0].message}") for d, n in zip(docs, numbers)
                        if n not in refused_rows]
        return refused

    def _upsert(self, doc: Any) -> ReplaceOne[Any] | UpdateOne:
        plain = dict(doc) if isinstance(doc, RawBSONDocument) else doc
        match = {k: plain.get(k) for k in self._match}
        if self.sink.mode == "replace":
            return ReplaceOne(match, {**plain, self.soft_delete: False} if self.soft_delete else plain, upsert=True)
        fields = {k: v for k, v in plain.items() if k != "_id"}
        if self.soft_delete:
            fields[self.soft_delete] = False
        return UpdateOne(match, {"$set": fields,
                                 **({"$setOnInsert": {"_id": plain["_id"]}} if self._match != ("_id",) else {})},
                         upsert=True)

    async def _refusals(self, exc: BulkWriteError, docs: Sequence[Any], numbers: Sequence[int], *, replay: bool,
                        table: str) -> list[Reject]:
        errors = list(exc.details.get("writeErrors", []))
        duplicates = [e for e in errors if e.get("code") == DUPLICATE_KEY]
        ours: set[int] = set()
        if replay and duplicates:
            # Written by this run before it stopped — if the stored document is exactly ours (as
            # BSON holds it: dates in milliseconds).
            wanted = {i: types.as_stored(_plain(docs[i])) for e in duplicates if (i := e["index"]) < len(docs)}
            found = {d["_id"]: d async for d in self._coll.find({"_id": {"$in": [d["_id"] for d in wanted.values()]}})}
            ours = {i for i, d in wanted.items() if found.get(d["_id"]) == d}
        rejects = []
        for e in errors:
            i = e.get("index", -1)
            if i in ours or not 0 <= i < len(docs):
                continue
            key = types.key_text(_plain(docs[i]).get("_id"))
            if e.get("code") == DUPLICATE_KEY:
                rule, message = "duplicate_key", (f"duplicate key: the target already holds a document with _id {key} "
                                                  f"or the same unique-index value ({e.get('errmsg', 'E11000')})")
            else:
                rule, message = "refused", f"MongoDB refused the document: {e.get('errmsg', 'unknown error')}"
            rejects.append(Reject(table, numbers[i], key, None, None, rule, message))
        return rejects

    async def _embed(self, rows: Sequence[Document], numbers: Sequence[int], table: str, embed: Embed
                     ) -> list[Reject]:
        """Each row into its parent's array, by rewriting the parent (read, add, replace): a row
        already in the array (a replayed batch) is not added twice; a row whose parent does not
        exist is a reject. (Whole-document replacement also works on servers whose `$push` /
        `$addToSet` on arrays of documents are unreliable.)"""
        fk = embed.foreign_key
        wanted = list({row.get(fk) for row in rows})
        parents = {d["_id"]: d async for d in self._coll.find({"_id": {"$in": wanted}})}
        before = {k: (k, copy.deepcopy(d)) for k, d in parents.items()}  # as they were, for a rollback
        changed: dict[object, Document] = {}
        rejects: list[Reject] = []
        for row, number in zip(rows, numbers):
            parent_id = row.pop(fk, None)
            parent = parents.get(parent_id)
            if parent is None:
                value = types.key_text(parent_id)
                key = ", ".join(str(row.get(k)) for k in self.schema.key) or None
                rejects.append(Reject(table, number, key, fk, value, "no_parent",
                                      f"no document with _id {value} in {embed.into} to embed this row in"))
                continue
            items = parent.setdefault(embed.field, [])
            if not isinstance(items, list):
                raise EndpointError(f"{embed.into} document {types.key_text(parent_id)} holds a "
                                    f"{types.kind(items)} in {embed.field!r}, not an array to embed rows in")
            stored = types.as_stored(row)  # compared as BSON holds it (dates in milliseconds)
            if stored not in items:
                items.append(stored)
                changed[parent_id] = parent
        if changed:
            await self._keep(before[k] for k in changed)
            await self._coll.bulk_write([ReplaceOne({"_id": k}, d) for k, d in changed.items()], ordered=True)
        return rejects

    async def _keep_before(self, docs: Sequence[Document]) -> None:
        """Before writing `docs`: keep each target document they will insert or overwrite, as it
        is now (None: it does not exist yet)."""
        if self._match == ("_id",):
            found = {d["_id"]: d async for d in self._coll.find({"_id": {"$in": [d["_id"] for d in docs]}})}
            await self._keep((d["_id"], found.get(d["_id"])) for d in docs)
            return
        filters = [{k: d.get(k) for k in self._match} for d in docs]
        found_by: dict[tuple[object, ...], list[Document]] = {}
        async for e in self._coll.find({"$or": filters}):
            found_by.setdefault(tuple(repr(types.as_stored(e).get(k)) for k in self._match), []).append(e)
        pairs: list[tuple[object, Document | None]] = []
        for d in docs:
            # Every document the match selects (several when the keys are not unique: the update
            # changes one of them, which one is the server's choice).
            existing = found_by.get(tuple(repr(types.as_stored(d).get(k)) for k in self._match), [])
            pairs += [(e["_id"], e) for e in existing] or [(d["_id"], None)]
        await self._keep(pairs)

    async def _keep(self, pairs: Iterable[tuple[object, Document | None]]) -> None:
        """Store before-images (_id, document or None); the first one of a document wins, so a
        replayed batch keeps the state from before the run."""
        entries = [{"_id": {"m": self._migration_id, "c": self._target, "i": i}, "m": self._migration_id,
                    "c": self._target, "doc": doc} for i, doc in pairs]
        if not entries:
            return
        try:
            await self.sink.db[BEFORE].insert_many(entries, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def finish(self) -> list[str]:
        if not self.created:
            return []
        if self.schema.native_kind != "mongodb" and self.schema.indexes:
            # SQL unique indexes allow many NULLs, MongoDB's do not: recreating them could fail the load.
            return [f"{self._target}: the source's {len(self.schema.indexes)} index(es) are not recreated in MongoDB"]
        for index in self.schema.indexes:  # after the load: faster than maintaining them per insert
            try:
                options: dict[str, Any] = dict(index.options)
                await self._coll.create_index(list(index.fields), name=index.name, unique=index.unique, **options)
            except PyMongoError as exc:
                raise endpoint_error(exc, self.sink.url, f"creating index {index.name} on {self._target}") from None
        return []

    async def close(self) -> None:
        return None


def _plain(doc: Any) -> Document:
    return types.decoded(doc.raw) if isinstance(doc, RawBSONDocument) else dict(doc)



