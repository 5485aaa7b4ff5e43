"""The immutable per-job record returned by ``JobHost.status()``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from recurjobs._jobs import job_name

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


def not_started(job: object, *, distributed: bool = False) -> JobStatus:
    """The record of a registered job whose thread (or poller) has not started."""
    return JobStatus(
        name=job_name(job),
        kind="distributed" if distributed else "recurring",
        period=getattr(job, "period"),  # noqa: B009 - duck-typed jobs
        next_run=None,
        last_start=None,
        last_outcome=None,
        runs=0,
        failures=0,
        running=False,
    )
