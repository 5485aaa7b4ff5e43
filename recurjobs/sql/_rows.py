"""Plain records the store hands out: a claim, a due job, and one row of the jobs table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from recurjobs._cron import Cron
from recurjobs.sql._fires import first_fire_after, parse_cron_text

__all__ = ["Claim", "Due", "JobRow", "Poll", "job_row", "ms", "utc"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_ONE_MS = timedelta(milliseconds=1)


def ms(value: timedelta) -> int:
    """A duration as whole milliseconds, at least 1 (periods and leases are never zero)."""
    return max(1, round(value / _ONE_MS))


def utc(epoch_ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (exact: no float on the way)."""
    return _EPOCH + timedelta(milliseconds=epoch_ms)


@dataclass(frozen=True)
class Claim:
    """This host's claim on one job's row: the id that fences every later write."""

    name: str
    claim_id: str
    lease: timedelta
    """How long the claim lives without a heartbeat (period + max_execution_time; for a Cron
    job, the gap between the claimed fire time and the next one + max_execution_time)."""


@dataclass(frozen=True)
class Due:
    """A job a poll found claimable, and what its claim must bind."""

    name: str
    fire_ms: int | None = None
    """A Cron row's fire time ``F`` (epoch ms, database clock) with ``last_attempted_run < F
    <= now``, bound into the claim; None for a period row or a Cron row that is only
    triggered."""
    gap_ms: int | None = None
    """A Cron row's gap from ``F`` to the next fire time (for a triggered row: between the
    next two fire times): stands in for the period in the claim's lease."""
    triggered: bool = False
    """The row was marked due by a trigger (``due_now``): its run is recorded as manual."""


@dataclass(frozen=True)
class Poll:
    """What one poll learnt: the claimable jobs, in claiming order, and the calendar ahead."""

    due: list[Due]
    now_ms: int | None
    """The database's now when the poll read the rows (None when it found no row to read)."""
    fires_ms: dict[str, int]
    """The next fire time of each free Cron row polled (past fire times: the row is due)."""


@dataclass(frozen=True)
class JobRow:
    """One distributed job as the database sees it (times are aware UTC datetimes)."""

    name: str
    period: timedelta
    align_to_clock: bool
    last_run: datetime
    """When the last run ended (or the row was created)."""
    last_attempted_run: datetime | None
    """When the job was last claimed."""
    last_alive: datetime | None
    """The owner's last sign of life (claim or heartbeat)."""
    running: bool
    stale: bool
    """Running, but silent for longer than its lease: another host may take it over."""
    owner: str | None
    claim_id: str | None
    triggered: bool
    next_due: datetime
    """When the job becomes due by its schedule (or the database's now when triggered)."""
    database_now: datetime
    cron: Cron | None = None
    """The calendar schedule of a Cron row (its ``cron`` column), None for a period row or a
    value this host cannot read; ``period`` then holds a nominal gap between fire times."""
    paused: bool = False
    """Paused cluster-wide (``JobHost.pause``): never claimed until resumed."""


def job_row(row: Any) -> JobRow:
    """Build a :class:`JobRow` from a result row with the table's columns, ``stale`` and
    ``now_ms``."""
    period_ms = int(row.period_ms)
    last_run_ms = int(row.last_run_ms)
    cron = parse_cron_text(row.cron)
    if row.due_now:
        next_ms = int(row.now_ms)
    elif cron is not None:
        attempted = row.last_attempted_run_ms
        next_ms = first_fire_after(cron, last_run_ms if attempted is None else int(attempted))
    elif row.aligned:
        next_ms = (last_run_ms // period_ms + 1) * period_ms
    else:
        next_ms = last_run_ms + period_ms
    return JobRow(
        name=row.name,
        period=timedelta(milliseconds=period_ms),
        align_to_clock=bool(row.aligned),
        last_run=utc(last_run_ms),
        last_attempted_run=_maybe(row.last_attempted_run_ms),
        last_alive=_maybe(row.last_alive_ms),
        running=bool(row.running),
        stale=bool(row.running) and bool(row.stale),
        owner=row.owner,
        claim_id=row.claim_id,
        triggered=bool(row.due_now),
        next_due=utc(next_ms),
        database_now=utc(int(row.now_ms)),
        cron=cron,
        paused=bool(getattr(row, "paused", False)),
    )


def _maybe(epoch_ms: int | None) -> datetime | None:
    return None if epoch_ms is None else utc(int(epoch_ms))
