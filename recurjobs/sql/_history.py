"""The run history in SQL: write a batch of records, read runs back, prune old rows.

Writing (:func:`write_batch`) is one transaction per batch: whole runs and the starts of
distributed runs are inserted together (``COPY`` on PostgreSQL, one ``executemany``
elsewhere; recurring runs without error straight from their plain tuples); the ends of
distributed runs whose start is already in the table are one ``UPDATE`` each, found through the
``(job, started_ms, id)`` index. Distributed times are on the database clock: the writer reads
``db_now_ms()`` for each batch that holds them and places each record by the real time elapsed
since it happened (with the better of that reading and the one it kept, :class:`DbClock`), so a
writer that runs late still stores when the run really started.

Inserting the start of a distributed run also marks the older rows of that job still without
an outcome as ``lease_lost``: only one claim of a job is live at a time, so a new claim means
the earlier run's host lost its claim (killed, or cut off). When that host is alive and its end
arrives later, the end overwrites the mark with what really happened.

Pruning (:func:`prune_history`) finds rows through the indexes and deletes them in batches of
ids, so no statement holds locks long. Reading lives in ``_historyread`` (re-exported here:
:func:`read_history`, :func:`failure_counts`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    Connection,
    MetaData,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from recurjobs._guard import call_user
from recurjobs._history import error_text
from recurjobs._historyrec import Done, End, ErrorInfo, Ran, Record, Start
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._history_table import (
    RUNS_SCHEMA_VERSION,
    column_text,
    meta_table,
    runs_table,
)
from recurjobs.sql._historyread import failure_counts, failures_query, history_query, read_history

__all__ = [
    "DbClock",
    "HistoryTables",
    "failure_counts",
    "failures_query",
    "history_query",
    "prune_history",
    "read_history",
    "write_batch",
]

# A distributed run in the history: its job's name and its claim id (a batch shares one).
RunKey = tuple[str, str]

# ``JobStore._step``: run ``fn`` in one bounded transaction, retried through transient faults.
Step = Callable[[str, Callable[[Connection], Any]], Any]

_DELETE_BATCH = 1000
# Rows the writer formats between two moments it lets other threads run (a 2,000-row batch
# holds the interpreter for a few milliseconds otherwise, and due jobs would wait that long).
# 200 rows take well under 0.1 ms in the comprehension of runs without error (``_ran_text``)
# and about 0.1 ms in the loops over the other records; each yield costs about 20 us of CPU on
# a virtual machine, so yielding every 50 rows was nearly half of the writer's CPU.
_YIELD_EVERY = 200
# Reading the database clock: at most this many reads, stopping at one whose round trip took
# no more than _FAST_READ seconds (its error is at most half that). A local server answers in
# well under a millisecond; on a busy machine single readings took 40 ms and more, which put
# a 50 ms run's end 23 ms early. A remote server (every round trip slower) costs two more
# round trips per batch that holds distributed runs.
_OFFSET_READS = 3
_FAST_READ = 0.005
# A kept reading of the database clock (DbClock): its error bound grows by this many seconds
# per second of age (the database server's clock and this host's may run at different rates;
# 100 ppm is generous for clocks kept by NTP), and it is used for at most _KEEP seconds.
_DRIFT = 1e-4
_KEEP = 60.0


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
    open_rows: Mapping[RunKey, int],
    again: bool = False,
    clock: DbClock | None = None,
) -> dict[RunKey, int | None]:
    """Write ``records`` (oldest first) in the caller's transaction.

    ``open_rows`` maps the distributed runs (job, claim id) whose start row is in the table
    (written by earlier batches of this writer) to their ``started_ms``. Returns the changes
    to make to it once the transaction committed: run -> ``started_ms`` of a start row
    inserted now, or None for a run whose end was written now. A run is its job and claim id
    together: the rows claimed by one batched claim share its claim id.

    ``again``: an earlier attempt at this batch failed, perhaps only after its ``COMMIT`` was
    applied (the connection died before the answer came). If the batch's rows are in the table
    already (:func:`_landed`), nothing is written twice.

    ``clock``: the writer's :class:`DbClock`, kept between batches (None: a reading of this
    batch alone).
    """
    # Nearly every record of a busy host is a Ran (a recurring run without error): those become
    # rows without a call per record (:func:`_ran_rows`, :func:`_ran_text`); the rest here.
    ran = cast("list[Ran]", [r for r in records if type(r) is tuple])
    records = cast(
        "list[Done | Start | End]",
        [r for r in records if type(r) is not tuple] if len(ran) < len(records) else [],
    )
    timed = any(not _host_clock(r) for r in records)
    offset = (clock if clock is not None else DbClock()).place(conn) if timed else 0.0
    host = column_text(host, 255)
    ended = {(r.job, r.claim_id): r for r in records if isinstance(r, End)}
    rows: list[tuple[Any, ...]] = []
    sweeps: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []
    changes: dict[RunKey, int | None] = {}
    for done, record in enumerate(records, 1):
        if done % _YIELD_EVERY == 0:
            time.sleep(0)
        if isinstance(record, Done):
            on_db = record.kind == "distributed"
            started = _at(record.started, offset) if on_db else round(record.started)
            stopped = _at(record.ended, offset) if on_db else round(record.ended)
            rows.append(_row(record, host, started, stopped, record.outcome, record.error))
        elif isinstance(record, Start):
            started = _at(record.at, offset)
            sweeps.append({"b_job": column_text(record.job, 200), "b_started": started})
            end = ended.pop((record.job, record.claim_id), None)
            if end is None:
                rows.append(_row(record, host, started, None, None, None))
                changes[(record.job, record.claim_id)] = started
            else:  # started and ended within one batch: one whole row
                stopped = _at(end.at, offset)
                rows.append(_row(record, host, started, stopped, end.outcome, end.error))
                changes[(record.job, record.claim_id)] = None
        elif (record.job, record.claim_id) in ended:  # an End whose start row is older
            ended.pop((record.job, record.claim_id))
            started_ms = open_rows.get((record.job, record.claim_id))
            if started_ms is None:  # its start never reached the table: write the whole run
                start = _at(record.started, offset)
                rows.append(
                    _row(record, host, start, _at(record.at, offset), record.outcome, record.error)
                )
            else:  # placed from its start row: the duration is the real one, whatever the
                # readings of the two batches' clocks (both monotonic instants are known)
                ends.append(
                    {
                        "b_job": column_text(record.job, 200),
                        "b_started": started_ms,
                        "b_claim": record.claim_id,
                        "ended_ms": started_ms + round((record.at - record.started) * 1000.0),
                        "outcome": record.outcome,
                        "error": _error(record.error),
                    }
                )
            changes[(record.job, record.claim_id)] = None
    if again and (rows or ran) and _landed(conn, runs, _ran_rows(ran, host) + rows):
        return changes  # the sweeps and ends were in the same committed transaction
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
    if rows or ran:
        _insert(conn, runs, rows, ran, host)
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


def _insert(
    conn: Connection, runs: Table, rows: list[tuple[Any, ...]], ran: list[Ran], host: str
) -> None:
    """Insert ``rows`` (values in ``_COLUMNS`` order) and the runs ``ran`` of ``host``: through
    COPY on PostgreSQL with psycopg (a fifth of the CPU of an INSERT per row), else one
    executemany (multi-row on MySQL drivers, C loop on SQLite)."""
    dialect = conn.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        every = _ran_rows(ran, host) + rows
        conn.execute(insert(runs), [dict(zip(_COLUMNS, row, strict=True)) for row in every])
        return
    quote = dialect.identifier_preparer
    columns = ", ".join(quote.quote(name) for name in _COLUMNS)
    raw: Any = conn.connection.driver_connection
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {quote.format_table(runs)} ({columns}) FROM STDIN") as copy,
    ):
        if ran:
            copy.write(_ran_text(ran, host))
        write = copy.write_row
        for done, row in enumerate(rows, 1):
            write(row)
            if done % _YIELD_EVERY == 0:
                time.sleep(0)  # let due job threads have the interpreter between rows


def _ran_rows(ran: list[Ran], host: str) -> list[tuple[Any, ...]]:
    """The rows of the runs ``ran`` of ``host`` (values in ``_COLUMNS`` order)."""
    names = _ColumnNames()
    return [
        (names[job], "recurring", host, None, trigger, round(started), round(ended), outcome, None)
        for job, trigger, started, ended, outcome in ran
    ]


def _ran_text(ran: list[Ran], host: str) -> str:
    """The rows of the runs ``ran`` of ``host`` as COPY's text format takes them.

    A comprehension per ``_YIELD_EVERY`` runs, with no call of ours per run: a name is worked
    out once per batch (:class:`_CopyNames`), the trigger and outcome are words of ours that
    need no escaping, and ``round`` places the times as in :func:`_ran_rows`.
    """
    names = _CopyNames()
    host = _copy_text(host)
    lines: list[str] = []
    for at in range(0, len(ran), _YIELD_EVERY):
        if at:
            time.sleep(0)  # let due job threads have the interpreter between parts
        lines += [
            f"{names[job]}\trecurring\t{host}\t\\N\t{trigger}\t{round(started)}\t"
            f"{round(ended)}\t{outcome}\t\\N\n"
            for job, trigger, started, ended, outcome in ran[at : at + _YIELD_EVERY]
        ]
    return "".join(lines)


# COPY's text format (PostgreSQL): a backslash, tab, newline or carriage return in a value is
# written with a backslash; \N is NULL.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format."""
    return value.translate(_COPY_ESCAPES)


