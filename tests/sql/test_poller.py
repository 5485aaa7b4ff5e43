"""The distributed poller driven by a ManualClock against a SQLite file.

The poller's waits follow the ManualClock; the database clock does not, so rows are made due
by writing their timestamps directly (``make_due``) rather than by advancing time. Parked on
the clock: the poller and heartbeat threads while idle (``IDLE``), plus the lease watchdog
while a job runs (``BUSY``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from recurjobs import (
    CancellationToken,
    DistributedJobClaimed,
    DistributedJobLeaseLost,
    DistributedJobSettings,
    JobCanceled,
    JobExecuted,
    JobFailed,
    JobHost,
    JobNotification,
)
from recurjobs._notifications import Publisher
from recurjobs.sql import Claim, JobStore
from recurjobs.sql._poller import DistributedPoller
from recurjobs.sql._rows import Poll
from recurjobs.testing import ManualClock
from tests.dbs import TestDatabase
from tests.helpers import RaisingFilter
from tests.sql.helpers import HOUR, Job, make_due, row, server_proxy, set_row, wait_until
from tests.sql.runhelpers import SqlSide, polite, prepared, settings

DELAY = 60.0
POLL = 1.0
SETTINGS = DistributedJobSettings(
    poll_period=timedelta(seconds=POLL),
    delay=timedelta(seconds=DELAY),
    max_execution_time=timedelta(seconds=8),  # heartbeat every min(1, 8 / 4) = 1 s
)
PERIOD = timedelta(seconds=10)  # lease: 10 + 8 = 18 s; cancelled 1 s before it could expire
HOUR_MS = 3_600_000
IDLE, BUSY = 2, 3  # threads parked on the clock: poller and heartbeat (+ watchdog while busy)


class Harness:
    """A poller on a SQLite file with a ManualClock, recording every notification."""

    def __init__(self, tmp_path: Path, *jobs: Job, **settings: Any) -> None:
        self.clock = ManualClock()
        self.jobs = jobs
        self.store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
        self.events: list[JobNotification] = []
        self.ready = True
        publisher = Publisher()
        publisher.subscribe(JobNotification, self.events.append)
        base = SETTINGS.__dict__ | settings
        self.poller = DistributedPoller(
            store=self.store,
            jobs=list(jobs),
            settings=DistributedJobSettings(**base),
            clock=self.clock,
            publisher=publisher,
            owner="me",
            ready=lambda: self.ready,
        )

    def start(self, *, rows: bool = True) -> None:
        """Start the poller and wait until it waits for the delay; with ``rows``, first write
        the jobs' rows as another host did before (the poller writes them at its first poll)."""
        if rows:
            self.store.create_schema()
            self.store.ensure(self.jobs)
        self.poller.start()
        self.clock.wait_for_waiters(IDLE)

    def past_delay(self) -> None:
        """Advance to the first poll and wait until the poller is parked again."""
        self.clock.advance(DELAY)

    def kinds(self, name: str | None = None) -> list[str]:
        """Names of the notifications so far (optionally of one job)."""
        return [
            type(e).__name__
            for e in list(self.events)
            if name is None or getattr(e.job, "name", None) == name
        ]


MakeHarness = Callable[..., Harness]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[MakeHarness]:
    """Build harnesses on demand; every poller is stopped and joined afterwards."""
    made: list[Harness] = []

    def make(*jobs: Job, **settings: Any) -> Harness:
        made.append(Harness(tmp_path, *jobs, **settings))
        return made[-1]

    yield make
    for h in made:
        h.poller.stop_claiming()
        h.poller.wait_runs(_in(5))
        h.poller.hand_back(_in(5))
        h.store.dispose()


def _in(seconds: float) -> float:
    """A deadline ``seconds`` from now on ``time.monotonic()``, as the host's stop passes."""
    return time.monotonic() + seconds


def blocking(started: threading.Event, release: threading.Event) -> Any:
    """A job body that signals ``started`` and runs until ``release`` or its token is cancelled."""

    def body(token: CancellationToken) -> None:
        started.set()
        while not release.is_set() and not token.is_cancelled():
            release.wait(0.005)
        token.raise_if_cancelled()

    return body


