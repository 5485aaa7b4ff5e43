"""The end of a distributed run: the finish is never dropped, one INFO line is logged, nothing a
job raises ends the run thread before it hands the row back, and a trigger during a run is kept.

Faults are injected with an engine event (``runhelpers.Fault``) on the host's own engine; the
shared database servers are never stopped. Each test runs on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from recurjobs import CancellationToken, JobExecuting, JobFailed, JobHost, ServerRole
from recurjobs.sql import JobStore
from recurjobs.sql._rows import Claim
from tests.dbs import TestDatabase
from tests.helpers import RaisingFilter
from tests.sql.helpers import HOUR, Job, make_due, row, wait_until
from tests.sql.runhelpers import (
    Fault,
    SqlSide,
    faulty_engine,
    polite,
    prepared,
    settings,
    sql_side,
    stubborn,
)


def test_a_failed_finish_is_retried_until_it_lands(db: TestDatabase) -> None:
    """While the finish UPDATE fails, the claim is kept and renewed; once the fault clears the
    row is freed with last_run stamped, and a trigger then runs the job again."""
    job = Job("a", HOUR)
    store = prepared(db, job, due=("a",))
    fault = Fault()
    engine = faulty_engine(db, fault)
    try:
        fault.active = True
        with sql_side(db, job, database=engine) as side:
            poller = side.sql.poller
            assert poller is not None
            assert wait_until(lambda: bool(poller.leases.pending()), 20)
            held = row(store, "a")
            assert (True, side.sql.owner) == (bool(held["running"]), held["owner"])
            assert wait_until(lambda: row(store, "a")["last_alive_ms"] > held["last_alive_ms"])
            assert fault.hits >= 6  # the run thread's retries gave up, the heartbeat goes on
            cleared_at = store.now_ms()
            fault.active = False
            assert wait_until(lambda: not row(store, "a")["running"])
            freed = row(store, "a")
            assert (None, None, True) == (
                freed["claim_id"],
                freed["owner"],
                freed["last_run_ms"] >= cleared_at,
            )
            assert wait_until(lambda: [] == poller.leases.all())  # forgotten right after
            assert side.sql.trigger("a")
            assert wait_until(lambda: 2 == job.runs)
            assert wait_until(lambda: not row(store, "a")["running"])
    finally:
        engine.dispose()
        store.dispose()


def test_a_pending_finish_is_flushed_by_hand_back(db: TestDatabase) -> None:
    """A finish still failing at stop is retried by hand_back until the fault clears, within
    its deadline; the row is free afterwards."""
    job = Job("a", HOUR)
    store = prepared(db, job, due=("a",))
    fault = Fault()
    engine = faulty_engine(db, fault)
    try:
        fault.active = True
        with sql_side(db, job, database=engine) as side:
            poller = side.sql.poller
            assert poller is not None
            assert wait_until(lambda: bool(poller.leases.pending()), 20)
            clear = threading.Timer(0.5, lambda: setattr(fault, "active", False))
            clear.start()
            began = time.monotonic()
            side.sql.stop_claiming()
            assert side.sql.wait_runs(time.monotonic() + 5)
            assert side.sql.hand_back(began + 5)
            took = time.monotonic() - began
            clear.join()
            assert (False, True) == (bool(row(store, "a")["running"]), 0.5 <= took < 5)
    finally:
        engine.dispose()
        store.dispose()


def test_one_info_line_per_finished_run(db: TestDatabase, caplog: pytest.LogCaptureFixture) -> None:
    """Each finished run logs one INFO line on the recurjobs loggers: job, outcome, duration,
    claim id and owner."""
    caplog.set_level(logging.INFO, logger="recurjobs")

    def boom(token: CancellationToken) -> None:
        raise RuntimeError("boom")

    ok, bad = Job("ok", HOUR), Job("bad", HOUR, body=boom)
    store = prepared(db, ok, bad, due=("ok", "bad"))
    try:
        with sql_side(db, ok, bad, distributed=settings(db, max_concurrent_jobs=2)) as side:
            assert wait_until(lambda: "JobExecuted" in side.kinds("ok"))
            assert wait_until(lambda: "JobFailed" in side.kinds("bad"))
            assert wait_until(lambda: not any(r.running for r in store.rows()))
            claims = {
                e.job.name: e.claim_id  # type: ignore[attr-defined]
                for e in side.events
                if type(e).__name__ == "DistributedJobClaimed"
            }
            lines = [
                r.getMessage()
                for r in caplog.records
                if r.levelno == logging.INFO
                and r.name.startswith("recurjobs")
                and r.getMessage().startswith("distributed job ")
                and " in " in r.getMessage()
            ]
            owner = side.sql.owner
        assert sorted(
            [
                f"distributed job bad failed (claim {claims['bad']}, owner {owner})",
                f"distributed job ok executed (claim {claims['ok']}, owner {owner})",
            ]
        ) == sorted(_without_duration(line) for line in lines)
    finally:
        store.dispose()


def _without_duration(line: str) -> str:
    """``distributed job x executed in 0.012 s (...)`` -> ``distributed job x executed (...)``."""
    head, _, tail = line.partition(" in ")
    return f"{head} {tail.split(' s ', 1)[1]}"


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt()])
def test_system_exit_from_a_distributed_job_is_a_failed_run(
    db: TestDatabase, raised: BaseException
) -> None:
    """SystemExit or KeyboardInterrupt from execute() is published as JobFailed, the row is
    handed back, and the poller goes on claiming."""

    def leave(token: CancellationToken) -> None:
        raise raised

    job = Job("a", HOUR, body=leave)
    store = prepared(db, job, due=("a",))
    try:
        with sql_side(db, job) as side:
            assert wait_until(lambda: "JobFailed" in side.kinds("a"))
            failed = [e for e in side.events if isinstance(e, JobFailed)]
            assert [raised] == [e.exception for e in failed]
            assert wait_until(lambda: not row(store, "a")["running"])
            make_due(store, "a")
            assert wait_until(lambda: 2 == side.kinds("a").count("JobFailed"))
            assert ["DistributedJobClaimed", "JobExecuting", "JobFailed"] * 2 == side.kinds("a")
    finally:
        store.dispose()


def test_a_handler_raising_system_exit_does_not_stop_the_run(db: TestDatabase) -> None:
    """KeyboardInterrupt from a JobExecuting handler is logged; the job still runs, its outcome
    is published and the row is handed back."""
    job = Job("a", HOUR)
    store = prepared(db, job, due=("a",))
    try:
        with sql_side(db, job) as side:

            def interrupt(n: object) -> None:
                raise KeyboardInterrupt

            side.host.subscribe(JobExecuting, interrupt)
            make_due(store, "a")
            assert wait_until(lambda: "JobExecuted" in side.kinds("a"))
            assert wait_until(lambda: not row(store, "a")["running"])
            assert 1 == job.runs
    finally:
        store.dispose()


def test_a_runtime_ready_raising_system_exit_never_ends_the_poller(db: TestDatabase) -> None:
    """SystemExit from the runtime_ready callable is logged as "not ready"; once it answers,
    the poller claims as usual."""
    state = {"raise": True}
    raised: list[bool] = []

    def ready() -> bool:
        if state["raise"]:
            raised.append(True)
            raise SystemExit(1)
        return True

    job = Job("a", HOUR)
    store = prepared(db, job, due=("a",))
    try:
        with sql_side(db, job, runtime_ready=ready) as side:
            poller = side.sql.poller
            assert poller is not None
            assert wait_until(lambda: len(raised) >= 3, 10)  # polls meet the raising gate
            assert 0 == job.runs
            state["raise"] = False
            assert job.ran.wait(10)
            assert poller._thread is not None and poller._thread.is_alive()
    finally:
        store.dispose()


def test_a_trigger_during_a_run_is_kept_and_runs_the_job_again(db: TestDatabase) -> None:
    """Triggering a job while it runs keeps due_now set on the row; the job runs once more
    right after the current run, then due_now is cleared."""
    started, release = threading.Event(), threading.Event()
    runs: list[float] = []

    def body(token: CancellationToken) -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            started.set()
            release.wait(30)

    job = Job("a", HOUR, body=body)
    store = prepared(db, job, due=("a",))
    try:
        with sql_side(db, job) as side:
            assert started.wait(10)
            assert side.sql.trigger("a")
            held = row(store, "a")
            assert (True, True) == (bool(held["running"]), bool(held["due_now"]))
            release.set()
            assert wait_until(lambda: 2 == len(runs))
            assert wait_until(lambda: not row(store, "a")["running"])
            assert (False, 2) == (bool(row(store, "a")["due_now"]), job.runs)
    finally:
        store.dispose()


def test_wait_runs_keeps_claims_renewed_until_the_run_ends(db: TestDatabase) -> None:
    """After stop_claiming, a job that ignores its token keeps its claim renewed past its lease
    while wait_runs waits, and the host keeps its elected role (the election thread goes on,
    the lease is still ours); when the job returns, the row is handed back and hand_back
    ends."""
    release = threading.Event()
    job = Job("a", timedelta(seconds=1), body=stubborn(release))  # lease: 1 + 2 = 3 s
    store = prepared(db, job, due=("a",))
    try:
        with sql_side(db, job, elect_server_role=True) as side:
            assert job.ran.wait(10)
            roles = side.sql.roles
            assert roles is not None
            assert wait_until(lambda: side.sql.server_role() is ServerRole.SINGLE)
            claim = row(store, "a")["claim_id"]
            side.sql.stop_claiming()
            began = time.monotonic()
            assert False is side.sql.wait_runs(began + 4)  # longer than the 3 s lease
            held = row(store, "a")
            assert (True, claim) == (bool(held["running"]), held["claim_id"])
            assert store.now_ms() - held["last_alive_ms"] < 1500
            assert [] == [e for e in side.events if type(e).__name__ == "DistributedJobLeaseLost"]
            thread = roles._thread
            assert (ServerRole.SINGLE, True) == (
                side.sql.server_role(),
                thread is not None and thread.is_alive(),
            )
            with roles.engine.connect() as conn:
                holder = (
                    conn.execute(
                        select(roles.leases.c.holder).where(roles.leases.c.holder.is_not(None))
                    )
                    .scalars()
                    .all()
                )
            assert [roles.identity] == holder
            release.set()
            assert side.sql.wait_runs(time.monotonic() + 5)
            assert side.sql.hand_back(time.monotonic() + 5)
            assert False is bool(row(store, "a")["running"])
    finally:
        store.dispose()


def test_hand_back_leaves_a_run_past_the_deadline_its_claim(db: TestDatabase) -> None:
    """A run still going at the deadline keeps its claim, unrenewed, and hand_back says so."""
    started = threading.Event()
    release = threading.Event()

    def body(token: CancellationToken) -> None:
        started.set()
        release.wait(30)

    job = Job("a", HOUR, body=body)
    store = prepared(db, job, due=("a",))
    try:
        with sql_side(db, job) as side:
            assert started.wait(10)
            claim = row(store, "a")["claim_id"]
            side.sql.stop_claiming()
            assert False is side.sql.wait_runs(time.monotonic() + 0.2)
            assert False is side.sql.hand_back(time.monotonic() + 0.2)
            assert (True, claim) == (bool(row(store, "a")["running"]), row(store, "a")["claim_id"])
            release.set()
    finally:
        store.dispose()


def test_polite_runs_end_and_hand_back(db: TestDatabase) -> None:
    """The whole stop order on a cooperative run: cancelled, finished, every thread ended."""
    started = threading.Event()
    job = Job("a", HOUR, body=polite(started))
    store = prepared(db, job, due=("a",))
    try:
        with sql_side(db, job) as side:
            assert started.wait(10)
            assert side.stop(5)
            assert (False, ["DistributedJobClaimed", "JobExecuting", "JobExecuted"]) == (
                bool(row(store, "a")["running"]),
                side.kinds("a"),
            )
            poller = side.sql.poller
            assert poller is not None and poller._thread is not None
            assert (False, True) == (poller._thread.is_alive(), poller.heartbeat.join(0))
    finally:
        store.dispose()


@dataclass
class _Stuck:
    """Runs of ``names`` held in their bodies until ``release``, on a host whose database
    fails every statement while ``fault.active``."""

    side: SqlSide
    store: JobStore
    fault: Fault
    jobs: list[Job]
    release: threading.Event


@contextmanager
def _stuck_runs(db: TestDatabase, names: list[str]) -> Iterator[_Stuck]:
    """A started host running one job per name (all due, one slot each), whose runs wait for
    ``release``; the fault is cleared and everything disposed of afterwards."""
    release = threading.Event()
    jobs = [Job(n, HOUR, body=stubborn(release)) for n in names]
    store = prepared(db, *jobs, due=tuple(names))
    fault = Fault()
    engine = faulty_engine(db, fault)
    try:
        slots = settings(db, max_concurrent_jobs=len(names))
        with sql_side(db, *jobs, database=engine, distributed=slots) as side:
            assert side.sql.poller is not None
            yield _Stuck(side, store, fault, jobs, release)
    finally:
        fault.active = False
        engine.dispose()
        store.dispose()


def test_a_group_of_finishes_failing_together_is_kept_pending_and_retried(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """Four runs end together while every finish statement fails (the database down mid-
    finish): the finishes that were grouped fail together, and each of the four runs is kept
    pending with its claim held and renewed, with a WARNING for the job at each failed
    attempt; once the fault clears, the heartbeat thread frees every row with last_run stamped
    and logs one INFO line for each ("handed back after N failed attempts")."""
    caplog.set_level(logging.INFO, logger="recurjobs")
    names = ["a", "b", "c", "d"]
    with _stuck_runs(db, names) as stuck:
        side, store, fault, jobs = stuck.side, stuck.store, stuck.fault, stuck.jobs
        poller = side.sql.poller
        assert poller is not None
        grouped = poller.store._finishes._grouped
        batches: list[tuple[int, bool]] = []  # (finishes in the batch, all of them failed)
        run_batch = grouped._batch

        def recorded(claims: Sequence[Claim]) -> Sequence[bool | Exception]:
            answers = run_batch(claims)
            batches.append((len(claims), all(isinstance(a, Exception) for a in answers)))
            return answers

        grouped._batch = recorded
        assert wait_until(lambda: all(j.runs == 1 for j in jobs), 20)
        fault.active = True
        stuck.release.set()
        assert wait_until(
            lambda: names == sorted(r.claim.name for r in poller.leases.pending()), 30
        )
        assert any(size > 1 and failed for size, failed in batches), batches
        held = {n: row(store, n) for n in names}
        assert all(
            (True, side.sql.owner) == (bool(r["running"]), r["owner"]) for r in held.values()
        )
        assert wait_until(
            lambda: all(row(store, n)["last_alive_ms"] > held[n]["last_alive_ms"] for n in names)
        )
        cleared_at = store.now_ms()
        fault.active = False
        assert wait_until(lambda: not any(bool(row(store, n)["running"]) for n in names), 15)
        assert wait_until(lambda: [] == poller.leases.all())
        freed = [row(store, n) for n in names]
        assert all(
            (None, None, True) == (r["claim_id"], r["owner"], r["last_run_ms"] >= cleared_at)
            for r in freed
        ), freed
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("recurjobs")]
    for name in names:
        kept = [m for m in messages if m.startswith(f"distributed job {name}: could not hand")]
        back = [m for m in messages if m.startswith(f"distributed job {name}: the row was handed")]
        assert (True, 1) == (len(kept) >= 1, len(back)), (name, kept, back)


def test_finishes_still_failing_at_the_stop_deadline_leave_their_claims(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """Two finishes still failing when hand_back's deadline (1 s) passes: hand_back gives up
    by the deadline (plus the last attempt), returns False and logs one WARNING per job; each
    row keeps its claim (running, same claim id), to go stale after its lease."""
    caplog.set_level(logging.WARNING, logger="recurjobs")
    names = ["a", "b"]
    with _stuck_runs(db, names) as stuck:
        side, store = stuck.side, stuck.store
        poller = side.sql.poller
        assert poller is not None
        assert wait_until(lambda: all(j.runs == 1 for j in stuck.jobs), 20)
        claims = {n: row(store, n)["claim_id"] for n in names}
        stuck.fault.active = True
        stuck.release.set()
        assert wait_until(lambda: 2 == len(poller.leases.pending()), 30)
        began = time.monotonic()
        side.sql.stop_claiming()
        assert side.sql.wait_runs(began + 1)
        handed_back = side.sql.hand_back(began + 1)
        took = time.monotonic() - began
        kept = {n: row(store, n) for n in names}
        given_up = [
            r.getMessage()
            for r in caplog.records
            if "could not be handed back before the stop deadline" in r.getMessage()
        ]
        stuck.fault.active = False  # the side's own stop hands the rows back
    assert (False, True) == (handed_back, took < 1 + 2 + 1), took
    assert all(
        (True, claims[n]) == (bool(kept[n]["running"]), kept[n]["claim_id"]) for n in names
    ), kept
    assert sorted(f"distributed job {n}:" for n in names) == sorted(
        m.split(" the row", 1)[0] for m in given_up
    ), given_up


def test_a_logging_filter_that_raises_at_a_distributed_runs_line_loses_only_the_line(
    db: TestDatabase,
) -> None:
    """A filter on the ``recurjobs.sql`` logger that raises at a failed distributed run's
    ERROR line: the failure is still published (JobFailed) and counted, the run thread hands
    the row back itself, and a trigger runs the job again."""

    def body(token: CancellationToken) -> None:
        raise ValueError("this run fails")

    job = Job("a", body=body)
    store = prepared(db, job, due=("a",))
    broken = RaisingFilter()
    sql_logger = logging.getLogger("recurjobs.sql")
    side = SqlSide(db, job)
    sql_logger.addFilter(broken)
    try:
        side.start()
        failed = wait_until(lambda: "JobFailed" in side.kinds("a"), 10)
        freed = wait_until(lambda: not row(store, "a")["running"], 10)
        assert store.trigger("a")
        again = wait_until(lambda: 2 == side.kinds("a").count("JobFailed"), 10)
    finally:
        sql_logger.removeFilter(broken)
        side.stop(5)
        store.dispose()
    poller = side.sql.poller
    assert (True, True, True) == (failed, freed, again), side.kinds("a")
    assert poller is not None and (2, 2) == (job.runs, poller.stats("a").failures)


def test_a_logging_filter_that_raises_at_the_pollers_error_line_keeps_it_polling(
    db: TestDatabase,
) -> None:
    """A poller iteration fails (a bug, injected here) while a filter on the ``recurjobs.sql``
    logger raises at every record: the iteration's ERROR line is lost, the poller thread lives
    on, and claims the job at its next iteration and again after a second trigger."""
    job = Job("a")
    store = prepared(db, job)
    side = SqlSide(db, job)
    side.start()
    poller = side.sql.poller
    assert poller is not None and poller._thread is not None
    step = poller.step
    failed = threading.Event()

    def failing_once() -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("a bug in one iteration")
        step()

    broken = RaisingFilter()
    sql_logger = logging.getLogger("recurjobs.sql")
    try:
        sql_logger.addFilter(broken)
        poller.step = failing_once  # type: ignore[method-assign]
        assert poller.trigger("a")  # wakes the poller: its next iteration fails
        assert failed.wait(10)
        assert wait_until(lambda: "distributed poller iteration failed" in broken.seen, 10)
        sql_logger.removeFilter(broken)
        ran = wait_until(lambda: 1 == job.runs, 10)  # the next iteration claims the row
        assert poller.trigger("a")  # and one more: the thread that claims lives on
        ran = ran and wait_until(lambda: 2 == job.runs, 10)
        alive = poller._thread.is_alive()
    finally:
        sql_logger.removeFilter(broken)
        side.stop(5)
        store.dispose()
    assert (True, True) == (alive, ran)


def test_a_logging_filter_that_raises_at_a_failed_triggers_line_does_not_raise_into_the_caller(
    db: TestDatabase,
) -> None:
    """``JobHost.trigger_distributed()`` while the database refuses (the jobs table dropped
    under the running host), with a filter on the ``recurjobs.sql`` logger that raises at
    every record: the call returns False and its WARNING line is lost; the app's filter does
    not raise into the caller's thread."""
    job = Job("a")
    store = prepared(db, job)
    host = JobHost([job], database=db.url, distributed=settings(db))
    broken = RaisingFilter()
    sql_logger = logging.getLogger("recurjobs.sql")
    host.start()
    try:
        assert wait_until(lambda: host.trigger_distributed("a"), 10)  # the poller knows "a"
        store.jobs.drop(store.engine)
        sql_logger.addFilter(broken)
        answer = host.trigger_distributed("a")
        sql_logger.removeFilter(broken)
    finally:
        sql_logger.removeFilter(broken)
        host.stop(5)
        store.dispose()
    lost = [m for m in broken.seen if m.startswith("triggering a on ")]
    assert (False, 1) == (answer, len(lost)), broken.seen
