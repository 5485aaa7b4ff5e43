"""Run history on SQLite, PostgreSQL and MariaDB: what lands in ``<prefix>runs`` and when."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from recurjobs import (
    INFINITE,
    CancellationToken,
    DistributedJobClaimed,
    DistributedJobSettings,
    HistorySettings,
    JobHost,
    RecurringJob,
    RunRecord,
    TriggerableJob,
)
from recurjobs._history import PRUNE_JOB_NAME
from recurjobs.sql import JobStore, make_engine
from recurjobs.sql._history import (
    HistoryTables,
    failure_counts,
    prune_history,
    read_history,
)
from tests.dbs import TestDatabase
from tests.sql.helpers import Job, make_due, race, row, set_row, wait_until

ROOT = Path(__file__).resolve().parents[2]


def fast(db: TestDatabase, **overrides: Any) -> DistributedJobSettings:
    """Poll every 0.1 s from the start, on the test's prefix."""
    values: dict[str, Any] = {
        "poll_period": timedelta(seconds=0.1),
        "delay": timedelta(0),
        "table_prefix": db.table_prefix,
        "max_concurrent_jobs": 2,
    }
    values.update(overrides)
    return DistributedJobSettings(**values)


class Counting(RecurringJob, TriggerableJob):
    """Runs only when triggered; raises what ``fail`` says on the runs it names."""

    def __init__(self, fail: BaseException | None = None) -> None:
        super().__init__(INFINITE, delay=INFINITE)
        self.fail = fail
        self.runs = 0

    def run(self, token: CancellationToken) -> None:
        self.runs += 1
        if self.fail is not None:
            raise self.fail


def runs(
    host: JobHost, job: object = None, count: int = 1, timeout: float = 10.0
) -> list[RunRecord]:
    """Wait until ``host.history(job)`` holds ``count`` finished runs; return them."""
    found: list[RunRecord] = []

    def enough() -> bool:
        found[:] = [r for r in host.history(job, limit=1000) if r.ended_at is not None]
        return len(found) >= count

    assert wait_until(enough, timeout), f"history of {job!r}: {found}"
    return found


def test_recurring_outcomes_land_with_their_fields(db: TestDatabase) -> None:
    """Executed and failed recurring runs are rows with job, kind, host, trigger, times, error."""
    ok, bad = Counting(), Counting(fail=KeyError("missing key é"))
    ok.name = "ok-job"  # type: ignore[attr-defined]
    bad.name = "bad-job"  # type: ignore[attr-defined]
    with JobHost([ok, bad], database=db.url, distributed=fast(db), history=True) as host:
        before = datetime.now(UTC)
        assert host.trigger(ok)
        assert host.trigger(bad)
        executed = runs(host, "ok-job")[0]
        failed = runs(host, bad)[0]
    assert ("ok-job", "recurring", "executed", "manual", None, None) == (
        executed.job, executed.kind, executed.outcome, executed.trigger, executed.error,
        executed.claim_id,
    )  # fmt: skip
    assert executed.ended_at is not None
    assert before - timedelta(seconds=1) <= executed.started_at <= executed.ended_at
    assert ("bad-job", "failed") == (failed.job, failed.outcome)
    assert failed.error is not None
    assert failed.error.startswith("KeyError: 'missing key é'")
    assert "Traceback (most recent call last)" in failed.error
    assert "raise self.fail" in failed.error
    assert executed.host == failed.host
    assert str(os.getpid()) in executed.host


def test_control_characters_in_names_and_errors_land_and_nul_becomes_ufffd(
    db: TestDatabase,
) -> None:
    """Tabs, newlines, carriage returns and backslashes in a job name or error text survive the
    write; a NUL, which PostgreSQL text cannot hold, becomes U+FFFD on every database."""
    odd = 'odd\tname \\ "q"\r\n2'
    bad = Counting(fail=ValueError("a\tb\\c\nd\re\x00f"))
    bad.name = odd + "\x00"  # type: ignore[attr-defined]
    with JobHost([bad], database=db.url, distributed=fast(db), history=True) as host:
        assert host.trigger(bad)
        failed = runs(host, bad)[0]  # read under the name it was written with
    nul = "\ufffd"
    assert (odd + "\ufffd", "failed") == (failed.job, failed.outcome)
    assert failed.error is not None
    assert failed.error.startswith(f"ValueError: a\tb\\c\nd\re{nul}f\n")


