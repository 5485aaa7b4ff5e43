"""History batches of distributed runs: runs claimed together share one claim id, so the writer
tells runs apart by job and claim id; their times are placed on the database clock by a
reading that a held-up round trip does not skew."""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, event, select

from recurjobs._historyrec import Done, End, HistoryQueue, Ran, Record, Start
from recurjobs.sql import JobStore
from recurjobs.sql._history import _COLUMNS, HistoryTables, _db_offset, read_history
from recurjobs.sql._history_table import column_text
from recurjobs.sql._historywriter import HistoryWriter
from tests.dbs import TestDatabase


@pytest.fixture
def writer(db: TestDatabase) -> Iterator[HistoryWriter]:
    tables = HistoryTables(db.table_prefix)
    store = JobStore(db.url, table_prefix=db.table_prefix)
    tables.metadata.create_all(store.engine)
    yield HistoryWriter(queue=HistoryQueue(100), store=store, tables=tables, host="me")
    store.dispose()


def _outcomes(writer: HistoryWriter) -> list[tuple[str, str, bool]]:
    """(job, outcome, has an end) of every row, by job."""
    runs = read_history(writer.store.engine, writer.tables.prefix, limit=100)
    return sorted((r.job, r.outcome, r.ended_at is not None) for r in runs)


def _end(job: str, claim: str, started: float, outcome: str) -> End:
    return End(job, claim, "schedule", started, time.monotonic(), outcome, None)


def test_runs_of_one_claim_id_ending_in_later_batches_update_their_own_rows(
    writer: HistoryWriter,
) -> None:
    """Two runs started by one batched claim, each ending in a batch of its own: each end
    completes its own start row; no whole row is added beside an open one."""
    now = time.monotonic()
    starts: list[Record] = [Start("a", "c1", "schedule", now), Start("b", "c1", "schedule", now)]
    writer._write(starts)
    assert [("a", "running", False), ("b", "running", False)] == _outcomes(writer)
    writer._write([_end("a", "c1", now, "executed")])
    writer._write([_end("b", "c1", now, "failed")])
    assert [("a", "executed", True), ("b", "failed", True)] == _outcomes(writer)


def test_runs_of_one_claim_id_in_one_batch_pair_each_start_with_its_own_end(
    writer: HistoryWriter,
) -> None:
    """Starts and ends of two runs of one claim id in a single batch: one whole row per run,
    each with its own outcome."""
    now = time.monotonic()
    batch: list[Record] = [
        Start("x", "c2", "schedule", now),
        Start("y", "c2", "schedule", now),
        _end("y", "c2", now, "canceled"),
        _end("x", "c2", now, "executed"),
    ]
    writer._write(batch)
    assert [("x", "executed", True), ("y", "canceled", True)] == _outcomes(writer)


def test_a_held_up_clock_reading_is_taken_again(writer: HistoryWriter) -> None:
    """The batch's first reading of the database clock reaches the server 0.4 s late (as behind
    a stalled network): the offset used comes from a quick reading, not from one that is off by
    half the delay (which placed a run's start after its end in the fault soak)."""
    held: list[bool] = []

    def hold(*_: object) -> None:
        if not held:
            held.append(True)
            time.sleep(0.4)

    with writer.store.engine.connect() as conn:
        reference = _quickest_offset(conn)
        event.listen(conn, "before_cursor_execute", hold)
        offset = _db_offset(conn)
        event.remove(conn, "before_cursor_execute", hold)
    assert held
    assert abs(offset - reference) < 100.0, (offset, reference)  # ms; skewed by ~200 before


def _quickest_offset(conn: Connection) -> float:
    """The database-clock offset (ms) from the quickest of ten readings."""
    return min((_timed_offset(conn) for _ in range(10)), key=lambda r: r[0])[1]


def _timed_offset(conn: Connection) -> tuple[float, float]:
    from sqlalchemy import select

    from recurjobs.sql._clockexpr import db_now_ms

    before = time.monotonic()
    db_ms = int(conn.execute(select(db_now_ms())).scalar_one())
    after = time.monotonic()
    return after - before, db_ms - (before + after) * 500.0


def test_a_record_the_batch_cannot_take_is_dropped_alone(
    writer: HistoryWriter, caplog: pytest.LogCaptureFixture
) -> None:
    """One record of a batch fails for good (here a start time that is no number): the batch
    is split until that record is alone; the others land and only it is counted as lost, with
    one ERROR line for the batch; the next batch is written as usual."""
    now_ms = time.time() * 1000
    batch: list[Record] = [
        (f"job-{i}", "schedule", now_ms, now_ms + 1, "executed") for i in range(5)
    ]
    batch[2] = ("job-2", "schedule", math.nan, now_ms, "executed")
    with caplog.at_level(logging.WARNING, logger="recurjobs.history"):
        writer._write(batch)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "recurjobs.history"]
    assert 1 == writer.lost
    assert [(f"job-{i}", "executed", True) for i in (0, 1, 3, 4)] == _outcomes(writer)
    assert 1 == len(said) and "ERROR" == said[0][0], said
    assert "refused 1 of 5 record(s)" in said[0][1]
    writer._write([("job-5", "schedule", now_ms, now_ms + 1, "executed")])
    assert (1, 5) == (writer.lost, len(_outcomes(writer)))


