"""SQLite as source and sink (the embedded default): stdlib sqlite3, driven from a worker thread."""