def test_a_due_job_waits_for_the_delay_then_runs(harness: MakeHarness) -> None:
    """A job whose row is due at start is not claimed before the delay, then runs at once."""
    job = Job("a", PERIOD)
    h = harness(job)
    h.start()
    make_due(h.store, "a")
    h.clock.advance(DELAY - 0.5)
    h.clock.wait_for_waiters(IDLE)
    assert 0 == job.runs
    h.clock.advance(0.5)
    assert job.ran.wait(5)


def test_rows_are_written_at_the_first_poll_with_last_run_now(harness: MakeHarness) -> None:
    """No row exists before the delay; the first poll inserts it with last_run = the database's
    now, so a new job first runs a period after start + delay, not at start + period."""
    job = Job("a", PERIOD)
    h = harness(job)
    h.store.create_schema()
    h.start(rows=False)
    h.clock.advance(DELAY - 0.5)
    h.clock.wait_for_waiters(IDLE)
    assert [] == h.store.rows()
    before = h.store.now_ms()
    h.clock.advance(0.5)
    assert wait_until(lambda: bool(h.store.rows()))
    (new,) = h.store.rows()
    assert (True, False, 0) == (
        before <= row(h.store, "a")["last_run_ms"] <= h.store.now_ms(),
        new.running,
        job.runs,
    )
    assert new.last_run + PERIOD == new.next_due


def test_a_run_publishes_claimed_executing_executed_and_frees_the_row(harness: MakeHarness) -> None:
    """Success: Claimed, Executing, Executed; then the row is finished by the run's thread."""
    job = Job("a", PERIOD)
    h = harness(job)
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert wait_until(lambda: "JobExecuted" in h.kinds() and not row(h.store, "a")["running"])
    assert ["DistributedJobClaimed", "JobExecuting", "JobExecuted"] == h.kinds()
    claimed = h.events[0]
    assert isinstance(claimed, DistributedJobClaimed)
    assert 32 == len(claimed.claim_id)
    assert None is row(h.store, "a")["claim_id"]
    assert [] == h.store.due_names(["a"])