def test_a_batch_refused_for_every_record_costs_a_bounded_number_of_writes(
    writer: HistoryWriter, caplog: pytest.LogCaptureFixture
) -> None:
    """The runs table is gone: every record is refused. A 2,000-record batch costs at most 33
    write attempts and one error line, not one of each per record."""
    land = writer._land
    attempts: list[int] = []

    def counted(batch: list[Record]) -> object:
        attempts.append(len(batch))
        return land(batch)

    writer._land = counted  # type: ignore[method-assign,assignment]
    writer.tables.runs.drop(writer.store.engine)
    now_ms = time.time() * 1000
    batch: list[Record] = [
        (f"job-{i}", "schedule", now_ms, now_ms + 1, "executed") for i in range(2000)
    ]
    with caplog.at_level(logging.ERROR, logger="recurjobs.history"):
        writer._write(batch)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (2000, 1) == (writer.lost, len(errors))
    assert 2000 == attempts[0] and len(attempts) <= 33


@pytest.mark.parametrize("bad", [2, 8])
def test_a_few_bad_records_spread_over_a_batch_lose_only_themselves(
    writer: HistoryWriter, bad: int
) -> None:
    """A 2,000-record batch with ``bad`` records the database refuses, spread over it: every
    other record lands and only the bad ones are counted as lost (the split's write budget
    grows with every part that lands)."""
    now_ms = time.time() * 1000
    batch: list[Record] = [
        (f"job-{i % 50}", "schedule", now_ms, now_ms + 1, "executed") for i in range(2000)
    ]
    for k in range(bad):
        batch[97 + k * (2000 // bad)] = ("bad", "schedule", math.nan, now_ms, "executed")
    writer._write(batch)
    assert bad == writer.lost
    with writer.store.engine.connect() as conn:
        landed = conn.exec_driver_sql(f"SELECT COUNT(*) FROM {writer.tables.runs.name}").scalar()
    assert 2000 - bad == landed


def test_a_split_cut_short_by_the_stop_deadline_gives_up_what_is_left(
    writer: HistoryWriter, caplog: pytest.LogCaptureFixture
) -> None:
    """The stop deadline passes while a refused batch is being split: the parts left unwritten
    are counted lost once and logged as given up at the deadline, not as refused records."""
    land = writer._land
    now_ms = time.time() * 1000
    batch: list[Record] = [
        (f"job-{i}", "schedule", now_ms, now_ms + 1, "executed") for i in range(10)
    ]
    batch[2] = ("job-2", "schedule", math.nan, now_ms, "executed")

    def then_out_of_time(part: list[Record]) -> object:
        result = land(part)
        writer._deadline = time.monotonic() - 1  # stop() began and its deadline passed
        writer._stop.set()
        return result

    writer._land = then_out_of_time  # type: ignore[method-assign,assignment]
    with caplog.at_level(logging.WARNING, logger="recurjobs.history"):
        writer._write(batch)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert 10 == writer.lost
    assert [
        (logging.WARNING, "run history: 10 record(s) could not be written before the stop "
         "deadline and are lost")
    ] == lines  # fmt: skip


# A recurring run without error reaches the writer as a plain tuple (``Ran``) and is written
# without a call per run (COPY text on PostgreSQL, rows elsewhere); these names and times are
# what that formatting must get right, the same way on every backend.
_ODD_NAMES = [
    "plain",
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    "\\N",
    "nul\x00inside",
    "lone\ud800surrogate",
    "percent %s %d",
    "ünïcödé ✓",
    "x" * 250,
]


def _stored(writer: HistoryWriter) -> list[tuple[object, ...]]:
    """Every row's values but its id, in id order, as the table holds them."""
    runs = writer.tables.runs
    columns = [runs.c[name] for name in _COLUMNS]
    with writer.store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*columns).order_by(runs.c.id))]


def test_runs_without_error_land_with_every_field_as_given(db: TestDatabase) -> None:
    """Runs recorded as plain tuples, with names that COPY's text format must escape (tab,
    newline, carriage return, backslash, ``\\N``), that no column holds (NUL, a lone
    surrogate: U+FFFD instead), longer than the column (cut to 200), ``%`` signs, non-ASCII, and
    a host name with a tab: each row holds the values the general path stores for the same
    run, times rounded half to even."""
    tables = HistoryTables(db.table_prefix)
    store = JobStore(db.url, table_prefix=db.table_prefix)
    tables.metadata.create_all(store.engine)
    host = "host\twith a tab \\ and 100%"
    writer = HistoryWriter(queue=HistoryQueue(100), store=store, tables=tables, host=host)
    try:
        base = 1_764_633_600_000.0
        ran: list[Ran] = [
            (name, "manual" if i % 2 else "schedule", base + i + 0.5, base + i + 1.5, outcome)
            for i, name in enumerate(_ODD_NAMES)
            for outcome in ("executed", "canceled", "ignored")
        ]
        writer._write([*ran])
        assert 0 == writer.lost
        expected = [
            (column_text(job, 200), "recurring", column_text(host, 255), None, trigger,
             round(started), round(ended), outcome, None)
            for job, trigger, started, ended, outcome in ran
        ]  # fmt: skip
        assert expected == _stored(writer)
        assert base + 2 == expected[3][5]  # 1.5 rounds to 2 (half to even), as round() does
    finally:
        store.dispose()


