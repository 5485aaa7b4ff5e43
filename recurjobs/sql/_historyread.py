"""Reading the run history: the newest runs, failures per job; each from an index.

The newest runs of one job come from ``(job, started_ms, id)``, of all jobs from
``(started_ms, id)``, both already in the order asked (no sort); failures per job since a time
from ``(outcome, started_ms, job)`` alone. ``recurjobs.sql._history`` re-exports these for
tools (``read_history(engine, prefix, ...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, MetaData, Table, func, inspect, select
from sqlalchemy.exc import DBAPIError

from recurjobs._history import KINDS, OUTCOMES, RunRecord
from recurjobs._validate import table_prefix as check_prefix
from recurjobs.sql._bounds import DEFAULT_STATEMENT_TIMEOUT, bounded_waits, to_ms
from recurjobs.sql._history_table import column_text, runs_table
from recurjobs.sql._shared import exclusive

__all__ = ["failure_counts", "failures_query", "history_query", "read_history"]

_MAX_LIMIT = 10_000

T = TypeVar("T")


def _read(engine: Engine, statement_timeout: float, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` on a pooled connection, bounded; once more on a fresh connection when the
    server dropped the pooled one (engines skip the pre-ping: a dead connection is found by
    using it, and the pool has already thrown it away)."""
    for attempt in (1, 2):
        try:
            with (
                exclusive(engine),
                engine.connect() as conn,
                bounded_waits(conn, to_ms(statement_timeout)),
            ):
                return fn(conn)
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


def _runs(prefix: str) -> Table:
    return runs_table(MetaData(), prefix)


def read_history(
    engine: Engine,
    prefix: str = "recurjobs_",
    *,
    job: str | None = None,
    limit: int = 100,
    outcome: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
) -> list[RunRecord]:
    """The newest runs (up to ``limit``), newest first, from ``<prefix>runs`` of ``engine``.

    ``job`` keeps one job's runs (by name), ``outcome`` one outcome (``"running"``: rows
    without one), ``kind`` one kind, ``since`` runs started at or after an aware datetime. An
    empty list when the table does not exist yet. Bad arguments raise TypeError/ValueError.
    """
    check_prefix(prefix, "prefix")
    _check_filters(job, limit, outcome, kind, since)
    runs = _runs(prefix)
    since_ms = None if since is None else round(since.timestamp() * 1000)
    query = history_query(
        runs, job=job, limit=limit, outcome=outcome, kind=kind, since_ms=since_ms
    )
    try:
        found = _read(engine, statement_timeout, lambda conn: list(conn.execute(query)))
    except DBAPIError:
        if not _has_table(engine, runs.name):
            return []
        raise
    return [_record(row) for row in found]


def failure_counts(
    engine: Engine,
    prefix: str = "recurjobs_",
    *,
    since: datetime,
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
) -> dict[str, int]:
    """Failed runs per job started at or after ``since`` (aware), read from the index alone."""
    check_prefix(prefix, "prefix")
    _check_filters(None, 1, None, None, since)
    query = failures_query(_runs(prefix), round(since.timestamp() * 1000))
    try:
        return _read(
            engine,
            statement_timeout,
            lambda conn: {job: int(count) for job, count in conn.execute(query)},
        )
    except DBAPIError:
        if not _has_table(engine, f"{prefix}runs"):
            return {}
        raise


def failures_query(runs: Table, since_ms: int) -> Any:
    """``job, count`` of failures since ``since_ms``: served by ``(outcome, started_ms, job)``."""
    c = runs.c
    return (
        select(c.job, func.count())
        .where(c.outcome == "failed", c.started_ms >= since_ms)
        .group_by(c.job)
    )


def history_query(
    runs: Table,
    *,
    job: str | None = None,
    limit: int = 100,
    outcome: str | None = None,
    kind: str | None = None,
    since_ms: int | None = None,
) -> Any:
    """The SELECT of :func:`read_history` (newest first)."""
    c = runs.c
    query = select(runs)
    if job is not None:
        query = query.where(c.job == column_text(job, 200))
    if outcome == "running":
        query = query.where(c.outcome.is_(None))
    elif outcome is not None:
        query = query.where(c.outcome == outcome)
    if kind is not None:
        query = query.where(c.kind == kind)
    if since_ms is not None:
        query = query.where(c.started_ms >= since_ms)
    return query.order_by(c.started_ms.desc(), c.id.desc()).limit(limit)


def _check_filters(
    job: object, limit: object, outcome: object, kind: object, since: object
) -> None:
    if job is not None:
        if not isinstance(job, str):
            raise TypeError(f"job must be a str, got {job!r}")
        if not job:  # longer than 200 characters: found as written, cut to the column's width
            raise ValueError("job must be a non-empty name, got ''")
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int, got {limit!r}")
    if not 1 <= limit <= _MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {_MAX_LIMIT}, got {limit!r}")
    if outcome is not None and outcome not in (*OUTCOMES, "running"):
        raise ValueError(f"outcome must be one of {(*OUTCOMES, 'running')}, got {outcome!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if since is not None:
        if not isinstance(since, datetime):
            raise TypeError(f"since must be a datetime, got {since!r}")
        if since.tzinfo is None:
            raise ValueError(f"since must be an aware datetime, got {since!r}")


def _has_table(engine: Engine, name: str) -> bool:
    try:
        return inspect(engine).has_table(name)
    except DBAPIError:
        return True  # cannot tell: let the original error through


def _record(row: Any) -> RunRecord:
    return RunRecord(
        job=row.job,
        kind=row.kind,
        host=row.host,
        started_at=_datetime(row.started_ms),
        ended_at=None if row.ended_ms is None else _datetime(row.ended_ms),
        outcome=row.outcome if row.outcome is not None else "running",
        trigger=row.trigger,
        error=row.error,
        claim_id=row.claim_id,
    )


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)
