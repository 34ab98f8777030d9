"""Prometheus metrics (`GET /metrics`): rows, batches, errors and batch latency, fed by run events.
Each app has its own registry, so several apps in one process (tests) do not collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.runs.events import BatchCommitted, Event, LogWritten, StatusChanged

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rows = Counter("migrator_rows", "Rows committed to targets, by outcome (migrated or rejected)",
                            ["outcome"], registry=self.registry)
        self.batches = Counter("migrator_batches", "Batches committed to targets", registry=self.registry)
        self.errors = Counter("migrator_errors", "ERROR log entries (rejected rows, failed runs)",
                              registry=self.registry)
        self.runs = Counter("migrator_migrations_finished", "Migrations that ended, by final status", ["status"],
                            registry=self.registry)
        self.latency = Histogram("migrator_batch_seconds", "From the start of reading a batch to its commit",
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.running = Gauge("migrator_running_migrations", "Migrations executing now", registry=self.registry)
        self._executing: set[str] = set()

    def on_event(self, event: Event) -> None:
        if isinstance(event, BatchCommitted):
            self.batches.inc()
            self.rows.labels("migrated").inc(event.rows)
            if event.rejects:
                self.rows.labels("rejected").inc(len(event.rejects))
            self.latency.observe(event.seconds)
        elif isinstance(event, LogWritten) and event.entry.level == "ERROR":
            self.errors.inc()
        elif isinstance(event, StatusChanged):
            if event.status in ("executing", "pausing", "paused"):
                self._executing.add(event.migration_id)
            elif event.migration_id in self._executing:
                self._executing.discard(event.migration_id)
                self.runs.labels(event.status).inc()
            self.running.set(len(self._executing))

    def render(self) -> bytes:
        return generate_latest(self.registry)