class _ColumnNames(dict[str, str]):
    """A job's name -> its ``job`` column text (:func:`column_text`), once per name."""

    def __missing__(self, name: str) -> str:
        self[name] = text = column_text(name, 200)
        return text


class _CopyNames(dict[str, str]):
    """A job's name -> its ``job`` column text as a COPY field, once per name."""

    def __missing__(self, name: str) -> str:
        self[name] = text = _copy_text(column_text(name, 200))
        return text


def _landed(conn: Connection, runs: Table, rows: list[tuple[Any, ...]]) -> bool:
    """Whether a batch inserting ``rows`` committed already: its first and last rows are there.

    A row with a claim id is its run's only row (a batch of claims shares one id, but no two
    runs share a job and a claim id), so it is found by job and claim id (its times, placed on
    the database clock at each attempt, may differ by a millisecond). A recurring run's row is
    found by its values, counted: the batch committed if the table holds at least as many rows
    with those values as the batch does. (Rows with those exact values from an earlier batch
    could only come from the same job ending twice in one millisecond on this host; their count
    makes such a batch look written when both its first and last row have such twins, and it is
    then not written.)
    """
    c = runs.c
    for row in {rows[0], rows[-1]}:
        values = dict(zip(_COLUMNS, row, strict=True))
        if values["claim_id"] is not None:
            query = select(c.id).where(c.job == values["job"], c.claim_id == values["claim_id"])
            if conn.execute(query.limit(1)).first() is None:
                return False
            continue
        key = _key(row)
        same = [c[k].is_(None) if v is None else c[k] == v for k, v in zip(_KEY, key, strict=True)]
        wanted = sum(1 for other in rows if other[3] is None and _key(other) == key)
        count = select(func.count()).select_from(runs).where(c.claim_id.is_(None), *same)
        found = conn.execute(count).scalar_one()
        if int(found) < wanted:
            return False
    return True