def test_a_failing_run_is_published_and_still_finished(
    harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """A job that raises: Claimed, Executing, Failed, logged; the row is handed back."""
    boom = RuntimeError("boom")

    def fail(token: CancellationToken) -> None:
        raise boom

    h = harness(Job("a", PERIOD, body=fail))
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert wait_until(lambda: "JobFailed" in h.kinds() and not row(h.store, "a")["running"])
    assert ["DistributedJobClaimed", "JobExecuting", "JobFailed"] == h.kinds()
    failed = h.events[-1]
    assert isinstance(failed, JobFailed)
    assert boom is failed.exception
    assert "distributed job a failed" in caplog.text
    assert (1, 1, "failed") == (
        h.poller.status()[0].runs,
        h.poller.status()[0].failures,
        h.poller.status()[0].last_outcome,
    )


def test_stop_cancels_a_running_job_and_hands_its_row_back(harness: MakeHarness) -> None:
    """Stop while running: the token is cancelled, JobCanceled published, the row finished."""
    started, release = threading.Event(), threading.Event()
    h = harness(Job("a", PERIOD, body=blocking(started, release)))
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert started.wait(5)
    h.poller.stop()
    assert h.poller.join(5)
    assert ["DistributedJobClaimed", "JobExecuting", "JobCanceled"] == h.kinds()
    assert (False, None) == (bool(row(h.store, "a")["running"]), row(h.store, "a")["claim_id"])


def test_claims_stop_at_max_concurrent_jobs(harness: MakeHarness) -> None:
    """With two slots and three due jobs, two run; the third is claimed once a slot frees."""
    release = {n: threading.Event() for n in "abc"}
    started = {n: threading.Event() for n in "abc"}
    jobs = [Job(n, PERIOD, body=blocking(started[n], release[n])) for n in "abc"]
    h = harness(*jobs, max_concurrent_jobs=2)
    h.start()
    for n in "abc":
        make_due(h.store, n)
    h.past_delay()
    assert wait_until(lambda: sum(e.is_set() for e in started.values()) == 2)
    first = sorted(n for n, e in started.items() if e.is_set())
    h.clock.wait_for_waiters(BUSY)  # poller and lease watchdog parked
    h.clock.advance(POLL)
    h.clock.wait_for_waiters(BUSY)
    assert 2 == sum(e.is_set() for e in started.values())
    release[first[0]].set()
    assert wait_until(lambda: len(h.poller.leases.all()) == 1)
    h.clock.wait_for_waiters(BUSY)
    h.clock.advance(POLL)
    assert wait_until(lambda: all(e.is_set() for e in started.values()))
    for e in release.values():
        e.set()


class Chore(Job):
    """A job marked as the library's own housekeeping, like the history pruning job."""

    _recurjobs_housekeeping = True


def test_housekeeping_runs_beside_the_slots_and_takes_none(harness: MakeHarness) -> None:
    """With one slot: the housekeeping job is claimed while a user job holds the slot, and
    while it runs the next user job still gets the slot when the first one ends."""
    names = ("user", "chore", "later")
    release = {n: threading.Event() for n in names}
    started = {n: threading.Event() for n in names}
    user = Job("user", PERIOD, body=blocking(started["user"], release["user"]))
    chore = Chore("chore", PERIOD, body=blocking(started["chore"], release["chore"]))
    later = Job("later", PERIOD, body=blocking(started["later"], release["later"]))
    h = harness(user, chore, later, max_concurrent_jobs=1)
    h.start()
    make_due(h.store, "user")
    make_due(h.store, "chore")
    h.past_delay()
    assert wait_until(lambda: started["user"].is_set() and started["chore"].is_set())
    make_due(h.store, "later")
    h.clock.wait_for_waiters(BUSY)
    h.clock.advance(POLL)
    h.clock.wait_for_waiters(BUSY)
    assert not started["later"].is_set()  # the one slot is the user job's
    release["user"].set()
    assert wait_until(lambda: [r.claim.name for r in h.poller.leases.all()] == ["chore"])
    h.clock.wait_for_waiters(BUSY)
    h.clock.advance(POLL)
    assert wait_until(started["later"].is_set)  # the chore still runs: it holds no slot
    assert not release["chore"].is_set() and chore.runs == 1
    for event in release.values():
        event.set()


def test_the_history_pruning_job_is_housekeeping() -> None:
    """The job the host registers for pruning carries the marker the poller reads."""
    from recurjobs.sql._historyhost import HistoryPruneJob
    from recurjobs.sql._poller import HOUSEKEEPING

    assert getattr(HistoryPruneJob, HOUSEKEEPING) is True


def test_trigger_runs_a_job_at_once_after_the_delay(harness: MakeHarness) -> None:
    """trigger() marks the row due and wakes the poller: the job runs without waiting a poll."""
    job = Job("a", PERIOD)
    h = harness(job)
    assert not h.poller.trigger("a")  # not started
    h.start()
    h.past_delay()
    h.clock.wait_for_waiters(IDLE)
    assert not h.poller.trigger("unknown")
    assert h.poller.trigger("a")
    assert job.ran.wait(5)
    h.poller.stop()
    assert not h.poller.trigger("a")


def test_heartbeats_renew_a_long_run_every_interval(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running job's claim is renewed once per heartbeat interval, from the poller thread."""
    started, release = threading.Event(), threading.Event()
    h = harness(Job("a", PERIOD, body=blocking(started, release)))
    beats: list[bool] = []
    heartbeat = h.store.heartbeat

    def spy(claim: Claim) -> bool:
        beats.append(heartbeat(claim))
        return beats[-1]

    monkeypatch.setattr(h.store, "heartbeat", spy)
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert started.wait(5)
    for expected in (1, 2, 3):
        h.clock.wait_for_waiters(BUSY)
        h.clock.advance(h.poller.leases.interval)
        assert wait_until(lambda n=expected: len(beats) == n)  # type: ignore[misc]
    assert [True, True, True] == beats
    release.set()
    assert wait_until(lambda: not row(h.store, "a")["running"])
    assert [] == [k for k in h.kinds() if k == "DistributedJobLeaseLost"]


def _taken_over(harness: MakeHarness, release: threading.Event) -> Harness:
    """Job "a" running (until ``release`` or its token is cancelled) when another server's
    claim id is written into its row; its next heartbeat finds the takeover."""
    started = threading.Event()
    h = harness(Job("a", PERIOD, body=blocking(started, release)))
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert started.wait(5)
    set_row(h.store, "a", claim_id="thief", owner="other")
    return h


def test_a_takeover_found_by_a_heartbeat_cancels_the_run(harness: MakeHarness) -> None:
    """When the heartbeat finds another claim id, the run is cancelled and LeaseLost published;
    the old run's finish leaves the new owner's claim alone."""
    h = _taken_over(harness, threading.Event())
    h.clock.wait_for_waiters(BUSY)
    h.clock.advance(h.poller.leases.interval)
    assert wait_until(lambda: "JobCanceled" in h.kinds())
    assert wait_until(lambda: not h.poller.leases.all())
    kinds = h.kinds()
    assert [
        "DistributedJobClaimed",
        "JobExecuting",
        "DistributedJobLeaseLost",
        "JobCanceled",
    ] == kinds
    lost = next(e for e in h.events if isinstance(e, DistributedJobLeaseLost))
    assert isinstance(h.events[0], DistributedJobClaimed)
    assert h.events[0].claim_id == lost.claim_id
    assert ("thief", "other", True) == (
        row(h.store, "a")["claim_id"],
        row(h.store, "a")["owner"],
        bool(row(h.store, "a")["running"]),
    )
    assert 1 == h.poller.stats("a").lease_losses


def test_a_takeover_cancels_the_run_under_a_logging_filter_that_raises(
    harness: MakeHarness,
) -> None:
    """A filter on the ``recurjobs.sql`` logger that raises at every record when the heartbeat
    finds another claim id: the "lost its claim" WARNING is lost, but the run is cancelled
    all the same (the line came before the cancel, and a loss is acted on once)."""
    release = threading.Event()
    h = _taken_over(harness, release)
    broken = RaisingFilter()
    sql_logger = logging.getLogger("recurjobs.sql")
    sql_logger.addFilter(broken)
    try:
        h.clock.wait_for_waiters(BUSY)
        h.clock.advance(h.poller.leases.interval)
        canceled = wait_until(lambda: "JobCanceled" in h.kinds())
    finally:
        sql_logger.removeFilter(broken)
        release.set()
    lost = [m for m in broken.seen if "lost its claim" in m]
    assert (True, 1, 1) == (canceled, len(lost), h.poller.stats("a").lease_losses)


def test_a_claim_that_cannot_be_renewed_in_time_is_given_up(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the database unreachable, the run is cancelled one interval before the lease ends."""
    started, release = threading.Event(), threading.Event()
    h = harness(Job("a", PERIOD, body=blocking(started, release)))
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert started.wait(5)

    def down(claim: object) -> bool:
        raise OperationalError("UPDATE", {}, Exception("server closed the connection"))

    monkeypatch.setattr(h.store, "heartbeat", down)
    lease = (PERIOD + SETTINGS.max_execution_time).total_seconds()
    h.clock.wait_for_waiters(BUSY)
    h.clock.advance(lease - 1.5)  # renewals keep failing, but the lease may still be ours
    h.clock.wait_for_waiters(BUSY)
    assert not any(isinstance(e, DistributedJobLeaseLost) for e in h.events)
    h.clock.advance(0.5)
    assert wait_until(lambda: "DistributedJobLeaseLost" in h.kinds())
    assert wait_until(lambda: "JobCanceled" in h.kinds())


def test_database_faults_never_end_the_poller(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll that fails is logged and the next poll claims as usual."""
    job = Job("a", PERIOD)
    h = harness(job)
    poll = h.store.poll
    failures = [OperationalError("SELECT", {}, Exception("connection refused"))]

    def flaky(names: Collection[str], crons: Any = None) -> Poll:
        if failures:
            raise failures.pop()
        return poll(names, crons)

    monkeypatch.setattr(h.store, "poll", flaky)
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    h.clock.wait_for_waiters(IDLE)
    assert (0, []) == (job.runs, failures)
    h.clock.advance(POLL)
    assert job.ran.wait(5)


def test_nothing_is_claimed_while_the_runtime_is_not_ready(harness: MakeHarness) -> None:
    """ready() False (or raising) skips claiming; the job runs once ready() is True."""
    job = Job("a", PERIOD)
    h = harness(job)
    h.ready = False
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    h.clock.wait_for_waiters(IDLE)
    h.clock.advance(POLL)
    h.clock.wait_for_waiters(IDLE)
    assert 0 == job.runs
    h.ready = True
    h.clock.advance(POLL)
    assert job.ran.wait(5)


def test_jobs_added_after_start_are_ensured_and_run(harness: MakeHarness) -> None:
    """add() after start writes the row at once and the job takes part in the next polls."""
    h = harness(Job("a", PERIOD))
    h.start()
    h.past_delay()
    late = Job("late", PERIOD)
    h.poller.add(late)
    assert wait_until(lambda: "late" in [r.name for r in h.store.rows()])
    make_due(h.store, "late")
    h.clock.wait_for_waiters(IDLE)
    h.clock.advance(POLL)
    assert late.ran.wait(5)
    with pytest.raises(ValueError, match="late"):
        h.poller.add(Job("late", PERIOD))


def test_a_changed_period_is_written_at_the_next_iteration(harness: MakeHarness) -> None:
    """Changing a job's period on the object updates its row at the next poll."""
    job = Job("a", PERIOD)
    h = harness(job)
    h.start()
    h.past_delay()
    h.clock.wait_for_waiters(IDLE)
    job.period = timedelta(seconds=42)
    h.clock.advance(POLL)
    assert wait_until(lambda: 42_000 == row(h.store, "a")["period_ms"])


def test_an_uncooperative_job_keeps_its_claim_alive_after_stop(harness: MakeHarness) -> None:
    """After stop_claiming, a job that ignores its token is still renewed while wait_runs waits,
    then finished when it returns; hand_back ends every thread."""
    started, release = threading.Event(), threading.Event()

    def stubborn(token: CancellationToken) -> None:
        started.set()
        release.wait(10)

    h = harness(Job("a", PERIOD, body=stubborn))
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert started.wait(5)
    h.poller.stop_claiming()
    assert not h.poller.wait_runs(_in(0.05))
    claim_id = row(h.store, "a")["claim_id"]
    alive = row(h.store, "a")["last_alive_ms"]
    h.clock.wait_for_waiters(2)  # heartbeat and watchdog (the poller thread has ended)
    h.clock.advance(h.poller.leases.interval)
    assert wait_until(lambda: row(h.store, "a")["last_alive_ms"] != alive)
    assert (True, claim_id) == (bool(row(h.store, "a")["running"]), row(h.store, "a")["claim_id"])
    release.set()
    assert h.poller.wait_runs(_in(5))
    assert h.poller.hand_back(_in(5))
    assert ["DistributedJobClaimed", "JobExecuting", "JobExecuted"] == h.kinds()
    assert not row(h.store, "a")["running"]


def test_a_claim_won_while_stopping_is_released(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If stop() lands between winning a claim and starting the run, the claim is given back."""
    job = Job("a", PERIOD)
    h = harness(job)
    try_claim = h.store.try_claim
    stopped = threading.Event()

    def claim_then_stop(name: str, **kwargs: Any) -> Any:
        won = try_claim(name, **kwargs)
        h.poller.stop_claiming()
        stopped.set()
        return won

    monkeypatch.setattr(h.store, "try_claim", claim_then_stop)
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert stopped.wait(5)
    assert h.poller.join(5)
    assert 0 == job.runs
    assert (False, True) == (bool(row(h.store, "a")["running"]), bool(row(h.store, "a")["due_now"]))


def test_life_cycle(harness: MakeHarness) -> None:
    """start twice is harmless, one thread is named recurjobs-poller, start after stop raises."""
    h = harness(Job("a", PERIOD))
    assert h.poller.join(0)
    h.start()
    h.poller.start()
    assert 1 == sum(t.name == "recurjobs-poller" for t in threading.enumerate())
    h.poller.stop()
    assert h.poller.join(5)
    with pytest.raises(RuntimeError):
        h.poller.start()
    status = h.poller.status()
    assert [("a", "distributed", PERIOD, False, 0)] == [
        (s.name, s.kind, s.period, s.running, s.runs) for s in status
    ]


def test_cancelled_jobs_that_return_normally_are_executed(harness: MakeHarness) -> None:
    """A run that returns normally after its token was cancelled is published as Executed."""
    started = threading.Event()

    def polite(token: CancellationToken) -> None:
        started.set()
        token.wait(30)

    h = harness(Job("a", PERIOD, body=polite))
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert started.wait(5)
    h.poller.stop()
    assert h.poller.join(5)
    assert isinstance(h.events[-1], JobExecuted)
    assert not any(isinstance(e, JobCanceled) for e in h.events)


def test_a_job_whose_row_cannot_be_written_does_not_block_the_others(
    harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """A job that became invalid (its row cannot be updated) is logged; the others still run."""
    good, bad = Job("good", PERIOD), Job("bad", PERIOD)
    h = harness(good, bad)
    h.start()
    bad.period = timedelta(0)
    make_due(h.store, "good")
    h.past_delay()
    assert good.ran.wait(5)
    assert "preparing distributed jobs" in caplog.text


def test_heartbeats_go_on_while_a_poll_is_stuck(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll stuck in the database (a blocked SELECT or claim) does not hold up the heartbeats
    of running jobs: they have their own thread."""
    started, release = threading.Event(), threading.Event()
    jobs = Job("a", PERIOD, body=blocking(started, release)), Job("b", PERIOD)
    h = harness(*jobs, max_concurrent_jobs=2)
    stuck, unstick = threading.Event(), threading.Event()
    poll = h.store.poll
    beats: list[bool] = []
    heartbeat = h.store.heartbeat

    def blocked(names: Collection[str], crons: Any = None) -> Poll:
        if started.is_set():
            stuck.set()
            unstick.wait(30)
        return poll(names, crons)

    def spy(claim: Claim) -> bool:
        beats.append(heartbeat(claim))
        return beats[-1]

    monkeypatch.setattr(h.store, "poll", blocked)
    monkeypatch.setattr(h.store, "heartbeat", spy)
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert started.wait(5)
    h.clock.wait_for_waiters(BUSY)
    h.clock.advance(POLL)
    assert stuck.wait(5)
    for expected in (1, 2, 3):
        h.clock.wait_for_waiters(2)  # heartbeat and watchdog; the poller is stuck
        h.clock.advance(h.poller.leases.interval)
        assert wait_until(lambda n=expected: len(beats) >= n)  # type: ignore[misc]
    assert ([True] * len(beats), []) == (beats, h.kinds("a")[2:])
    unstick.set()
    release.set()


def test_a_failed_finish_is_retried_on_the_host_clock(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finish that fails leaves the claim held and renewed; the heartbeat thread retries it
    with back-off on the host clock until it lands, then the row is free."""
    job = Job("a", PERIOD)
    h = harness(job)
    finish = h.store.finish
    attempts: list[bool] = []
    failing = True

    def flaky(claim: Claim) -> bool:
        attempts.append(failing)
        if failing:
            raise OperationalError("UPDATE", {}, Exception("server closed the connection"))
        return finish(claim)

    monkeypatch.setattr(h.store, "finish", flaky)
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert wait_until(lambda: bool(h.poller.leases.pending()))
    claim_id = row(h.store, "a")["claim_id"]
    alive = row(h.store, "a")["last_alive_ms"]
    for _ in range(3):  # each back-off is at most one heartbeat interval
        before = len(attempts)
        h.clock.wait_for_waiters(IDLE)
        h.clock.advance(h.poller.leases.interval)
        assert wait_until(lambda n=before: len(attempts) > n)  # type: ignore[misc]
    assert wait_until(lambda: row(h.store, "a")["last_alive_ms"] != alive)  # still renewed
    h.clock.wait_for_waiters(IDLE)
    assert (True, claim_id, True) == (
        bool(row(h.store, "a")["running"]),
        row(h.store, "a")["claim_id"],
        all(attempts),
    )
    failing = False
    h.clock.advance(h.poller.leases.interval)
    # the row is free in the database a moment before the lease book drops the run
    assert wait_until(lambda: not row(h.store, "a")["running"] and not h.poller.leases.all())
    assert ([], False) == (h.poller.leases.all(), attempts[-1])


def test_a_claim_confirmed_after_its_lease_could_lapse_never_runs(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim whose acknowledgement arrives so late that its lease may have lapsed (a commit
    held up by another transaction's lock) starts no run: another host may own the row."""
    started = threading.Event()
    h = harness(Job("a", PERIOD, body=lambda token: started.set()))
    try_claim = h.store.try_claim
    lease = (PERIOD + SETTINGS.max_execution_time).total_seconds()

    def late(name: str, **kwargs: Any) -> Claim | None:
        claim = try_claim(name, **kwargs)
        h.clock.advance(lease)  # the commit was held up for a whole lease
        return claim

    monkeypatch.setattr(h.store, "try_claim", late)
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert wait_until(lambda: bool(row(h.store, "a")["running"]))
    h.clock.wait_for_waiters(IDLE)
    assert (False, []) == (started.is_set(), h.kinds("a"))


def test_a_run_whose_thread_cannot_start_is_given_back(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process out of threads (Thread.start raises RuntimeError) neither kills the poller nor
    leaves the row claimed and renewed forever: the claim is released, the row stays due, and
    the next poll runs the job once a thread can start."""
    job = Job("a", PERIOD)
    h = harness(job)
    real_start = threading.Thread.start
    refused: list[str] = []

    def start(thread: threading.Thread) -> None:
        if thread.name.startswith("recurjobs-run-") and not refused:
            refused.append(thread.name)
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert wait_until(lambda: bool(refused) and bool(row(h.store, "a")["due_now"]))
    h.clock.wait_for_waiters(IDLE)
    assert (0, False, [], []) == (
        job.runs,
        bool(row(h.store, "a")["running"]),
        h.poller.leases.all(),
        h.kinds(),
    )
    h.clock.advance(POLL)
    assert job.ran.wait(5)


def test_batches_choose_within_a_window_and_still_claim_every_due_row(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many rows due, each batch chooses among at most four rows per row it may claim,
    triggered rows first; rows another host took after the poll only move the next batch on
    to the rows after its window, so every other due row is still claimed at that poll."""
    jobs = [Job(f"j{i:03d}", PERIOD) for i in range(100)]
    h = harness(*jobs, max_concurrent_jobs=200)
    calls: list[tuple[int, int, list[str]]] = []
    won: list[int] = []
    many = h.store.try_claim_many

    def recorded(leases: dict[str, timedelta], **kwargs: Any) -> list[Claim] | None:
        calls.append((len(leases), kwargs["limit"], list(leases)))
        claims = many(leases, **kwargs)
        won.append(len(claims or []))
        return claims

    stolen: list[str] = []
    poll = h.store.poll

    def poll_then_lose_some(*args: Any, **kwargs: Any) -> Poll:
        found = poll(*args, **kwargs)
        names = sorted(d.name for d in found.due if not d.triggered)
        for name in names[::10] if not stolen else []:  # another host claims them meanwhile
            now = h.store.now_ms()
            set_row(h.store, name, running=True, claim_id="x", last_alive_ms=now, lease_ms=HOUR_MS)
            stolen.append(name)
        return found

    monkeypatch.setattr(h.store, "try_claim_many", recorded)
    monkeypatch.setattr(h.store, "poll", poll_then_lose_some)
    h.start()
    with h.store.engine.begin() as conn:
        conn.execute(h.store.jobs.update().values(last_run_ms=h.store.now_ms() - 86_400_000))
    assert h.store.trigger("j097") and h.store.trigger("j098")
    h.past_delay()
    assert wait_until(lambda: sum(j.runs for j in jobs) == 100 - len(stolen))
    h.clock.wait_for_waiters(IDLE)
    assert 10 == len(stolen)
    assert all(n <= 4 * limit for n, limit, _ in calls), calls
    assert ["j097", "j098"] == sorted(calls[0][2][:2])  # triggered rows lead the first window
    assert [0] * 10 == [j.runs for j in jobs if j.name in stolen]
    # a batch whose window held stolen rows won fewer than its limit, and the next went on
    assert any(w < c[1] for w, c in zip(won, calls, strict=True)), (won, calls)
    assert 90 == sum(won)


@pytest.mark.timeout(60)
def test_a_run_that_cannot_renew_through_a_refusing_database_ends_before_a_takeover(
    db: TestDatabase,
) -> None:
    """A real database server refuses connections (through a proxy) while a job with a 3 s
    lease runs: the heartbeats fail, the run is cancelled (DistributedJobLeaseLost) before
    its claim could go stale, and another host, claiming as soon as the row lets it, gets
    the row only after that, within about one lease."""
    proxy = server_proxy(db)
    started = threading.Event()
    job = Job("a", timedelta(seconds=1), body=polite(started))  # lease: 1 + 2 = 3 s
    store = prepared(db, job, due=("a",))
    side = SqlSide(db, job, database=proxy.proxied_url(db.url), distributed=settings(db))
    lost_at: list[float] = []
    side.host.subscribe(DistributedJobLeaseLost, lambda n: lost_at.append(time.monotonic()))
    try:
        side.start()
        assert started.wait(10)
        proxy.refuse(30)
        refused_at = time.monotonic()
        taken: Claim | None = None
        while taken is None and time.monotonic() - refused_at < 15:
            taken = store.try_claim("a", owner="other", lease=timedelta(minutes=5))
            time.sleep(0.01)
        taken_at = time.monotonic()
        ended = wait_until(lambda: "JobExecuted" in side.kinds("a"), 5)  # the token ended it
    finally:
        proxy.pass_through()
        side.stop(5)
        proxy.close()
        store.dispose()
    assert (True, 1, True) == (taken is not None, len(lost_at), ended)
    assert lost_at[0] < taken_at, (lost_at[0] - refused_at, taken_at - refused_at)
    assert taken_at - refused_at < 3 + 2, taken_at - refused_at  # one lease, plus slack


def test_trigger_distributed_answers_false_until_there_is_a_row_to_mark(db: TestDatabase) -> None:
    """``JobHost.trigger_distributed()`` is False before start, for a name the host has no
    distributed job of, and for a new job whose row the host writes only at its first poll
    (``delay`` after start); True once the row exists (here written by another store, as an
    earlier host would have), and False again after stop."""
    job = Job("a", HOUR)
    host = JobHost([job], database=db.url, distributed=settings(db, delay=timedelta(hours=1)))
    other = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        before_start = host.trigger_distributed("a")
        host.start()
        unknown = host.trigger_distributed("nobody")
        no_row_yet = host.trigger_distributed("a")
        other.ensure([job])
        with_row = host.trigger_distributed("a")
        host.stop(5)
        after_stop = host.trigger_distributed("a")
    finally:
        host.stop(5)
        other.dispose()
    assert (False, False, False, True, False) == (
        before_start,
        unknown,
        no_row_yet,
        with_row,
        after_stop,
    )
