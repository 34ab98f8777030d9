"""What an incremental sync remembers between passes (kept in the state store, one JSON document
per migration): the pass number, each table's high-water mark, the change-capture slot, lag."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

HISTORY = 20  # passes kept in the history


@dataclass
class SyncState:
    pass_no: int = 0
    running: bool = True
    started_at: str | None = None
    ended_at: str | None = None
    # Per table: `since` (this pass reads cursor ≥ since), `next` (the high-water mark read at
    # this pass's start: the next pass's since), `pass` (the pass that read `next`).
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    slot: str | None = None  # PostgreSQL change capture: the replication slot
    lag_rows: int | None = None  # rows changed in the source and not yet copied
    lag_seconds: float | None = None  # how old the target's copy is, when lag_rows > 0
    measured_at: str | None = None
    every: float | None = None  # continuous mode: seconds between passes
    cut_over: bool = False  # the target took over (cutover): no more passes
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> SyncState | None:
        if raw is None:
            return None
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add_history(self, entry: dict[str, Any]) -> None:
        self.history = [*self.history, entry][-HISTORY:]

    def public(self) -> dict[str, Any]:
        """The summary's `sync` section."""
        return {
            "pass": self.pass_no, "running": self.running, "lastPassStartedAt": self.started_at,
            "lastPassEndedAt": self.ended_at, "lagRows": self.lag_rows, "lagSeconds": self.lag_seconds,
            "measuredAt": self.measured_at, "every": self.every, "slot": self.slot, "cutOver": self.cut_over,
            "tables": {t: {"since": v.get("since"), "next": v.get("next")} for t, v in self.tables.items()},
            "history": self.history,
        }
