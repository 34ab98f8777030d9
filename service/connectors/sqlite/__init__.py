"""SQLite as source and sink (the embedded default): stdlib sqlite3, driven from a worker thread."""

from service.connectors.sqlite.sink import SqliteSink
from service.connectors.sqlite.source import SqliteSource

__all__ = ["SqliteSink", "SqliteSource"]
