"""The run history in SQL: write a batch of records, read runs back, prune old rows.

Writing (:func:`write_batch`) is one transaction per batch: whole runs and the starts of
distributed runs are inserted with one multi-row ``INSERT``; the ends of distributed runs
whose start is already in the table are one ``UPDATE`` each, found through the
``(job, started_ms, id)`` index. Distributed times are on the database clock: the writer reads
``db_now_ms()`` once per batch and places each record by the real time elapsed since it
happened, so a writer that runs late still stores when the run really started.

Inserting the start of a distributed run also marks the older rows of that job still without
an outcome as ``lease_lost``: only one claim of a job is live at a time, so a new claim means
the earlier run's host lost its claim (killed, or cut off). When that host is alive and its end
arrives later, the end overwrites the mark with what really happened.

Reading (:func:`read_history`) and pruning (:func:`prune_history`) are index-driven: newest
runs of one job by ``(job, started_ms, id)``, of all jobs by ``(started_ms, id)``, failures by
``(outcome, started_ms, job)``; deletes go in batches of ids, so no statement holds locks long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from recurjobs._history import KINDS, OUTCOMES, RunRecord, error_text
from recurjobs._historyrec import Done, End, ErrorInfo, Record, Start
from recurjobs._validate import table_prefix as check_prefix
from recurjobs.sql._bounds import DEFAULT_STATEMENT_TIMEOUT, bounded_waits, to_ms
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._history_table import RUNS_SCHEMA_VERSION, meta_table, runs_table

__all__ = [
    "HistoryTables",
    "failure_counts",
    "prune_history",
    "read_history",
    "triggered_names",
    "write_batch",
]

# ``JobStore._step``: run ``fn`` in one bounded transaction, retried through transient faults.
Step = Callable[[str, Callable[[Connection], Any]], Any]

_DELETE_BATCH = 1000
_MAX_LIMIT = 10_000


@dataclass
class HistoryTables:
    """The runs and meta tables of one prefix, in their own ``MetaData``."""

    prefix: str
    metadata: MetaData = field(default_factory=MetaData)

    def __post_init__(self) -> None:
        self.runs: Table = runs_table(self.metadata, self.prefix)
        self.meta: Table = meta_table(self.metadata, self.prefix)

    def ensure_version(self, step: Step) -> None:
        """Write the ``runs_schema`` row when it is missing (another host may race us)."""
        meta = self.meta
        query = select(meta.c.value).where(meta.c.key == "runs_schema")
        if step("reading the history schema version", lambda conn: conn.execute(query).first()):
            return
        row = insert(meta).values(key="runs_schema", value=RUNS_SCHEMA_VERSION)
        try:
            step("writing the history schema version", lambda conn: conn.execute(row))
        except IntegrityError:
            pass  # written by another host meanwhile


# ---------------------------------------------------------------------------- writing
def write_batch(
    conn: Connection,
    runs: Table,
    records: Sequence[Record],
    *,
    host: str,
    open_rows: Mapping[str, int],
) -> dict[str, int | None]:
    """Write ``records`` (oldest first) in the caller's transaction.

    ``open_rows`` maps the claim ids of distributed runs whose start row is in the table
    (written by earlier batches of this writer) to their ``started_ms``. Returns the changes
    to make to it once the transaction committed: claim id -> ``started_ms`` of a start row
    inserted now, or None for a run whose end was written now.
    """
    offset = _db_offset(conn) if any(not _host_clock(r) for r in records) else 0.0
    host = host[:255]
    ended = {r.claim_id: r for r in records if isinstance(r, End)}
    rows: list[dict[str, Any]] = []
    sweeps: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []
    changes: dict[str, int | None] = {}
    for record in records:
        if isinstance(record, Done):
            on_db = record.kind == "distributed"
            started = _at(record.started, offset) if on_db else int(record.started)
            stopped = _at(record.ended, offset) if on_db else int(record.ended)
            rows.append(_row(record, host, started, stopped, record.outcome, record.error))
        elif isinstance(record, Start):
            started = _at(record.at, offset)
            sweeps.append({"b_job": record.job[:200], "b_started": started})
            end = ended.pop(record.claim_id, None)
            if end is None:
                rows.append(_row(record, host, started, None, None, None))
                changes[record.claim_id] = started
            else:  # started and ended within one batch: one whole row
                stopped = _at(end.at, offset)
                rows.append(_row(record, host, started, stopped, end.outcome, end.error))
                changes[record.claim_id] = None
        elif record.claim_id in ended:  # an End whose start row is older
            ended.pop(record.claim_id)
            started_ms = open_rows.get(record.claim_id)
            if started_ms is None:  # its start never reached the table: write the whole run
                start = _at(record.started, offset)
                rows.append(_row(record, host, start, _at(record.at, offset), record.outcome,
                                 record.error))
            else:
                ends.append(
                    {
                        "b_job": record.job[:200],
                        "b_started": started_ms,
                        "b_claim": record.claim_id,
                        "ended_ms": _at(record.at, offset),
                        "outcome": record.outcome,
                        "error": _error(record.error),
                    }
                )
            changes[record.claim_id] = None
    c = runs.c
    if sweeps:
        sweep = (
            update(runs)
            .where(
                c.job == bindparam("b_job"),
                c.kind == "distributed",
                c.outcome.is_(None),
                c.started_ms < bindparam("b_started"),
            )
            .values(outcome="lease_lost")
        )
        conn.execute(sweep, sweeps)
    if rows:
        _insert(conn, runs, rows)
    if ends:
        finish = update(runs).where(
            c.job == bindparam("b_job"),
            c.started_ms == bindparam("b_started"),
            c.claim_id == bindparam("b_claim"),
        )
        conn.execute(finish, ends)
    return changes


_COLUMNS = ("job", "kind", "host", "claim_id", "trigger", "started_ms", "ended_ms", "outcome",
            "error")  # fmt: skip


def _insert(conn: Connection, runs: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``: through COPY on PostgreSQL with psycopg (a fifth of the CPU of an
    INSERT per row), else one executemany (multi-row on MySQL drivers, C loop on SQLite)."""
    dialect = conn.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        conn.execute(insert(runs), rows)
        return
    quote = dialect.identifier_preparer
    columns = ", ".join(quote.quote(name) for name in _COLUMNS)
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(
        f"COPY {quote.format_table(runs)} ({columns}) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(tuple(row[name] for name in _COLUMNS))


def _host_clock(record: Record) -> bool:
    return isinstance(record, Done) and record.kind == "recurring"


def _db_offset(conn: Connection) -> float:
    """Database-clock milliseconds minus ``time.monotonic()`` milliseconds, now."""
    before = time.monotonic()
    db_ms = int(conn.execute(select(db_now_ms())).scalar_one())
    after = time.monotonic()
    return db_ms - (before + after) * 500.0


def _at(monotonic: float, offset: float) -> int:
    return round(monotonic * 1000.0 + offset)


def _row(
    record: Done | Start | End,
    host: str,
    started: int,
    ended: int | None,
    outcome: str | None,
    error: ErrorInfo,
) -> dict[str, Any]:
    kind = record.kind if isinstance(record, Done) else "distributed"
    return {
        "job": record.job[:200],
        "kind": kind,
        "host": host,
        "claim_id": record.claim_id,
        "trigger": record.trigger,
        "started_ms": started,
        "ended_ms": ended,
        "outcome": outcome,
        "error": _error(error),
    }


def _error(error: ErrorInfo) -> str | None:
    if error is None or isinstance(error, str):
        return error
    try:
        return error_text(error)
    except Exception:  # a broken exception class: keep the run
        return error.exc_type.__qualname__ if error.exc_type is not None else "Exception"


# ---------------------------------------------------------------------------- reading
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
    runs = HistoryTables(prefix).runs
    since_ms = None if since is None else round(since.timestamp() * 1000)
    query = history_query(
        runs, job=job, limit=limit, outcome=outcome, kind=kind, since_ms=since_ms
    )
    try:
        with engine.connect() as conn, bounded_waits(conn, to_ms(statement_timeout)):
            found = list(conn.execute(query))
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
    query = failures_query(HistoryTables(prefix).runs, round(since.timestamp() * 1000))
    try:
        with engine.connect() as conn, bounded_waits(conn, to_ms(statement_timeout)):
            return {job: int(count) for job, count in conn.execute(query)}
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
        query = query.where(c.job == job)
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
        if not 1 <= len(job) <= 200:
            raise ValueError(f"job must be a name of 1 to 200 characters, got {job!r}")
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


# ---------------------------------------------------------------------------- pruning


def prune_history(
    step: Step,
    runs: Table,
    *,
    keep_ms: int,
    max_rows_per_job: int,
    cancelled: Callable[[], bool] = lambda: False,
) -> int:
    """Delete rows started more than ``keep_ms`` ago (database clock) and, of each job, all
    but the newest ``max_rows_per_job``; return how many. ``step(what, fn)`` runs ``fn`` in
    one bounded, retried transaction (``JobStore._step``). Stops early when ``cancelled()``.
    """
    c = runs.c
    old = select(c.id).where(c.started_ms < db_now_ms() - keep_ms).order_by(c.started_ms)
    deleted = _delete_all(step, runs, old.limit(_DELETE_BATCH), cancelled)
    jobs = select(c.job).distinct()
    names: list[str] = step("listing history jobs", lambda conn: list(conn.scalars(jobs)))
    for name in names:
        if cancelled():
            break
        edge = (
            select(c.started_ms, c.id)
            .where(c.job == name)
            .order_by(c.started_ms.desc(), c.id.desc())
            .offset(max_rows_per_job - 1)
            .limit(1)
        )
        found = step("reading history", _first(edge))
        if found is None:
            continue
        started, row_id = int(found[0]), int(found[1])
        older = or_(c.started_ms < started, and_(c.started_ms == started, c.id < row_id))
        query = select(c.id).where(c.job == name, older).limit(_DELETE_BATCH)
        deleted += _delete_all(step, runs, query, cancelled)
    return deleted


def _first(query: Any) -> Callable[[Connection], Any]:
    return lambda conn: conn.execute(query).first()


def _delete_all(step: Step, runs: Table, query: Any, cancelled: Callable[[], bool]) -> int:
    """Delete the rows whose ids ``query`` selects, a batch per transaction, until none."""
    total = 0
    while not cancelled():

        def one(conn: Connection) -> int:
            ids = list(conn.scalars(query))
            if ids:
                conn.execute(delete(runs).where(runs.c.id.in_(ids)))
            return len(ids)

        count = step("pruning history", one)
        total += count
        if count < _DELETE_BATCH:
            break
    return total


# ------------------------------------------------------------------------- triggers
def triggered_names(step: Step, jobs: Table, names: Collection[str]) -> set[str]:
    """Of ``names``, those marked due now by a trigger (``due_now``), read before claiming."""
    if not names:
        return set()
    c = jobs.c
    query = select(c.name).where(c.name.in_(list(names)), c.due_now == true())
    return set(step("reading triggers", lambda conn: list(conn.scalars(query))))
