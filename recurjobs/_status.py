"""The immutable per-job record returned by ``JobHost.status()``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["JobStatus"]


@dataclass(frozen=True)
class JobStatus:
    """What one job is doing: schedule, last result and counters, as seen by this host.

    ``last_outcome`` is one of ``"executed"``, ``"failed"``, ``"canceled"``, ``"ignored"`` or
    None before the first run. ``next_run`` is None when no automatic run is planned.
    """

    name: str
    kind: Literal["recurring", "distributed"]
    period: timedelta
    next_run: datetime | None
    last_start: datetime | None
    last_outcome: str | None
    runs: int
    failures: int
    running: bool
