"""What the jobs and servers pages say about each job: one line, and the texts of its cells.

A job may show up in three places (its jobs-table row, the history's latest run, the mounting
app's host); :func:`job_lines` merges them into one :class:`JobLine` per name, the row first.
The cells are formatted here rather than by template calls, and the sort keys live beside
them. No request, no SQL, no clock: the database's "now" comes in with the overview.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from recurjobs._cron import Cron
from recurjobs.dashboard._format import (
    absolute,
    duration,
    next_due_ms,
    relative,
    schedule_text,
)
from recurjobs.dashboard._records import JobRowView, Overview

__all__ = ["JobLine", "cells", "job_lines", "next_text", "process", "row_next_due_ms", "sort_key"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class JobLine:
    """One job on the jobs page, merged from its row, its latest run and the local host."""

    name: str
    kind: str
    schedule: str
    next_due_ms: int | None
    next_note: str
    last_started_ms: int | None
    last_outcome: str | None
    running_on: str | None
    running_since_ms: int | None
    paused: bool | None
    runs_24h: int | None
    failures_24h: int | None
    in_table: bool
    local: bool

    @property
    def state(self) -> str:
        """``running``, ``paused``, ``failing`` (the latest run failed) or ``ok``."""
        if self.running_on is not None:
            return "running"
        if self.paused:
            return "paused"
        if self.last_outcome in ("failed", "lease_lost"):
            return "failing"
        return "ok"


def row_next_due_ms(row: JobRowView, now_ms: int) -> int | None:
    """When a distributed job's row is next due (epoch ms), as its row says; the jobs page and
    the job page both show it."""
    return next_due_ms(
        period_ms=row.period_ms,
        aligned=row.aligned,
        last_run_ms=row.last_run_ms,
        last_attempted_run_ms=row.last_attempted_run_ms,
        cron=row.cron,
        due_now=row.due_now,
        now_ms=now_ms,
    )


def _ms(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    return int((moment - _EPOCH) / timedelta(milliseconds=1))


def job_lines(view: Overview, local: Iterable[Any]) -> list[JobLine]:
    """The jobs page's rows: every job of the jobs table, of the history and of ``local``
    (``JobStatus`` records of the mounting app's host, recurring ones)."""
    lines: dict[str, JobLine] = {}
    now = view.now_ms
    for name, row in view.rows.items():
        last = view.last_runs.get(name)
        running_on = running_since = None
        if row.running:
            running_on, running_since = row.owner or "?", row.last_attempted_run_ms
        elif last is not None and last.outcome is None:
            running_on, running_since = last.host, last.started_ms
        # The history's latest run, unless the row was claimed well after it (the claiming
        # host does not record history, or its record is still queued).
        claimed = row.last_attempted_run_ms
        recorded = last is not None and (claimed is None or claimed <= last.started_ms + 1000)
        if row.paused:
            note = "paused: not claimed until resumed"
        elif row.due_now:
            note = "triggered: at the next poll"
        else:
            note = ""
        lines[name] = JobLine(
            name=name,
            kind="distributed",
            schedule=schedule_text(row.period_ms, row.cron, row.aligned),
            next_due_ms=row_next_due_ms(row, now),
            next_note=note,
            last_started_ms=last.started_ms if recorded and last else claimed,
            last_outcome=last.outcome if recorded and last else None,
            running_on=running_on,
            running_since_ms=running_since,
            paused=row.paused,
            runs_24h=view.runs_24h.get(name, 0) if view.has_history else None,
            failures_24h=view.failures_24h.get(name, 0) if view.has_history else None,
            in_table=True,
            local=False,
        )
    for status in local:
        if status.kind != "recurring" or status.name in lines:
            continue
        last = view.last_runs.get(status.name)
        period = status.period
        if isinstance(period, Cron):
            schedule = f"cron {period.describe()}"
        elif isinstance(period, timedelta) and period < timedelta(days=36500):
            schedule = schedule_text(int(period / timedelta(milliseconds=1)), None)
        else:
            schedule = "on trigger only"
        lines[status.name] = JobLine(
            name=status.name,
            kind="recurring",
            schedule=schedule,
            next_due_ms=_ms(status.next_run),
            next_note="" if status.alive else "not running in this process",
            last_started_ms=last.started_ms if last else _ms(status.last_start),
            last_outcome=last.outcome if last else status.last_outcome,
            running_on="this app" if status.running else None,
            running_since_ms=_ms(status.last_start) if status.running else None,
            paused=status.paused,
            runs_24h=view.runs_24h.get(status.name, 0) if view.has_history else status.runs,
            failures_24h=(
                view.failures_24h.get(status.name, 0) if view.has_history else status.failures
            ),
            in_table=False,
            local=True,
        )
    for name, last in view.last_runs.items():
        if name in lines:
            continue
        lines[name] = JobLine(
            name=name,
            kind=last.kind,
            schedule="(another process's recurring job)" if last.kind == "recurring" else "",
            next_due_ms=None,
            next_note="",
            last_started_ms=last.started_ms,
            last_outcome=last.outcome,
            running_on=last.host if last.outcome is None else None,
            running_since_ms=last.started_ms if last.outcome is None else None,
            paused=None,
            runs_24h=view.runs_24h.get(name, 0),
            failures_24h=view.failures_24h.get(name, 0),
            in_table=False,
            local=False,
        )
    return list(lines.values())


def sort_key(sort: str) -> Callable[[JobLine], Any]:
    """The jobs page's sort key for ``sort`` (one of the page's ``SORTS``)."""
    big = 1 << 62
    keys: dict[str, Callable[[JobLine], Any]] = {
        "name": lambda line: line.name.lower(),
        "next": lambda line: line.next_due_ms if line.next_due_ms is not None else big,
        "last": lambda line: -(line.last_started_ms or 0),
        "runs": lambda line: -(line.runs_24h or 0),
        "failures": lambda line: -(line.failures_24h or 0),
    }
    return keys[sort]


def cells(line: JobLine, now: int, job_url: str) -> dict[str, str]:
    """The jobs page's texts of one line, formatted here rather than by template calls (a
    page of hundreds of jobs renders several times faster)."""
    return {
        "link": f"{job_url}?{urlencode({'name': line.name})}",
        "next_rel": next_text(line.next_due_ms, now),
        "next_abs": absolute(line.next_due_ms),
        "last_rel": relative(line.last_started_ms, now),
        "last_abs": absolute(line.last_started_ms),
        "running_for": (
            duration(now - line.running_since_ms) if line.running_since_ms is not None else ""
        ),
    }


def next_text(due_ms: int | None, now: int) -> str:
    """``in about 12 minutes``; ``due now`` or ``overdue by 3 h`` once the time has passed
    (a job long overdue means no server claims it: none runs it, or all are down)."""
    if due_ms is None:
        return ""
    if due_ms > now:
        return relative(due_ms, now)
    late = now - due_ms
    return "due now" if late < 60_000 else f"overdue by {duration(late)}"


def process(identity: str) -> str:
    """``host:pid`` of an identity ``host:pid:suffix``: a host's job claims and its election
    row carry different random suffixes, but name the same process."""
    head, sep, _ = identity.rpartition(":")
    return head if sep and ":" in head else identity
