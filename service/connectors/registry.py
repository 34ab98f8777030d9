"""Which Source/Sink serves a URL. The only place that knows every connector."""

from __future__ import annotations

from service.connectors.base import Sink, Source
from service.connectors.csv import CsvSink, CsvSource
from service.connectors.csv.dialect import CsvOptions
from service.connectors.postgres import PostgresSink, PostgresSource
from service.connectors.sqlite import SqliteSink, SqliteSource
from service.core.errors import InvalidUrl
from service.core.urls import EndpointUrl, Kind


def open_source(url: EndpointUrl, *, timeout: float, csv: CsvOptions) -> Source:
    if url.kind is Kind.POSTGRES:
        return PostgresSource(url, timeout=timeout)
    if url.kind is Kind.CSV:
        return CsvSource(url, options=csv)
    if url.kind is Kind.SQLITE:
        return SqliteSource(url, timeout=timeout)
    raise InvalidUrl(f"{url.kind} is not supported as a source yet ({url.masked})")


def open_sink(url: EndpointUrl, *, timeout: float, csv: CsvOptions, parallel: int, replace: bool) -> Sink:
    if url.kind is Kind.POSTGRES:
        return PostgresSink(url, timeout=timeout, parallel=parallel)
    if url.kind is Kind.CSV:
        return CsvSink(url, options=csv, replace_existing=replace)
    if url.kind is Kind.SQLITE:
        return SqliteSink(url, timeout=timeout)
    raise InvalidUrl(f"{url.kind} is not supported as a target yet ({url.masked})")
