"""The immutable per-job record returned by ``JobHost.status()``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from recurjobs._cron import Cron
from recurjobs._guard import call_user
from recurjobs._jobs import job_name
from recurjobs._schedule import INFINITE

__all__ = ["JobStatus"]


@dataclass(frozen=True)
class JobStatus:
    """What one job is doing: schedule, last result and counters, as seen by this host.

    ``last_outcome`` is one of ``"executed"``, ``"failed"``, ``"canceled"``, ``"ignored"`` or
    None before the first run. ``next_run`` is None when no automatic run is planned (or it is
    further away than a ``datetime`` reaches). ``alive`` is False when no thread serves a
    recurring job: before ``start()``, after ``stop()``, or if its thread ended unexpectedly
    (a bug; the log says why), in which case ``trigger()`` returns False too. ``paused`` is
    True while the job is paused (``JobHost.pause``): for a distributed job, as this host last
    saw its row (read at its polls, at most every 5 s).
    """

    name: str
    kind: Literal["recurring", "distributed"]
    period: timedelta | Cron
    """The period, or the calendar (a :class:`recurjobs.Cron`)."""
    next_run: datetime | None
    last_start: datetime | None
    last_outcome: str | None
    runs: int
    failures: int
    running: bool
    alive: bool = True
    paused: bool = False


def not_started(job: object, *, distributed: bool = False, paused: bool = False) -> JobStatus:
    """The record of a registered job whose thread (or poller) has not started."""
    name = job_name(job)
    return JobStatus(
        name=name,
        kind="distributed" if distributed else "recurring",
        period=call_user(f"period of {name}", getattr, job, "period", INFINITE, default=INFINITE),
        next_run=None,
        last_start=None,
        last_outcome=None,
        runs=0,
        failures=0,
        running=False,
        alive=False,
        paused=paused,
    )
