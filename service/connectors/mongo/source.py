"""Reading MongoDB collections resumably: one cursor in `_id` order, batches of `batchSize`
documents, the checkpoint is the last `_id` (kept as canonical Extended JSON, so its BSON type
survives). A cursor that dies on a long run is opened again after the last `_id` handed on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import Any

import pyarrow as pa
from bson import json_util
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from bson.json_util import CANONICAL_JSON_OPTIONS
from bson.raw_bson import RawBSONDocument
from pymongo.errors import AutoReconnect, CursorNotFound, PyMongoError

from service.connectors.mongo import types
from service.connectors.mongo.connection import (
    describe,
    endpoint_error,
    open_database,
    ping,
    reraise_swallowed_cancel,
)
from service.connectors.mongo.options import MongoOptions
from service.core.batch import Batch, NativeFormat, NativePayload, Position, Reject
from service.core.errors import EndpointError, UnknownTable
from service.core.schema import Column, Index, TableSchema
from service.core.urls import EndpointUrl

log = logging.getLogger(__name__)
REOPEN_ATTEMPTS = 5
INDEX_OPTIONS = ("sparse", "partialFilterExpression", "expireAfterSeconds", "collation", "weights",
                 "default_language", "2dsphereIndexVersion", "wildcardProjection")
HIDDEN_PREFIXES = ("system.", "_migrator_")


_ID_JSON = CANONICAL_JSON_OPTIONS.with_options(uuid_representation=UuidRepresentation.STANDARD, tz_aware=True)


def encode_id(value: object) -> list[str | int | float | None]:
    return [json_util.dumps(value, json_options=_ID_JSON)]


def decode_id(position: Position) -> Any:
    if not isinstance(position, list) or not position:
        return None
    return json_util.loads(str(position[0]), json_options=_ID_JSON)


class MongoSource:
    kind = "mongodb"

    def __init__(self, url: EndpointUrl, *, timeout: float, options: MongoOptions | None = None) -> None:
        self.url = url
        self.where = describe(url)
        self.options = options or MongoOptions()
        self.client, self.db = open_database(url, timeout)
        self._fields: dict[str, list[types.Field]] = {}
        self._samples: dict[str, list[types.Document]] = {}
        self._children: dict[str, tuple[str, str]] = {}  # child table -> (collection, field)

    async def check(self) -> None:
        await ping(self.db, self.url)

    async def list_tables(self) -> list[str]:
        """Collections, each followed by its child tables (`nested: tables`)."""
        try:
            names = await self.db.list_collection_names()
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, "listing collections") from None
        reraise_swallowed_cancel()
        tables: list[str] = []
        for name in sorted(n for n in names if not n.startswith(HIDDEN_PREFIXES)):
            tables.append(name)
            if self.options.makes_tables:
                for field in types.child_fields(await self._sample(name), self.options):
                    self._children[f"{name}_{field}"] = (name, field)
                    tables.append(f"{name}_{field}")
        return tables

    async def _sample(self, collection: str) -> list[types.Document]:
        if collection in self._samples:
            return self._samples[collection]
        coll, n = self.db[collection], self.options.sample_size
        try:
            if n == 0 or await coll.estimated_document_count() <= n:
                sample = await coll.find({}).to_list(None)
            else:
                sample = await (await coll.aggregate([{"$sample": {"size": n}}])).to_list(None)
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, f"sampling {collection}") from None
        reraise_swallowed_cancel()
        self._samples[collection] = sample
        return sample

    async def describe(self, table: str) -> TableSchema:
        if table not in await self.list_tables():
            raise UnknownTable(f"MongoDB at {self.where} has no collection {table!r}")
        if table in self._children:
            return await self._describe_child(table, *self._children[table])
        sample = await self._sample(table)
        children = types.child_fields(sample, self.options) if self.options.makes_tables else []
        try:
            indexes = [ix async for ix in await self.db[table].list_indexes()]
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, f"reading the indexes of {table}") from None
        fields, notes = types.infer(table, sample, self.options, exclude=children)
        if not fields:
            fields, _ = types.infer(table, [{"_id": None}], self.options)
        notes += [f"{table}.{f}: arrays of objects go to child table {table}_{f}" for f in children]
        self._fields[table] = fields
        schema = types.schema_of(table, fields, notes)
        found = tuple(Index(str(ix["name"]), tuple((str(k), int(v) if isinstance(v, int | float) else str(v))
                                                     for k, v in ix["key"].items()), bool(ix.get("unique")),
                            tuple((k, ix[k]) for k in INDEX_OPTIONS if k in ix))
                      for ix in indexes if ix.get("name") != "_id_" and list(ix["key"]) != ["_id"])
        return TableSchema(schema.name, schema.columns, schema.key, schema.native_kind, schema.notes, found)

    async def _describe_child(self, table: str, parent: str, field: str) -> TableSchema:
        sample = await self._sample(parent)
        rows = [row for doc in sample for row in _unwind(doc, parent, field)]
        parent_kind = types.infer(parent, [{"_id": d["_id"]} for d in sample], self.options)[0][0]
        element_fields, notes = types.infer(table, [{k: v for k, v in r.items() if k not in (f"{parent}_id",
                                                                                            "position")}
                                                    for r in rows], self.options)
        key_col = types.Field(replace(parent_kind.column, name=f"{parent}_id", nullable=False), (f"{parent}_id",),
                              parent_kind.kind)
        position = types.Field(Column("position", pa.int64(), False, "bson:int"), ("position",), "int")
        fields = [key_col, position, *[f for f in element_fields if f.column.name not in (f"{parent}_id", "position")]]
        self._fields[table] = fields
        return TableSchema(table, tuple(f.column for f in fields), (f"{parent}_id", "position"), "mongodb",
                           (f"{table}: the elements of {parent}.{field}, keyed by {parent}_id and position", *notes))

    async def count(self, table: str, *, exact: bool = True) -> int:
        # The collection's own count (metadata): exact for a collection not being written to;
        # count_documents({}) would scan every document. A child table: estimated from the sample.
        try:
            if table in self._children:
                parent, field = self._children[table]
                sample = await self._sample(parent)
                per_doc = sum(len(_unwind(d, parent, field)) for d in sample) / max(1, len(sample))
                return round(per_doc * await self.db[parent].estimated_document_count())
            return int(await self.db[table].estimated_document_count())
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, f"counting {table}") from None

    def native_formats(self, schema: TableSchema) -> frozenset[NativeFormat]:
        if schema.name in self._children or any(schema.name == p for p, _ in self._children.values()):
            return frozenset()  # a parent without its child arrays is not the raw document
        return frozenset({NativeFormat.BSON})

    async def cursor_max(self, table: str, column: str) -> str | None:
        """The highest value of field `column` (as extended JSON): an incremental table's mark."""
        try:
            doc = await self.db[table].find_one({column: {"$exists": True}}, {column: 1}, sort=[(column, -1)])
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, f"reading the highest {column} of {table}") from None
        return None if doc is None else json_util.dumps(doc.get(column), json_options=_ID_JSON)

    async def count_since(self, table: str, column: str, since: object) -> int:
        """Documents whose `column` is beyond `since` (all when None): how far a sync is behind."""
        query = {} if since is None else {column: {"$gt": json_util.loads(str(since), json_options=_ID_JSON)}}
        try:
            return int(await self.db[table].count_documents(query))
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, f"counting {table}") from None

    async def read(self, schema: TableSchema, *, after: Position, start_row: int, batch_size: int,
                   native: NativeFormat | None, since: tuple[str, object] | None = None
                   ) -> AsyncGenerator[Batch, None]:
        """Documents in _id order after `after`. With `since` (field, extended-JSON value): only
        those whose field is at least the value, in (field, _id) order — an incremental pass; the
        positions are then [field value, _id]."""
        if schema.name not in self._fields:
            await self.describe(schema.name)
        fields = self._fields[schema.name]
        child = self._children.get(schema.name)
        if since is not None and child:
            raise EndpointError(f"{schema.name} is unwound from {child[0]}: sync {child[0]} incrementally instead")
        coll = self.db[child[0] if child else schema.name]
        if native is NativeFormat.BSON:
            coll = coll.with_options(codec_options=CodecOptions(document_class=RawBSONDocument))  # type: ignore[arg-type]
        field = since[0] if since is not None and since[0] != "_id" else None
        floor = json_util.loads(str(since[1]), json_options=_ID_JSON) if since is not None else None
        last = decode_id(after)
        if field is not None:
            last = None if not isinstance(after, list) or len(after) != 2 else (
                json_util.loads(str(after[0]), json_options=_ID_JSON), json_util.loads(str(after[1]), json_options=_ID_JSON))
        seq, row, failures = 0, start_row, 0
        while True:
            query: dict[str, Any]
            order = [("_id", 1)]
            if field is not None:
                order = [(field, 1), ("_id", 1)]
                query = {field: {"$gte": floor}}
                if last is not None:
                    value, key = last
                    query = {"$or": [{field: {"$gt": value}}, {field: value, "_id": {"$gt": key}}]}
            elif last is not None:
                query = {"_id": {"$gt": last}}
            else:  # {"$exists": true} keeps the server on the _id index in _id order from the start
                query = {"_id": {"$gte": floor}} if floor is not None else {"_id": {"$exists": True}}
            projection = {child[1]: 1} if child else None
            cursor = coll.find(query, projection, sort=order, batch_size=batch_size)
            # One batch is converted (in a thread) while the next one is fetched.
            converting: asyncio.Future[Batch] | None = None
            try:
                it = aiter(cursor)
                while True:
                    docs, rows = await _take(it, child, batch_size)
                    if converting is not None:
                        batch = await converting
                        converting = None
                        if field is not None:
                            assert isinstance(batch.upto, list)
                            last = (json_util.loads(str(batch.upto[0]), json_options=_ID_JSON),
                                    json_util.loads(str(batch.upto[1]), json_options=_ID_JSON))
                        else:
                            last = decode_id(batch.upto)
                        yield batch
                        seq, row, failures = seq + 1, row + batch.rows_read, 0
                    if not docs:
                        return
                    converting = asyncio.ensure_future(
                        self._batch(schema, fields, seq, row, docs, native, rows if child else None, field))
            except (AutoReconnect, CursorNotFound) as exc:
                failures += 1
                if failures > REOPEN_ATTEMPTS:
                    raise endpoint_error(exc, self.url, f"reading {schema.name}") from None
                log.warning("MongoDB cursor on %s.%s lost (%s); reopening it after the last _id handed on "
                            "(attempt %d of %d)", self.where, schema.name, type(exc).__name__, failures,
                            REOPEN_ATTEMPTS)
                await asyncio.sleep(min(2.0, 0.1 * 2**failures))  # then reopen after `last`
            except PyMongoError as exc:
                raise endpoint_error(exc, self.url, f"reading {schema.name}") from None
            finally:
                if converting is not None:
                    converting.cancel()
                    await asyncio.gather(converting, return_exceptions=True)
                await cursor.close()

    async def _batch(self, schema: TableSchema, fields: list[types.Field], seq: int, row: int, docs: list[Any],
                     native: NativeFormat | None, rows: list[Any] | None = None, field: str | None = None) -> Batch:
        """A batch of `docs` (or of the child `rows` unwound from them), up to the last doc's _id
        (and its `field`'s value, in an incremental pass's order)."""
        upto = encode_id(docs[-1]["_id"])
        if field is not None:
            upto = [json_util.dumps(docs[-1].get(field), json_options=_ID_JSON), *upto]
        if native is NativeFormat.BSON:
            payload = NativePayload(NativeFormat.BSON, [d.raw for d in docs])
            return Batch(seq=seq, table=schema.name, upto=upto, first_row=row, data=payload, rows_read=len(docs))
        records = docs if rows is None else rows
        elsewhere = frozenset(f for c, (p, f) in self._children.items() if p == schema.name)
        data, rejects = await asyncio.to_thread(types.to_arrow, records, fields, schema.name, row, elsewhere)
        return Batch(seq=seq, table=schema.name, upto=upto, first_row=row, data=data, rows_read=len(records),
                     rejects=rejects)

    async def change_token(self, table: str) -> str:
        """A change stream's position now, as extended JSON: a sync's changes of `table` start there
        (noted before the first copy). Needs a replica set or sharded cluster."""
        try:
            async with await self.db[table].watch(max_await_time_ms=100) as stream:
                await stream.try_next()
                token = stream.resume_token
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, f"opening a change stream on {table} (change capture needs a replica "
                                                "set or a sharded cluster)") from None
        if token is None:  # a server that answers $changeStream without a position cannot resume one
            raise EndpointError(f"MongoDB at {self.where} gave no change stream position for {table}: change "
                                "capture needs a replica set or a sharded cluster (use a cursor field instead)")
        return json_util.dumps(token, json_options=_ID_JSON)

    async def changes(self, schema: TableSchema, token: str, limit: int
                      ) -> tuple[pa.RecordBatch, pa.RecordBatch, str, int, list[Reject]]:
        """The changes of `schema`'s collection after `token`, as many as are there now (up to
        `limit`), collapsed per _id in order — the last version of each inserted, replaced or
        updated document (looked up whole), and the _ids deleted — with the token after them, the
        number of changes and the rejects of documents that do not fit the columns."""
        if schema.name not in self._fields:
            await self.describe(schema.name)
        fields = self._fields[schema.name]
        latest: dict[str, Any] = {}  # _id (as extended JSON) → the document, or None when deleted
        count, resume = 0, json_util.loads(token, json_options=_ID_JSON)
        try:
            async with await self.db[schema.name].watch(resume_after=resume, full_document="updateLookup",
                                                        max_await_time_ms=200) as stream:
                while count < limit:
                    change = await stream.try_next()
                    if change is None:
                        break
                    count += 1
                    op = change.get("operationType")
                    if op in ("drop", "rename", "dropDatabase", "invalidate"):
                        raise EndpointError(f"MongoDB collection {schema.name} was {op}ped during the sync: change "
                                            "capture cannot follow it; copy the collection again")
                    if op not in ("insert", "update", "replace", "delete"):
                        continue
                    full = change.get("fullDocument")
                    # The document's own _id where there is one (it keeps its BSON type everywhere).
                    key = full["_id"] if isinstance(full, dict) and "_id" in full else change["documentKey"]["_id"]
                    latest[json_util.dumps(key, json_options=_ID_JSON)] = (key, full if op != "delete" else None)
                token = json_util.dumps(stream.resume_token, json_options=_ID_JSON)
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, f"reading the change stream of {schema.name}") from None
        docs = [doc for _, doc in latest.values() if doc is not None]
        gone = [{"_id": key} for key, doc in latest.values() if doc is None]
        upserts, rejects = await asyncio.to_thread(types.to_arrow, docs, fields, schema.name, 1)
        id_field = [f for f in fields if f.column.name == "_id"]
        deletes, _ = await asyncio.to_thread(types.to_arrow, gone, id_field, schema.name, 1)
        return upserts, deletes, token, count, rejects

    async def close(self) -> None:
        await self.client.close()



async def _take(it: AsyncIterator[Any], child: tuple[str, str] | None, batch_size: int
                ) -> tuple[list[Any], list[Any]]:
    """The next documents from the cursor: `batch_size` of them, or for a child table whole
    documents until their rows reach `batch_size`; and those rows."""
    docs: list[Any] = []
    rows: list[Any] = []
    while len(rows if child else docs) < batch_size:
        doc = await anext(it, None)
        reraise_swallowed_cancel()
        if doc is None:
            break
        docs.append(doc)
        if child:
            rows.extend(_unwind(doc, *child))
    return docs, rows


def _unwind(doc: types.Document, parent: str, field: str) -> list[types.Document]:
    """The child rows of one parent document: each object of its array, with the parent's `_id`
    and its position in the array."""
    items = doc.get(field)
    if not isinstance(items, list):
        return []
    return [{f"{parent}_id": doc["_id"], "position": i, **item} for i, item in enumerate(items)
            if isinstance(item, dict)]
