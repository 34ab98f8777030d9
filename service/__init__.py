"""Migration service: streaming, resumable data migrations between PostgreSQL, SQLite, CSV and MongoDB."""

__version__ = "0.1.0"