def test_a_batch_of_every_kind_of_record_lands_whole(writer: HistoryWriter) -> None:
    """Plain tuples (runs without error), a failed recurring run with its traceback, and the
    start and end of distributed runs, in one batch: one row each, every field in place."""
    now_ms = time.time() * 1000
    now = time.monotonic()
    try:
        raise ValueError("the job broke")
    except ValueError as exc:
        error = exc
    failed = Done("recurring", "broken", None, "schedule", now_ms, now_ms + 5, "failed",
                  traceback.TracebackException.from_exception(error))  # fmt: skip
    batch: list[Record] = [
        ("fine", "schedule", now_ms, now_ms + 1, "executed"),
        Start("shared", "c9", "manual", now),
        failed,
        ("fine", "manual", now_ms + 10, now_ms + 11, "executed"),
        _end("shared", "c9", now, "executed"),
    ]
    writer._write(batch)
    runs = read_history(writer.store.engine, writer.tables.prefix, limit=100)
    got = sorted((r.job, r.kind, r.trigger, r.outcome, r.ended_at is not None) for r in runs)
    assert [
        ("broken", "recurring", "schedule", "failed", True),
        ("fine", "recurring", "manual", "executed", True),
        ("fine", "recurring", "schedule", "executed", True),
        ("shared", "distributed", "manual", "executed", True),
    ] == got
    broken = next(r for r in runs if r.job == "broken")
    assert broken.error is not None and "ValueError: the job broke" in broken.error
    assert 0 == writer.lost


@pytest.mark.parametrize("slow", ["start", "end"])
def test_a_run_ended_in_a_later_batch_keeps_its_duration_under_slow_clock_readings(
    writer: HistoryWriter, slow: str
) -> None:
    """A distributed run's start is written in one batch and its end in the next; in one of
    them every statement reaches the server 0.2 s late (a busy machine), so that batch's
    readings of the database clock are off by about 100 ms. The run keeps its 300 ms either way
    (it was recorded 100 ms longer or shorter): its end is placed from its start row."""
    start = time.monotonic()

    def late(*_: object) -> None:
        time.sleep(0.2)

    for record, held in (
        (Start("d", "c7", "schedule", start), slow == "start"),
        (_end_at("d", "c7", start, start + 0.3), slow == "end"),
    ):
        if held:
            event.listen(writer.store.engine, "before_cursor_execute", late)
        try:
            writer._write([record])
        finally:
            if held:
                event.remove(writer.store.engine, "before_cursor_execute", late)
    [run] = read_history(writer.store.engine, writer.tables.prefix, limit=10)
    assert ("executed", True) == (run.outcome, run.duration is not None)
    assert run.duration is not None
    assert abs(run.duration.total_seconds() - 0.3) <= 0.005, run.duration


def _end_at(job: str, claim: str, started: float, at: float) -> End:
    return End(job, claim, "schedule", started, at, "executed", None)


@pytest.mark.parametrize(
    ("kept_round_trip", "age", "new_round_trip", "used"),
    [
        (0.001, 1.0, 0.100, "kept"),  # a quick recent reading beats a slow new one
        (0.100, 1.0, 0.001, "new"),  # a quicker new reading replaces it
        (0.001, 61.0, 0.100, "new"),  # never kept beyond a minute (a clock step is followed)
        (0.040, 30.0, 0.050, "kept"),  # 20 ms + 3 ms of drift bound < 25 ms
        (0.040, 59.0, 0.050, "new"),  # 20 ms + 5.9 ms of drift bound > 25 ms
        (math.inf, 0.0, 5.000, "new"),  # the first reading is used, however slow
    ],
)
def test_the_writer_places_a_batch_with_the_reading_of_the_smaller_error_bound(
    monkeypatch: pytest.MonkeyPatch,
    kept_round_trip: float,
    age: float,
    new_round_trip: float,
    used: str,
) -> None:
    """A reading's error bound is half its round trip, growing by 100 ppm of its age while it
    is kept; the new reading is used when its bound is no larger, or when the kept one is
    older than a minute."""
    from recurjobs.sql import _history

    monkeypatch.setattr(_history, "_db_reading", lambda conn: (new_round_trip, 2000.0))
    clock = _history.DbClock(kept_round_trip, 1000.0, time.monotonic() - age)
    offset = clock.place(None)  # type: ignore[arg-type]
    assert {"kept": 1000.0, "new": 2000.0}[used] == offset == clock.offset
