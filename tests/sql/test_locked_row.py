"""A row locked by someone else (a host paused mid-transaction, an operator's open psql) delays
only that row: other jobs are still claimed, running jobs keep their claims (heartbeats have
their own thread and connection), and stopping stays within its deadline.

On SQLite a write transaction locks the whole file, not a row: every write waits for it, so
the bounded behaviour is tested there instead (nothing hangs, nothing is lost once it ends).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, update
from sqlalchemy.pool import NullPool

from recurjobs import DistributedJobLeaseLost
from recurjobs.sql import JobStore
from tests.dbs import TestDatabase
from tests.sql.helpers import HOUR, Job, make_due, row, set_row, wait_until
from tests.sql.runhelpers import SqlSide, polite, prepared, settings

HOLD = 10.0  # seconds the row (or file) stays locked
STOP = 8.0  # stop() timeout: longer than one lock timeout (5 s), shorter than the rest of HOLD
GRACE = 2.0  # how long past its deadline stop() still waits for its last quick steps
SLACK = 1.0  # room for thread scheduling on a busy machine


@contextmanager
def row_locked(db: TestDatabase, store: JobStore, name: str) -> Iterator[None]:
    """Hold an uncommitted UPDATE on row ``name`` from a second connection, then roll back."""
    engine = create_engine(db.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            table = store.jobs
            conn.execute(update(table).where(table.c.name == name).values(owner="operator"))
            try:
                yield
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


@contextmanager
def file_locked(db: TestDatabase) -> Iterator[None]:
    """Hold SQLite's write lock on the database file (BEGIN IMMEDIATE), then roll back."""
    path = db.url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def lease_losses(side: SqlSide) -> list[object]:
    """The DistributedJobLeaseLost notifications so far."""
    return [e for e in side.events if isinstance(e, DistributedJobLeaseLost)]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_locked_row_delays_only_that_row(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """While row B is locked for 10 s: running job A keeps its claim (short lease, so only its
    heartbeats keep it) and is not cancelled, due job C is claimed and run, B's claims time
    out with one WARNING in all ("not claimed this time"; the repeats at the next polls are
    DEBUG), and the stop order ends within its deadline."""
    caplog.set_level(logging.DEBUG, logger="recurjobs")
    if db.backend == "sqlite":
        pytest.skip("SQLite locks the file, not the row: see test_sqlite_file_lock_is_bounded")
    started = threading.Event()
    a = Job("a", timedelta(seconds=2), body=polite(started))  # lease 2 + 2 s: beats matter
    b, c = Job("b", HOUR), Job("c", HOUR)
    store = prepared(db, a, b, c, due=("a", "b"))
    side = SqlSide(
        db,
        a,
        b,
        c,
        distributed=settings(db, poll_period=timedelta(seconds=0.2), max_concurrent_jobs=3),
    )
    try:
        with row_locked(db, store, "b"):
            locked_at = time.monotonic()
            side.start()
            assert started.wait(10)
            claim_a = row(store, "a")["claim_id"]
            make_due(store, "c")
            assert wait_until(lambda: 1 == c.runs, HOLD - 1)
            # A stays ours while the lock lasts: renewed, not lost, not cancelled.
            time.sleep(max(0.0, locked_at + HOLD - 1 - time.monotonic()))
            held = row(store, "a")
            assert (True, claim_a, []) == (
                bool(held["running"]),
                held["claim_id"],
                lease_losses(side),
            )
            assert store.now_ms() - held["last_alive_ms"] < 2000
            assert "JobCanceled" not in side.kinds("a")
            began = time.monotonic()
            ended = side.stop(STOP)  # a claim of B may be waiting out its lock timeout
            took = time.monotonic() - began
        assert (True, True) == (ended, took < STOP + GRACE + SLACK), took
        assert (0, False) == (b.runs, bool(row(store, "a")["running"]))
        timeouts = [r for r in caplog.records if "not claimed this time" in r.getMessage()]
        assert all("the row of b " in r.getMessage() for r in timeouts), timeouts
        assert len(timeouts) >= 2  # B was tried again at later polls
        assert ["WARNING"] == [r.levelname for r in timeouts if r.levelno >= logging.WARNING]
    finally:
        side.stop(1)
        store.dispose()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_sqlite_file_lock_is_bounded(db: TestDatabase) -> None:
    """On SQLite, a writer holding the file for 10 s delays every claim and heartbeat: job C
    waits, job A (lease longer than the lock) keeps its claim; once the lock ends C runs; and
    a stop during such a lock returns within its deadline."""
    if db.backend != "sqlite":
        pytest.skip("the file lock is SQLite's; servers lock rows (test_a_locked_row_...)")
    started = threading.Event()
    a, c = Job("a", HOUR, body=polite(started)), Job("c", HOUR)
    store = prepared(db, a, c, due=("a",))
    side = SqlSide(db, a, c, distributed=settings(db, max_concurrent_jobs=2))
    try:
        side.start()
        assert started.wait(10)
        claim_a = row(store, "a")["claim_id"]
        make_due(store, "c")
        with file_locked(db):
            time.sleep(HOLD)  # the lock is the fault under test; nothing to wait for
            assert 0 == c.runs
        assert wait_until(lambda: 1 == c.runs, 15)
        held = row(store, "a")
        assert (True, claim_a, []) == (bool(held["running"]), held["claim_id"], lease_losses(side))
        with file_locked(db):
            began = time.monotonic()
            side.stop(5)
            took = time.monotonic() - began
        assert took < 5 + GRACE + SLACK, took  # the deadline, the grace, room for scheduling
    finally:
        side.stop(5)
        store.dispose()


@contextmanager
def rows_locked_for_update(db: TestDatabase, store: JobStore, *names: str) -> Iterator[None]:
    """Hold ``SELECT ... FOR UPDATE`` on rows ``names`` in an open transaction of a second
    connection (an operator's open ``psql``), then roll back."""
    engine = create_engine(db.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            table = store.jobs
            for name in names:  # one point lookup each: InnoDB locks only that record
                locked = conn.execute(
                    select(table.c.name).where(table.c.name == name).with_for_update()
                ).all()
                assert [(name,)] == [tuple(r) for r in locked]
            try:
                yield
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


BOUND = 5.0  # the store's statement bound in the test below: a lock wait would take this long


@pytest.mark.parametrize("limit", [None, 2])
def test_a_batch_claim_skips_a_row_locked_for_update_and_claims_it_later(
    db: TestDatabase, limit: int | None
) -> None:
    """With one due row held by ``SELECT ... FOR UPDATE`` in another open transaction,
    ``try_claim_many`` claims every other due row at once (no lock wait: SKIP LOCKED, not
    None), leaving the locked row untouched; once the transaction ends the next batch claims
    that row, and no row is ever claimed twice. With ``limit`` 2 the three free rows take two
    batches, the second one short."""
    if db.backend == "sqlite":
        pytest.skip("SQLite's writer locks the whole file: test_sqlite_file_lock_is_bounded")
    store = JobStore(db.url, table_prefix=db.table_prefix, statement_timeout=BOUND)
    try:
        store.create_schema()
        names = ["a", "b", "c", "d"]
        store.ensure([Job(n) for n in names])
        for name in names:
            make_due(store, name)
        leases = dict.fromkeys(names, timedelta(minutes=5))
        batches: list[list[str]] = []
        with rows_locked_for_update(db, store, "b"):
            while True:
                began = time.monotonic()
                claims = store.try_claim_many(leases, owner="me", limit=limit)
                took = time.monotonic() - began
                assert claims is not None  # None: the batch waited out the lock
                assert took < BOUND - SLACK, took
                batches.append(sorted(c.name for c in claims))
                if limit is None or len(claims) < limit:
                    break
            untouched = row(store, "b")
        assert (False, None) == (bool(untouched["running"]), untouched["claim_id"])
        if limit is None:
            assert [["a", "c", "d"]] == batches
        else:
            assert [2, 1] == [len(b) for b in batches]
            assert ["a", "c", "d"] == sorted(n for b in batches for n in b)
        later = store.try_claim_many(leases, owner="me", limit=limit)
        assert later is not None and ["b"] == [c.name for c in later]
        assert [] == store.try_claim_many(leases, owner="me", limit=limit)
        assert all(bool(row(store, n)["running"]) for n in names)
    finally:
        store.dispose()


def test_a_batch_claim_during_a_file_lock_returns_none_after_the_bound(db: TestDatabase) -> None:
    """Without SKIP LOCKED (SQLite's writer holds the whole file), a batch claim waits out the
    statement bound and returns None (the poll then claims row by row); nothing is claimed,
    and once the lock ends the batch claims every due row."""
    if db.backend != "sqlite":
        pytest.skip("servers skip a locked row: test_a_batch_claim_skips_a_row_locked_...")
    bound = 1.0
    store = JobStore(db.url, table_prefix=db.table_prefix, statement_timeout=bound)
    try:
        store.create_schema()
        names = ["a", "b"]
        store.ensure([Job(n) for n in names])
        for name in names:
            make_due(store, name)
        leases = dict.fromkeys(names, timedelta(minutes=5))
        with file_locked(db):
            began = time.monotonic()
            claims = store.try_claim_many(leases, owner="me")
            took = time.monotonic() - began
        assert None is claims
        assert took < bound + GRACE + SLACK, took
        assert not any(bool(row(store, n)["running"]) for n in names)
        later = store.try_claim_many(leases, owner="me")
        assert later is not None and names == sorted(c.name for c in later)
    finally:
        store.dispose()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_running_jobs_locked_row_costs_its_claim_only_past_the_lease(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """Job A runs with a 6 s lease (heartbeat every 0.2 s, statement bound 1 s). Its row
    locked for 2 s: the heartbeats give up "this time" (WARNING), the claim is kept and the
    run goes on. Its row locked for longer than the lease: the run is cancelled
    (DistributedJobLeaseLost) about one lease after the last heartbeat that landed, not
    before."""
    if db.backend == "sqlite":
        pytest.skip("SQLite locks the file, not the row: see test_sqlite_file_lock_is_bounded")
    caplog.set_level(logging.WARNING, logger="recurjobs")
    started = threading.Event()
    a = Job("a", timedelta(seconds=4), body=polite(started))  # lease: 4 + 2 = 6 s
    store = prepared(db, a, due=("a",))
    side = SqlSide(db, a, distributed=settings(db, poll_period=timedelta(seconds=0.2)))
    try:
        side.start()
        assert started.wait(10)
        claim = row(store, "a")["claim_id"]
        with row_locked(db, store, "a"):
            time.sleep(2.0)  # the lock is the fault under test
        assert wait_until(lambda: store.now_ms() - row(store, "a")["last_alive_ms"] < 1000, 5)
        kept = row(store, "a")
        assert (True, claim, []) == (bool(kept["running"]), kept["claim_id"], lease_losses(side))
        assert ["DistributedJobClaimed", "JobExecuting"] == side.kinds("a")  # still running
        failed = [r for r in caplog.records if "renewing the claim of a" in r.getMessage()]
        assert failed, [r.getMessage() for r in caplog.records]
        with row_locked(db, store, "a"):
            locked_at = time.monotonic()
            assert wait_until(lambda: bool(lease_losses(side)), 15)
            lost_after = time.monotonic() - locked_at
            # The token is cancelled: the polite body returns and the run ends.
            assert wait_until(lambda: "JobExecuted" in side.kinds("a"), 5), side.kinds("a")
        # The last beat before the lock landed at most one interval before it; the run is
        # given up one interval before the 6 s lease would lapse.
        assert 6 - 0.2 - 0.2 - SLACK < lost_after < 6 + GRACE + SLACK, lost_after
    finally:
        side.stop(5)
        store.dispose()


@pytest.mark.timeout(60)
def test_a_poll_claims_past_a_window_of_locked_rows(db: TestDatabase) -> None:
    """A host with two free slots polls ten due rows whose eight longest-waiting ones (its
    first batch's whole window) are held by another transaction: the first batch wins none,
    the next one chooses among the rows after that window and wins the other two at once;
    the locked rows are left alone (no one-by-one claim waits on them)."""
    if db.backend == "sqlite":
        pytest.skip("SQLite's writer locks the whole file: no row is skipped")
    started: dict[str, threading.Event] = {}
    jobs = []
    for i in range(10):
        started[f"r{i}"] = threading.Event()
        jobs.append(Job(f"r{i}", HOUR, body=polite(started[f"r{i}"])))
    store = prepared(db, *jobs)
    now = store.now_ms()
    for i, job in enumerate(jobs):  # r0 waited longest: the poll's order is r0 .. r9
        set_row(store, job.name, last_run_ms=now - 86_400_000 - (10 - i) * 1000)
    locked = [f"r{i}" for i in range(8)]
    side = SqlSide(db, *jobs, distributed=settings(db, max_concurrent_jobs=2))
    try:
        with rows_locked_for_update(db, store, *locked):
            side.start()
            assert started["r8"].wait(10) and started["r9"].wait(10)
            ran = sorted(n for n, e in started.items() if e.is_set())
        assert ["r8", "r9"] == ran
        assert not any(bool(row(store, n)["running"]) for n in locked)
    finally:
        side.stop(5)
        store.dispose()
