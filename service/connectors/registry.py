"""Which Source/Sink serves a URL. The only place that knows every connector.

Connectors are imported when first asked for, so a run loads only the drivers it uses.
"""

from __future__ import annotations

from service.connectors.base import Sink, Source
from service.connectors.csv.dialect import CsvOptions
from service.connectors.mongo.options import MongoOptions
from service.core.errors import InvalidUrl
from service.core.urls import EndpointUrl, Kind


def open_source(url: EndpointUrl, *, timeout: float, csv: CsvOptions, mongo: MongoOptions | None = None) -> Source:
    if url.kind is Kind.POSTGRES:
        from service.connectors.postgres.source import PostgresSource

        return PostgresSource(url, timeout=timeout)
    if url.kind is Kind.CSV:
        from service.connectors.csv.source import CsvSource

        return CsvSource(url, options=csv)
    if url.kind is Kind.SQLITE:
        from service.connectors.sqlite.source import SqliteSource

        return SqliteSource(url, timeout=timeout)
    if url.kind is Kind.MONGO:
        from service.connectors.mongo.source import MongoSource

        return MongoSource(url, timeout=timeout, options=mongo)
    raise InvalidUrl(f"{url.kind} is not supported as a source yet ({url.masked})")


def open_sink(url: EndpointUrl, *, timeout: float, csv: CsvOptions, parallel: int, mode: str = "insert",
              mongo: MongoOptions | None = None) -> Sink:
    """`mode`: insert | upsert | replace (spec `mode`; for CSV, replace overwrites the file)."""
    if url.kind is Kind.POSTGRES:
        from service.connectors.postgres.sink import PostgresSink

        return PostgresSink(url, timeout=timeout, parallel=parallel)
    if url.kind is Kind.CSV:
        from service.connectors.csv.sink import CsvSink

        return CsvSink(url, options=csv, replace_existing=mode == "replace")
    if url.kind is Kind.SQLITE:
        from service.connectors.sqlite.sink import SqliteSink

        return SqliteSink(url, timeout=timeout)
    if url.kind is Kind.MONGO:
        from service.connectors.mongo.sink import MongoSink

        return MongoSink(url, timeout=timeout, mode=mode, options=mongo)
    raise InvalidUrl(f"{url.kind} is not supported as a target yet ({url.masked})")
