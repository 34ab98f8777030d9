"""Reading MongoDB collections resumably: one cursor in `_id` order, batches of `batchSize`
documents, the checkpoint is the last `_id` (kept as canonical Extended JSON, so its BSON type
survives). A cursor that dies on a long run is opened again after the last `_id` handed on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from bson import json_util
from bson.codec_options import CodecOptions
from bson.json_util import CANONICAL_JSON_OPTIONS
from bson.raw_bson import RawBSONDocument
from pymongo.errors import AutoReconnect, CursorNotFound, PyMongoError

from service.connectors.mongo import types
from service.connectors.mongo.connection import describe, endpoint_error, open_database
from service.connectors.mongo.options import MongoOptions
from service.core.batch import Batch, NativeFormat, NativePayload, Position
from service.core.errors import EndpointError, UnknownTable
from service.core.schema import Index, TableSchema
from service.core.urls import EndpointUrl

REOPEN_ATTEMPTS = 5
HIDDEN_PREFIXES = ("system.", "_migrator_")


def encode_id(value: object) -> list[str | int | float | None]:
    return [json_util.dumps(value, json_options=CANONICAL_JSON_OPTIONS)]


def decode_id(position: Position) -> Any:
    if not isinstance(position, list) or not position:
        return None
    return json_util.loads(str(position[0]), json_options=CANONICAL_JSON_OPTIONS)


class MongoSource:
    kind = "mongodb"

    def __init__(self, url: EndpointUrl, *, timeout: float, options: MongoOptions | None = None) -> None:
        self.url = url
        self.where = describe(url)
        self.options = options or MongoOptions()
        self.client, self.db = open_database(url, timeout)
        self._fields: dict[str, list[types.Field]] = {}

    async def check(self) -> None:
        try:
            await self.db.command("ping")
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, "connecting") from None

    async def list_tables(self) -> list[str]:
        try:
            names = await self.db.list_collection_names()
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, "listing collections") from None
        return sorted(n for n in names if not n.startswith(HIDDEN_PREFIXES))

    async def describe(self, table: str) -> TableSchema:
        if table not in await self.list_tables():
            raise UnknownTable(f"MongoDB at {self.where} has no collection {table!r}")
        coll = self.db[table]
        n = self.options.sample_size
        try:
            if n == 0 or await coll.estimated_document_count() <= n:
                sample = await coll.find({}).to_list(None)
            else:
                sample = await (await coll.aggregate([{"$sample": {"size": n}}])).to_list(None)
            indexes = [ix async for ix in await coll.list_indexes()]
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, f"sampling {table}") from None
        fields, notes = types.infer(table, sample, self.options)
        if not fields:
            fields, _ = types.infer(table, [{"_id": None}], self.options)
        self._fields[table] = fields
        schema = types.schema_of(table, fields, notes)
        found = tuple(Index(str(ix["name"]), tuple((str(k), int(v) if isinstance(v, int | float) else 1)
                                                     for k, v in ix["key"].items()), bool(ix.get("unique")))
                      for ix in indexes if ix.get("name") != "_id_" and list(ix["key"]) != ["_id"])
        return TableSchema(schema.name, schema.columns, schema.key, schema.native_kind, schema.notes, found)

    async def count(self, table: str, *, exact: bool = True) -> int:
        # The collection's own count (metadata): exact for a collection not being written to;
        # count_documents({}) would scan every document.
        try:
            return int(await self.db[table].estimated_document_count())
        except PyMongoError as exc:
            raise endpoint_error(exc, self.url, f"counting {table}") from None

    def native_formats(self, schema: TableSchema) -> frozenset[NativeFormat]:
        return frozenset({NativeFormat.BSON})

    async def read(self, schema: TableSchema, *, after: Position, start_row: int, batch_size: int,
                   native: NativeFormat | None) -> AsyncGenerator[Batch, None]:
        if schema.name not in self._fields:
            await self.describe(schema.name)
        fields = self._fields[schema.name]
        coll = self.db[schema.name]
        if native is NativeFormat.BSON:
            coll = coll.with_options(codec_options=CodecOptions(document_class=RawBSONDocument))  # type: ignore[arg-type]
        last = decode_id(after)
        seq, row, failures = 0, start_row, 0
        while True:
            # {"$exists": true} keeps the server on the _id index in _id order from the start.
            query = {"_id": {"$gt": last}} if last is not None else {"_id": {"$exists": True}}
            cursor = coll.find(query, sort=[("_id", 1)], batch_size=batch_size)
            docs: list[Any] = []
            try:
                async for doc in cursor:
                    docs.append(doc)
                    if len(docs) >= batch_size:
                        last = docs[-1]["_id"]
                        yield await self._batch(schema, fields, seq, row, docs, native)
                        seq, row, docs = seq + 1, row + len(docs), []
                        failures = 0
                if docs:
                    yield await self._batch(schema, fields, seq, row, docs, native)
                return
            except (AutoReconnect, CursorNotFound) as exc:
                failures += 1
                if failures > REOPEN_ATTEMPTS:
                    raise endpoint_error(exc, self.url, f"reading {schema.name}") from None
                await asyncio.sleep(min(2.0, 0.1 * 2**failures))  # then reopen after `last`
            except PyMongoError as exc:
                raise endpoint_error(exc, self.url, f"reading {schema.name}") from None
            finally:
                await cursor.close()

    async def _batch(self, schema: TableSchema, fields: list[types.Field], seq: int, row: int, docs: list[Any],
                     native: NativeFormat | None) -> Batch:
        upto = encode_id(docs[-1]["_id"])
        if native is NativeFormat.BSON:
            payload = NativePayload(NativeFormat.BSON, [d.raw for d in docs])
            return Batch(seq=seq, table=schema.name, upto=upto, first_row=row, data=payload, rows_read=len(docs))
        data, rejects = await asyncio.to_thread(types.to_arrow, docs, fields, schema.name, row)
        return Batch(seq=seq, table=schema.name, upto=upto, first_row=row, data=data, rows_read=len(docs),
                     rejects=rejects)

    async def close(self) -> None:
        await self.client.close()


__all__ = ["EndpointError", "MongoSource"]