# What identifies a recurring run's row (claim_id NULL): all but the error text.
_KEY = ("job", "kind", "host", "trigger", "started_ms", "ended_ms", "outcome")
_KEY_AT = tuple(_COLUMNS.index(name) for name in _KEY)


def _key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(row[i] for i in _KEY_AT)


def _host_clock(record: Record) -> bool:
    return isinstance(record, Done) and record.kind == "recurring"


def _db_offset(conn: Connection) -> float:
    """Database-clock milliseconds minus ``time.monotonic()`` milliseconds, now."""
    return _db_reading(conn)[1]


def _db_reading(conn: Connection) -> tuple[float, float]:
    """``(round trip in seconds, offset)``: the offset as :func:`_db_offset` gives it.

    A reading is off by up to half its round trip: one held up by a stalled network or a paused
    process (seconds) would misplace every record of the batch by seconds, a run's start even
    after its end. So a slow reading is taken again at once, up to ``_OFFSET_READS`` times, and
    the reading with the shortest round trip is used.
    """
    best: tuple[float, float] | None = None  # (round trip, offset)
    for _ in range(_OFFSET_READS):
        before = time.monotonic()
        db_ms = int(conn.execute(select(db_now_ms())).scalar_one())
        after = time.monotonic()
        reading = (after - before, db_ms - (before + after) * 500.0)
        best = reading if best is None else min(best, reading)
        if reading[0] <= _FAST_READ:
            break
    assert best is not None
    return best


@dataclass
class DbClock:
    """The database clock as the writer places distributed runs on it, kept between batches.

    Every reading is off by up to half its round trip, and a distributed run's start and end
    are often written in different batches: placed by two readings, the run's duration carries
    the difference of their errors (a 50 ms run showed as 27 ms on a busy machine). So each
    batch still reads the clock, but places its records with whichever reading has the
    smaller error bound: the new one, or the one kept from an earlier batch, whose bound grows
    with its age by ``_DRIFT`` (how fast two clocks may drift apart). A kept reading is never
    used for longer than ``_KEEP`` seconds, so a step of the database's clock is followed.
    """

    round_trip: float = math.inf  # seconds
    offset: float = 0.0  # database-clock ms minus time.monotonic() ms
    taken: float = -math.inf  # time.monotonic() of the kept reading

    def place(self, conn: Connection) -> float:
        """The offset to place this batch's records with (reads the clock through ``conn``)."""
        round_trip, offset = _db_reading(conn)
        now = time.monotonic()
        age = now - self.taken
        if age > _KEEP or round_trip / 2 <= self.round_trip / 2 + age * _DRIFT:
            self.round_trip, self.offset, self.taken = round_trip, offset, now
        return self.offset


def _at(monotonic: float, offset: float) -> int:
    return round(monotonic * 1000.0 + offset)


def _row(
    record: Done | Start | End,
    host: str,
    started: int,
    ended: int | None,
    outcome: str | None,
    error: ErrorInfo,
) -> tuple[Any, ...]:
    """One row's values in ``_COLUMNS`` order."""
    kind = record.kind if isinstance(record, Done) else "distributed"
    return (
        column_text(record.job, 200),
        kind,
        host,
        record.claim_id,
        record.trigger,
        started,
        ended,
        outcome,
        _error(error),
    )


def _error(error: ErrorInfo) -> str | None:
    """The error column's text (no NUL) of a run's error, formatted now if it was captured."""
    if error is None or isinstance(error, str):
        return None if error is None else column_text(error)
    kind = error.exc_type.__qualname__ if error.exc_type is not None else "Exception"
    # Formatting reads the job's source files; whatever goes wrong, the run is kept.
    text = call_user(f"formatting the {kind} of a run", error_text, error, default=kind)
    return column_text(text)


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