def test_lone_surrogates_in_names_and_errors_land_as_ufffd_with_the_other_runs(
    db: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lone surrogate (an undecodable file name from os.listdir in a message) is no UTF-8:
    it is stored as U+FFFD, and the runs written in the same batch land too."""
    # The run's log lines carry the surrogate, which pytest-xdist cannot send between
    # processes: keep them out of the captured logs.
    quiet = logging.getLogger("recurjobs")
    monkeypatch.setattr(quiet, "propagate", False)
    monkeypatch.setattr(quiet, "handlers", [logging.NullHandler()])
    bad = Counting(fail=RuntimeError("bad file \udcff.txt"))
    bad.name = "weird \udcff"  # type: ignore[attr-defined]
    ok = Counting()
    ok.name = "plain"  # type: ignore[attr-defined]
    with JobHost([bad, ok], database=db.url, distributed=fast(db), history=True) as host:
        assert host.trigger(bad)
        assert host.trigger(ok)
        failed = runs(host, bad)[0]
        executed = runs(host, "plain")[0]
    assert ("weird \ufffd", "failed", "executed") == (failed.job, failed.outcome, executed.outcome)
    assert failed.error is not None
    assert failed.error.startswith("RuntimeError: bad file \ufffd.txt\n")


def test_an_error_full_of_nul_stays_within_8_kib_as_stored(db: TestDatabase) -> None:
    """Each NUL is stored as U+FFFD (3 bytes of UTF-8): the cap is measured on what is stored."""
    bad = Counting(fail=RuntimeError("\x00" * 3900))
    with JobHost([bad], database=db.url, distributed=fast(db), history=True) as host:
        assert host.trigger(bad)
        failed = runs(host, bad)[0]
    assert failed.error is not None
    assert failed.error.startswith("RuntimeError: \ufffd\ufffd")
    assert len(failed.error.encode("utf-8")) <= 8192


def test_a_job_with_a_name_over_200_characters_is_found_by_class_instance_and_name(
    db: TestDatabase,
) -> None:
    """The history column holds 200 characters; a longer recurring job name is written cut
    and found again by the job's class, instance or full name."""
    job = Counting()
    job.name = "L" * 250  # type: ignore[attr-defined]
    with JobHost([job], database=db.url, distributed=fast(db), history=True) as host:
        assert host.trigger(job)
        found = runs(host, job)
        assert found == runs(host, Counting) == runs(host, "L" * 250)
    assert ("L" * 200, "executed") == (found[0].job, found[0].outcome)


def test_distributed_run_rows_use_the_database_clock(db: TestDatabase) -> None:
    """A distributed run's row has its claim id, schedule or manual trigger and db times."""
    job = Job("dist", body=lambda token: time.sleep(0.05))
    claims: list[str] = []
    store = JobStore(db.url, table_prefix=db.table_prefix)
    with JobHost([job], database=db.url, distributed=fast(db), history=True) as host:
        host.subscribe(DistributedJobClaimed, lambda n: claims.append(n.claim_id))
        assert wait_until(lambda: host.trigger_distributed("dist"))
        record = runs(host, "dist")[0]
        now_ms = store.now_ms()
    store.dispose()
    assert ("distributed", "executed", "manual", None) == (
        record.kind, record.outcome, record.trigger, record.error
    )  # fmt: skip
    assert record.claim_id in claims
    assert record.ended_at is not None and record.duration is not None
    assert timedelta(milliseconds=30) <= record.duration <= timedelta(seconds=5)
    db_now = datetime.fromtimestamp(now_ms / 1000, UTC)
    assert db_now - timedelta(seconds=30) <= record.started_at <= db_now


def test_scheduled_distributed_run_says_schedule(db: TestDatabase) -> None:
    """A distributed run claimed because it was due (not triggered) is recorded as schedule."""
    job = Job("due-job")
    store = JobStore(db.url, table_prefix=db.table_prefix)
    store.create_schema()
    store.ensure([job])
    make_due(store, "due-job")
    with JobHost([job], database=db.url, distributed=fast(db), history=True) as host:
        record = runs(host, "due-job")[0]
    store.dispose()
    assert ("executed", "schedule") == (record.outcome, record.trigger)


def test_canceled_run_is_flushed_by_stop(db: TestDatabase) -> None:
    """Runs cancelled by stop() (a recurring one, and a distributed one whose row is handed
    back in the stop) are recorded as canceled, written before stop() returns; the queue then
    takes no more records."""
    started = threading.Event()
    claimed = threading.Event()

    class Polite(RecurringJob):
        def run(self, token: CancellationToken) -> None:
            started.set()
            token.wait(30)
            token.raise_if_cancelled()

    def body(token: CancellationToken) -> None:
        claimed.set()
        token.wait(30)
        token.raise_if_cancelled()

    shared = Job("shared", body=body)
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        store.create_schema()
        store.ensure([shared])
        make_due(store, "shared")
        host = JobHost(
            [Polite(INFINITE, delay=timedelta(0)), shared],
            database=db.url,
            distributed=fast(db),
            history=True,
        ).start()
        assert started.wait(10) and claimed.wait(10)
        writer = host._history.writer
        assert host.stop(20)
        ended = {r.job: r for r in host.history() if r.ended_at is not None}
        late = ("late", "schedule", 0, 1, "executed")
        assert False is writer.queue.put(late)
        assert not bool(row(store, "shared")["running"])
    finally:
        store.dispose()
    assert {"Polite", "shared"} <= set(ended)
    assert [("canceled", "schedule", None)] * 2 == [
        (ended[j].outcome, ended[j].trigger, ended[j].error) for j in ("Polite", "shared")
    ]


def test_lease_lost_run_is_recorded_as_lease_lost(db: TestDatabase) -> None:
    """A run whose claim is taken away is cancelled and recorded as lease_lost."""
    running = threading.Event()

    def body(token: CancellationToken) -> None:
        running.set()
        token.wait(30)
        token.raise_if_cancelled()

    job = Job("lost", body=body)
    settings = fast(db, max_execution_time=timedelta(seconds=1))
    with JobHost([job], database=db.url, distributed=settings, history=True) as host:
        assert wait_until(lambda: host.trigger_distributed("lost"))
        assert running.wait(10)
        store = JobStore(db.url, table_prefix=db.table_prefix)
        set_row(store, "lost", claim_id="taken-by-someone-else")
        store.dispose()
        record = runs(host, "lost")[0]
    assert ("lease_lost", "manual") == (record.outcome, record.trigger)


def test_ignored_runs_are_recorded_only_when_asked(db: TestDatabase) -> None:
    """With record_ignored, a gated run is a row with outcome ignored; without, nothing."""
    quiet, loud = Counting(), Counting()
    quiet.name, loud.name = "quiet", "loud"  # type: ignore[attr-defined]
    for job, record_ignored in ((quiet, False), (loud, True)):
        job.delay = timedelta(0)
        job.ignored_delay = INFINITE
        host = JobHost(
            [job],
            database=db.url,
            distributed=fast(db),
            history=HistorySettings(record_ignored=record_ignored),
            runtime_ready=lambda: False,
        ).start()
        if record_ignored:
            [record] = runs(host, job)
            assert ("ignored", "schedule") == (record.outcome, record.trigger)
        assert host.stop(10)
    assert [] == [r for r in host.history("quiet")]
    assert 0 == quiet.runs + loud.runs


def test_killed_hosts_run_stays_open_and_is_marked_on_takeover(db: TestDatabase) -> None:
    """kill -9 during a run leaves its row without an end; the next claim marks it lease_lost."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/sql/history_worker.py"), db.url, db.table_prefix, "k"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert "running" == worker.stdout.readline().strip()
        reader = JobHost(database=db.url, distributed=fast(db))
        assert wait_until(lambda: [r.outcome for r in reader.history("k")] == ["running"])
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    [dead] = reader.history("k")
    job = Job("k", period=timedelta(seconds=1))
    with JobHost([job], database=db.url, distributed=fast(db), history=True) as host:
        assert wait_until(lambda: job.runs >= 1, 20)
        assert wait_until(lambda: host.history("k", limit=5)[-1].outcome == "lease_lost", 10)
        newest, *_, oldest = host.history("k", limit=5)
    assert (dead.claim_id, "lease_lost", None) == (oldest.claim_id, oldest.outcome, oldest.ended_at)
    assert dead.host != newest.host
    assert newest.started_at > oldest.started_at


def test_history_reads_before_start_and_after_stop(db: TestDatabase) -> None:
    """history() works on an unstarted host (empty table or none) and after stop()."""
    job = Counting()
    host = JobHost([job], database=db.url, distributed=fast(db), history=True)
    assert [] == host.history()
    host.start()
    assert host.trigger(job)
    runs(host, job)
    assert host.stop(10)
    other = JobHost(database=db.url, distributed=fast(db))
    assert ["Counting"] == [r.job for r in other.history(Counting)]
    assert ["Counting"] == [r.job for r in host.history(job)]
    assert [] == host.history("no-such-job")


def test_prune_job_is_not_recorded_and_is_labelled(db: TestDatabase) -> None:
    """The pruning job is a distributed job named recurjobs.history.prune with no rows."""
    pruned = threading.Event()
    with JobHost(database=db.url, distributed=fast(db), history=True) as host:
        host.subscribe(
            DistributedJobClaimed,
            lambda n: pruned.set() if n.job.name == PRUNE_JOB_NAME else None,
        )
        assert pruned.wait(10) or wait_until(
            lambda: any(s.name == PRUNE_JOB_NAME and s.runs for s in host.status()), 10
        )
        assert [PRUNE_JOB_NAME] == [getattr(j, "name", None) for j in host.jobs]
    assert [] == host.history()


def _rows(db: TestDatabase, tables: HistoryTables, rows: list[dict[str, Any]]) -> None:
    engine = make_engine(db.url)
    try:
        with engine.begin() as conn:
            tables.metadata.create_all(conn)
            conn.execute(sa.insert(tables.runs), rows)
    finally:
        engine.dispose()


def _row(job: str, started_ms: int, outcome: str = "executed") -> dict[str, Any]:
    return {
        "job": job, "kind": "recurring", "host": "h", "claim_id": None, "trigger": "schedule",
        "started_ms": started_ms, "ended_ms": started_ms + 5, "outcome": outcome, "error": None,
    }  # fmt: skip


def test_prune_deletes_by_age_and_by_count(db: TestDatabase) -> None:
    """Rows older than keep go, and of each job only the newest max_rows_per_job stay."""
    tables = HistoryTables(db.table_prefix)
    store = JobStore(db.url, table_prefix=db.table_prefix)
    now = store.now_ms()
    day = 86_400_000
    rows = [_row("a", now - 8 * day - i) for i in range(3)]  # too old
    rows += [_row("a", now - i * 1000) for i in range(5)]  # recent: keep the 3 newest
    rows += [_row("b", now - 2 * day)]  # recent enough, alone
    _rows(db, tables, rows)
    deleted = prune_history(store._step, tables.runs, keep_ms=7 * day, max_rows_per_job=3)
    engine = store.engine
    left = read_history(engine, db.table_prefix, limit=100)
    store.dispose()
    assert 5 == deleted
    expected = [("a", now), ("a", now - 1000), ("a", now - 2000), ("b", now - 2 * day)]
    assert expected == [(r.job, round(r.started_at.timestamp() * 1000)) for r in left]


@pytest.mark.timeout(90)
def test_two_hosts_prune_once_per_cluster(db: TestDatabase) -> None:
    """With two hosts, each due pruning runs on exactly one of them, and prunes the table."""
    claims: list[str] = []
    history = HistorySettings(max_rows_per_job=2)
    hosts = [JobHost(database=db.url, distributed=fast(db), history=history) for _ in range(2)]
    for host in hosts:
        host.subscribe(DistributedJobClaimed, lambda n: claims.append(n.claim_id))
        host.start()
    try:
        store = JobStore(db.url, table_prefix=db.table_prefix)
        # The prune asked for at start has run (on one host or, if they started apart, two).
        assert wait_until(lambda: bool(claims), 20)
        assert wait_until(lambda: not store.rows()[0].running if store.rows() else False, 20)
        time.sleep(0.5)  # both hosts poll a few times: nothing more is due
        first = len(claims)
        now = store.now_ms()
        _rows(db, HistoryTables(db.table_prefix), [_row("x", now - i) for i in range(5)])
        make_due(store, PRUNE_JOB_NAME)
        assert wait_until(lambda: len(claims) > first, 20)
        assert wait_until(lambda: len(read_history(store.engine, db.table_prefix)) == 2, 20)
        time.sleep(1.0)  # ten more polls by each host: the pruning is not run again
        assert first + 1 == len(claims)
        store.dispose()
    finally:
        for host in hosts:
            host.stop(10)


def test_failure_counts_per_job(db: TestDatabase) -> None:
    """failure_counts() counts failed runs per job since a time; none when there is no table."""
    assert {} == failure_counts(make_engine(db.url), db.table_prefix, since=datetime.now(UTC))
    now = round(time.time() * 1000)
    rows = [_row("a", now - 1000, "failed"), _row("a", now - 2000, "failed")]
    rows += [_row("b", now - 1000, "executed"), _row("c", now - 90_000_000, "failed")]
    _rows(db, HistoryTables(db.table_prefix), rows)
    since = datetime.now(UTC) - timedelta(hours=24)
    assert {"a": 2} == failure_counts(make_engine(db.url), db.table_prefix, since=since)


class Unprintable(Exception):
    """An exception whose message cannot be formatted: ``str()`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


class Untraceable(Exception):
    """An exception whose traceback cannot even be captured: its ``__cause__`` raises."""

    @property
    def __cause__(self) -> BaseException | None:  # type: ignore[override]
        raise RuntimeError("no cause for you")


@pytest.mark.parametrize(
    ("fail", "recorded"),
    [
        (Unprintable(), f"{__name__}.Unprintable: <exception str() failed>\n\nTraceback"),
        (Untraceable(), "Untraceable"),
    ],
)
def test_an_exception_that_cannot_be_formatted_is_still_recorded(
    db: TestDatabase, monkeypatch: pytest.MonkeyPatch, fail: Exception, recorded: str
) -> None:
    """A run raising an exception whose formatting itself raises is recorded as failed: a
    message that cannot be read shows as ``<exception str() failed>`` before the traceback; an
    exception whose traceback cannot be captured leaves its type name alone as the error. The
    host goes on. (Logging such an exception fails too: the logging module reports that on
    stderr, as in production; pytest's capture would raise instead, so it is told not to.)"""
    monkeypatch.setattr(logging, "raiseExceptions", False)
    bad = Counting(fail=fail)
    bad.name = "bad-job"  # type: ignore[attr-defined]
    with JobHost([bad], database=db.url, distributed=fast(db), history=True) as host:
        assert host.trigger(bad)
        failed = runs(host, bad)[0]
        assert host.running
    assert ("bad-job", "failed") == (failed.job, failed.outcome)
    assert failed.error is not None
    assert failed.error.startswith(recorded), failed.error
    if recorded == "Untraceable":
        assert recorded == failed.error


def test_hosts_starting_together_make_the_history_tables_once(db: TestDatabase) -> None:
    """Three hosts with history started at the same instant on an empty database all start;
    the runs and meta tables exist, the schema version row is there once, and a run of each
    host is recorded."""
    jobs = [Counting() for _ in range(3)]
    for i, job in enumerate(jobs):
        job.name = f"job-{i}"  # type: ignore[attr-defined]
    hosts = [JobHost([job], database=db.url, distributed=fast(db), history=True) for job in jobs]
    try:
        results = race(*(host.start for host in hosts))
        started = [host.running for host in hosts]
        for host, job in zip(hosts, jobs, strict=True):
            assert host.trigger(job)
        recorded = [runs(host, job)[0].outcome for host, job in zip(hosts, jobs, strict=True)]
    finally:
        for host in hosts:
            host.stop(10)
    assert [True] * 3 == started, results
    assert ["executed"] * 3 == recorded
    tables = HistoryTables(db.table_prefix)
    engine = make_engine(db.url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.select(tables.meta.c.key)).scalars().all()
    finally:
        engine.dispose()
    assert ["runs_schema"] == versions


@pytest.mark.parametrize(
    ("fail", "head"),
    [(SystemExit(3), "SystemExit: 3"), (KeyboardInterrupt(), "KeyboardInterrupt")],
)
def test_a_run_raising_a_base_exception_is_recorded_as_failed(
    db: TestDatabase, fail: BaseException, head: str
) -> None:
    """A run raising SystemExit or KeyboardInterrupt (a job may raise anything) is recorded
    as failed with the exception's type (and message) and traceback; the job runs again."""
    bad = Counting(fail=fail)
    bad.name = "base-job"  # type: ignore[attr-defined]
    with JobHost([bad], database=db.url, distributed=fast(db), history=True) as host:
        assert host.trigger(bad)
        assert wait_until(lambda: 1 == bad.runs)
        assert wait_until(lambda: host.trigger(bad))  # once the first run has ended
        failed = runs(host, bad, count=2)
    assert [("base-job", "failed")] * 2 == [(r.job, r.outcome) for r in failed]
    error = failed[0].error
    assert error is not None and error.startswith(head), error
    assert "Traceback (most recent call last)" in error
