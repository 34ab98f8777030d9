"""Shared vocabulary of every layer: errors, endpoint URLs, table schemas, batches, settings."""
