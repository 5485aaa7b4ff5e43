"""The dashboard's plain records, and how a row of the jobs or runs table becomes one.

Frozen dataclasses the pages read (a run, a jobs-table row, a server, a page's overview, a page
of a job's history); :mod:`._data` reads the rows and fills them. No SQL runs here: the
builders only take values out of a row already read (an old table's missing column is None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "RUN_COLUMNS",
    "HistoryPage",
    "JobRowView",
    "Overview",
    "Run",
    "Server",
    "job_row_of",
    "run_of",
]

#: The runs table's columns every page reads (``error`` only where a page shows it).
RUN_COLUMNS = (
    "id",
    "job",
    "kind",
    "host",
    "claim_id",
    "trigger",
    "started_ms",
    "ended_ms",
    "outcome",
)


@dataclass(frozen=True)
class Run:
    """One row of the runs table (``error`` only where a page shows it)."""

    id: int
    job: str
    kind: str
    host: str
    claim_id: str | None
    trigger: str
    started_ms: int
    ended_ms: int | None
    outcome: str | None
    error: str | None = None


@dataclass(frozen=True)
class JobRowView:
    """One row of the distributed jobs table; ``paused``/``cron`` are None on old tables."""

    name: str
    period_ms: int
    aligned: bool
    last_run_ms: int
    last_attempted_run_ms: int | None
    last_alive_ms: int | None
    lease_ms: int | None
    running: bool
    owner: str | None
    claim_id: str | None
    due_now: bool
    paused: bool | None
    cron: str | None


@dataclass(frozen=True)
class Server:
    """One row of the servers table, and whether it holds the publisher lease."""

    identity: str
    address: str | None
    registered_ms: int
    last_seen_ms: int
    active: bool
    publisher: bool


@dataclass(frozen=True)
class Overview:
    """Everything the jobs and servers pages show, read at ``now_ms`` (database clock)."""

    now_ms: int
    rows: dict[str, JobRowView]
    last_runs: dict[str, Run]
    runs_24h: dict[str, int]
    failures_24h: dict[str, int]
    servers: list[Server]
    publisher: str | None
    has_history: bool
    has_servers: bool


@dataclass(frozen=True)
class HistoryPage:
    """One page of a job's runs, newest first, and the key of the next (older) page."""

    runs: list[Run]
    older: str | None
    runs_24h: int
    failures_24h: int


def job_row_of(row: Any) -> JobRowView:
    """The record of one jobs-table row (columns the table lacks are None)."""
    values = row._mapping
    return JobRowView(
        name=values["name"],
        period_ms=int(values["period_ms"]),
        aligned=bool(values["aligned"]),
        last_run_ms=int(values["last_run_ms"]),
        last_attempted_run_ms=_int(values.get("last_attempted_run_ms")),
        last_alive_ms=_int(values.get("last_alive_ms")),
        lease_ms=_int(values.get("lease_ms")),
        running=bool(values["running"]),
        owner=values.get("owner"),
        claim_id=values.get("claim_id"),
        due_now=bool(values["due_now"]),
        paused=None if "paused" not in values else bool(values["paused"]),
        cron=values.get("cron"),
    )


def run_of(row: Any) -> Run:
    """The record of one runs-table row (``error`` when the row has it)."""
    values = row._mapping
    return Run(
        id=int(values["id"]),
        job=values["job"],
        kind=values["kind"],
        host=values["host"],
        claim_id=values["claim_id"],
        trigger=values["trigger"],
        started_ms=int(values["started_ms"]),
        ended_ms=_int(values["ended_ms"]),
        outcome=values["outcome"],
        error=values.get("error"),
    )


def _int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]
