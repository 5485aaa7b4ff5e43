"""The history writer under faults: a database that stalls or goes away never slows a run;
a full queue drops records with one counted warning; stop() is bounded by its deadline."""

from __future__ import annotations

import itertools
import logging
import statistics
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from recurjobs import CancellationToken, DistributedJobSettings, JobHost, RecurringJob
from recurjobs._historyrec import HistoryQueue, Ran, Record, Start
from recurjobs.sql import JobStore, _historywriter
from recurjobs.sql._history import HistoryTables, read_history, write_batch
from recurjobs.sql._historywriter import HistoryWriter
from tests.dbs import TestDatabase
from tests.faultproxy import FaultProxy
from tests.sql.helpers import server_proxy, wait_until


class Ticker(RecurringJob):
    """Every 10 ms; notes when each run starts (``time.monotonic()``)."""

    def __init__(self) -> None:
        super().__init__(timedelta(milliseconds=10), delay=timedelta(0))
        self.starts: list[float] = []

    def run(self, token: CancellationToken) -> None:
        self.starts.append(time.monotonic())


def _proxy_for(db: TestDatabase) -> tuple[FaultProxy, str]:
    proxy = server_proxy(db)
    return proxy, proxy.proxied_url(db.url)


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("fault", ["stall", "refuse"])
def test_runs_keep_their_cadence_while_the_history_database_is_down(
    db: TestDatabase,
    fault: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 10 ms job keeps running every ~10 ms while the database stalls or refuses for 5 s,
    and its runs of that time reach the table once the database is back; the history logs
    one WARNING for the outage and one INFO when writing works again."""
    caplog.set_level(logging.INFO, logger="recurjobs.history")
    if fault == "refuse" and db.backend == "mysql":
        pytest.skip("one backend is enough for the refusal; the stall runs on both")
    proxy, url = _proxy_for(db)
    job = Ticker()
    settings = DistributedJobSettings(
        poll_period=timedelta(seconds=1), delay=timedelta(0), table_prefix=db.table_prefix
    )
    host = JobHost([job], database=url, distributed=settings, history=True)
    try:
        host.start()
        assert wait_until(lambda: len(host.history(limit=10)) >= 5, 10)
        begin = time.monotonic()
        getattr(proxy, fault)(5.0)
        time.sleep(5.0)  # real time: the outage being measured
        end = time.monotonic()
        proxy.pass_through()
        during = [t for t in job.starts if begin <= t <= end]
        gaps = [b - a for a, b in itertools.pairwise(during)]
        with capsys.disabled():
            print(
                f"\n[history {fault} {db.backend}] runs in 5 s: {len(during)}, gap p50 "
                f"{statistics.median(gaps) * 1000:.1f} ms, p99 "
                f"{sorted(gaps)[int(len(gaps) * 0.99)] * 1000:.1f} ms, "
                f"max {max(gaps) * 1000:.1f} ms"
            )
        assert len(during) >= 200, len(during)  # 500 expected; a busy machine loses some
        assert max(gaps) < 1.0, max(gaps)
        wanted = len(job.starts)
        assert wait_until(lambda: len(host.history(limit=10_000)) >= wanted - 5, 30)
        said = [(r.levelname, r.getMessage()) for r in caplog.records]
        failing = [m for level, m in said if level == "WARNING" and "run history: writing" in m]
        again = [m for level, m in said if level == "INFO" and "works again" in m]
        # One WARNING for the whole outage, one INFO when it ends (a stall shorter than the
        # statement bound may cost no failed write at all).
        allowed = [(1, 1), (0, 0)] if fault == "stall" else [(1, 1)]
        assert (len(failing), len(again)) in allowed, said
    finally:
        assert host.stop(20)
        proxy.close()


def _stop_while_refusing(db: TestDatabase) -> tuple[Ticker, Any, float]:
    """A 10 ms job recorded through a proxy that starts refusing; the host stopped with
    ``stop(2)``: the job, the host's history writer and how long ``stop`` took."""
    proxy, url = _proxy_for(db)
    if db.backend != "postgres":
        pytest.skip("one backend is enough")
    job = Ticker()
    settings = DistributedJobSettings(
        poll_period=timedelta(seconds=1), delay=timedelta(0), table_prefix=db.table_prefix
    )
    host = JobHost([job], database=url, distributed=settings, history=True)
    try:
        host.start()
        assert wait_until(lambda: len(host.history(limit=10)) >= 5, 10)
        proxy.refuse(30)
        count = len(job.starts)
        assert wait_until(lambda: len(job.starts) >= count + 20, 10)
        begun = time.monotonic()
        assert not host.stop(2)
        took = time.monotonic() - begun
        writer = host._history.writer
        assert writer is not None and writer._thread is not None
        writer._thread.join(5)  # the writer gives up at the deadline, by itself
        assert not writer._thread.is_alive()
        return job, writer, took
    finally:
        proxy.close()


def _lost_counts(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The record counts of the history's "not written before the stop deadline" lines."""
    return [
        int(r.getMessage().split("run history: ", 1)[1].split(" ", 1)[0])
        for r in caplog.records
        if r.name == "recurjobs.history" and "before the stop deadline" in r.getMessage()
    ]


@pytest.mark.timeout(60)
def test_stop_gives_up_on_an_unreachable_database_at_its_deadline(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """stop(2) with the database refusing returns by its deadline (plus slack), saying False;
    every run's record is either written or counted lost, and the lost count is logged."""
    caplog.set_level(logging.WARNING, logger="recurjobs.history")
    job, writer, took = _stop_while_refusing(db)
    assert took < 5, took
    assert writer.lost > 0
    assert len(job.starts) == writer.written + writer.lost
    assert writer.lost in _lost_counts(caplog)


@pytest.mark.timeout(60)
def test_stop_logs_only_the_true_lost_count(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """Every count the history logs at a stop that gives up is the number of records lost."""
    caplog.set_level(logging.WARNING, logger="recurjobs.history")
    _, writer, _ = _stop_while_refusing(db)
    assert [writer.lost] == _lost_counts(caplog)


def test_full_queue_drops_with_one_counted_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records beyond the queue's bound are dropped and counted; the writer logs the count
    once per burst (a second burst after the first was written: a second line with its own
    count), and writes the records that fitted."""
    url, prefix = f"sqlite:///{tmp_path / 'h.db'}", "q_"
    queue = HistoryQueue(5)
    now = round(time.time() * 1000)
    records = [(f"j{i}", "schedule", now, now + 1, "executed")
               for i in range(17)]  # fmt: skip
    accepted = [queue.put(r) for r in records[:8]]
    assert [True] * 5 + [False] * 3 == accepted
    assert 3 == queue.dropped
    tables = HistoryTables(prefix)
    store = JobStore(url, table_prefix=prefix)
    tables.metadata.create_all(store.engine)
    # The writer pauses between batches while records keep coming (one second); here for a
    # minute, so that the second burst surely comes within the pause on a busy machine.
    # close() ends the pause.
    monkeypatch.setattr(_historywriter, "PACE", 60.0)
    writer = HistoryWriter(queue=queue, store=store, tables=tables, host="me")
    with caplog.at_level(logging.WARNING, logger="recurjobs.history"):
        writer.start()
        assert wait_until(lambda: writer.written == 5)
        # The writer now pauses before it takes the next batch: a burst of nine fills the
        # queue again and four of them are dropped.
        accepted = [queue.put(r) for r in records[8:]]
        assert [True] * 5 + [False] * 4 == accepted
        assert 5 == writer.written  # still pausing
        assert writer.close(time.monotonic() + 5)
        assert 10 == writer.written
    drops = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert 2 == len(drops), drops
    assert "3 record(s) were dropped" in drops[0]
    assert "4 record(s) were dropped" in drops[1]
    names = sorted(r.job for r in read_history(store.engine, prefix))
    store.dispose()
    assert sorted([f"j{i}" for i in range(5)] + [f"j{i}" for i in range(8, 13)]) == names


def test_a_bug_in_the_writer_thread_is_logged_and_runs_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer thread raising (a bug in recurjobs, here planted in its write) logs one
    ERROR with the traceback and ends; recording stops, and putting records never blocks:
    the queue fills and the rest are dropped and counted."""
    url, prefix = f"sqlite:///{tmp_path / 'h.db'}", "b_"
    queue = HistoryQueue(5)
    tables = HistoryTables(prefix)
    store = JobStore(url, table_prefix=prefix)
    tables.metadata.create_all(store.engine)
    writer = HistoryWriter(queue=queue, store=store, tables=tables, host="me")

    def bug(batch: Sequence[Record]) -> None:
        raise ZeroDivisionError("planted")

    writer._write = bug  # type: ignore[method-assign]
    now = round(time.time() * 1000)
    record = ("j", "schedule", now, now + 1, "executed")
    try:
        with caplog.at_level(logging.ERROR, logger="recurjobs.history"):
            writer.start()
            assert queue.put(record)
            assert writer._thread is not None
            writer._thread.join(10)
            assert not writer._thread.is_alive()
            began = time.monotonic()
            accepted = [queue.put(record) for _ in range(10)]
            took = time.monotonic() - began
    finally:
        store.dispose()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert 1 == len(errors), errors
    assert "history writer failed" in errors[0].getMessage()
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is ZeroDivisionError
    assert ([True] * 5 + [False] * 5, 5) == (accepted, queue.dropped)
    assert took < 1.0, took
    assert 0 == writer.written


def _recurring(job: str, started: int, ended: int) -> Ran:
    return (job, "schedule", started, ended, "executed")


def _jobs_in(engine: sa.Engine, prefix: str) -> list[str]:
    return sorted(r.job for r in read_history(engine, prefix, limit=1000))


@pytest.mark.timeout(60)
def test_a_batch_whose_commit_reply_was_lost_is_written_once(db: TestDatabase) -> None:
    """The server applies a batch's COMMIT, the connection dies before its answer arrives: the
    writer's next attempt finds the batch in the table and writes nothing twice."""
    proxy, url = _proxy_for(db)
    tables = HistoryTables(db.table_prefix)
    direct = JobStore(db.url, table_prefix=db.table_prefix)
    tables.metadata.create_all(direct.engine)
    store = JobStore(url, table_prefix=db.table_prefix)
    queue = HistoryQueue(100)
    now = round(time.time() * 1000)
    wanted = [f"lostack-{i}" for i in range(5)]
    for i, job in enumerate(wanted):
        queue.put(_recurring(job, now + i, now + i + 1))
    queue.put(Start("lostack-d", "claim-lostack", "schedule", time.monotonic()))
    proxy.lose_commit_reply(after=b"lostack")
    writer = HistoryWriter(queue=queue, store=store, tables=tables, host="me")
    try:
        writer.start()
        assert wait_until(lambda: writer.written == 6, 20)
        assert writer.close(time.monotonic() + 5)
        assert any("lost the reply" in what for _, what in proxy.log), proxy.log
        assert sorted([*wanted, "lostack-d"]) == _jobs_in(direct.engine, db.table_prefix)
    finally:
        proxy.close()
        store.dispose()
        direct.dispose()


def test_a_batch_written_again_is_written_only_if_it_did_not_land(db: TestDatabase) -> None:
    """``write_batch(again=True)``: nothing when the batch is in the table (found by its first
    and last rows; a distributed start by its job and claim id, whatever its time); the whole batch
    when it is not, also when an earlier batch holds a row with the same values."""
    tables = HistoryTables(db.table_prefix)
    store = JobStore(db.url, table_prefix=db.table_prefix)
    tables.metadata.create_all(store.engine)
    prefix, now = db.table_prefix, round(time.time() * 1000)

    def write(batch: Sequence[Record], again: bool) -> None:
        store._step(
            "test",
            lambda conn: write_batch(
                conn, tables.runs, batch, host="me", open_rows={}, again=again
            ),
        )

    try:
        first = [_recurring("a", now, now + 1), _recurring("b", now, now + 2)]
        write(first, again=False)
        write(first, again=True)
        assert ["a", "b"] == _jobs_in(store.engine, prefix)
        # A twin of an earlier row (the same job ending twice in one millisecond) and a new row.
        twins = [_recurring("a", now, now + 1), _recurring("c", now, now + 3)]
        write(twins, again=True)
        assert ["a", "a", "b", "c"] == _jobs_in(store.engine, prefix)
        started = Start("d", "claim-d", "schedule", time.monotonic())
        write([_recurring("e", now, now + 1), started], again=True)
        write([_recurring("e", now, now + 1), started], again=True)
        assert ["a", "a", "b", "c", "d", "e"] == _jobs_in(store.engine, prefix)
        # Three identical rows, two of which the table holds already: counted, so written.
        write([_recurring("a", now, now + 1)] * 3, again=True)
        assert ["a"] * 5 + ["b", "c", "d", "e"] == _jobs_in(store.engine, prefix)
    finally:
        store.dispose()
