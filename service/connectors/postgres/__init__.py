"""PostgreSQL source and sink on asyncpg: key-range reads by COPY, writes by binary COPY."""

from service.connectors.postgres.sink import PostgresSink
from service.connectors.postgres.source import PostgresSource

__all__ = ["PostgresSink", "PostgresSource"]
