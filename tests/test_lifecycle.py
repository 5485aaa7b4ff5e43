"""The stop sequence: one owner, callable from anywhere, in the documented order."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from recurjobs import (
    INFINITE,
    CancellationToken,
    JobExecuting,
    JobFailed,
    JobHost,
    JobNotification,
    JobStarting,
    JobStopped,
    JobStopping,
    MainDom,
    ServerRole,
)
from recurjobs._clock import Clock
from recurjobs._notifications import Publisher
from recurjobs.testing import ManualClock
from tests.helpers import TimedJob, minutes

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "maindom_worker.py"


class StopCounter:
    """Counts JobStopped notifications and signals when ``expected`` arrived."""

    def __init__(self, host: JobHost, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.lock = threading.Lock()
        self.all_stopped = threading.Event()
        host.subscribe(JobStopped, self._on_stopped)

    def _on_stopped(self, _n: JobStopped) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.expected:
                self.all_stopped.set()


def test_stop_from_a_job_thread_stops_every_job(clock: ManualClock) -> None:
    """stop() called inside a run neither raises nor leaves any of 21 jobs parked."""
    results: list[object] = []

    def body(_token: CancellationToken) -> None:
        try:
            results.append(host.stop(timeout=5))
        except BaseException as exc:  # the test reports whatever stop() raised
            results.append(exc)

    jobs = [TimedJob(clock, minutes(60), delay=INFINITE) for _ in range(20)]
    stopper = TimedJob(clock, minutes(60), delay=timedelta(0), body=body)
    host = JobHost([*jobs, stopper], clock=clock)
    counter = StopCounter(host, 21)
    host.start()
    assert counter.all_stopped.wait(10)
    assert [True] == results
    assert (21, True) == (counter.count, host.stop(timeout=5))


def test_stop_from_a_job_failed_handler_stops_every_job(clock: ManualClock) -> None:
    """stop() called from a JobFailed handler wakes and stops every one of 21 jobs."""
    results: list[object] = []

    def body(_token: CancellationToken) -> None:
        raise RuntimeError("fail so that the handler stops the host")

    def on_failed(_n: JobFailed) -> None:
        try:
            results.append(host.stop(timeout=5))
        except BaseException as exc:  # the test reports whatever stop() raised
            results.append(exc)

    jobs = [TimedJob(clock, minutes(60), delay=INFINITE) for _ in range(20)]
    failing = TimedJob(clock, minutes(60), delay=timedelta(0), body=body)
    host = JobHost([*jobs, failing], clock=clock)
    host.subscribe(JobFailed, on_failed)
    counter = StopCounter(host, 21)
    host.start()
    assert counter.all_stopped.wait(10)
    assert [True] == results
    assert 21 == counter.count


def stubborn_host(clock: ManualClock) -> tuple[JobHost, threading.Event]:
    """A started host whose one job is running and ignores its token until the returned event
    is set (at most 10 s)."""
    started, release = threading.Event(), threading.Event()

    def body(_token: CancellationToken) -> None:
        started.set()
        release.wait(10)

    host = JobHost([TimedJob(clock, minutes(5), body=body)], clock=clock).start()
    assert started.wait(5)
    return host, release


def test_concurrent_stop_waits_on_the_first_deadline(clock: ManualClock) -> None:
    """A second stop() while the first is waiting waits too and returns True once all ended."""
    host, release = stubborn_host(clock)
    first: list[bool] = []
    thread = threading.Thread(target=lambda: first.append(host.stop(timeout=5)))
    thread.start()
    time.sleep(0.1)  # let the first stop() begin (real concurrency, not a schedule)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    second = host.stop(timeout=5)
    thread.join(10)
    timer.join()
    assert ([True], True) == (first, second)


def test_a_second_stop_with_a_longer_timeout_keeps_the_first_deadline(
    clock: ManualClock,
) -> None:
    """stop(timeout=0.5), then stop(timeout=30) from another thread while a job ignores its
    token: both return False at the first call's deadline, not 30 s later."""
    host, release = stubborn_host(clock)
    first: list[bool] = []
    began = time.monotonic()
    thread = threading.Thread(target=lambda: first.append(host.stop(timeout=0.5)))
    thread.start()
    time.sleep(0.1)  # the first stop() has begun
    second = host.stop(timeout=30)
    waited = time.monotonic() - began
    thread.join(10)
    release.set()
    assert ([False], False) == (first, second)
    assert waited < 5  # the first deadline (0.5 s) plus the stop's short grace, never 30 s


def test_repeated_stop_after_the_deadline_reports_the_threads(clock: ManualClock) -> None:
    """stop() after a stop() that timed out returns whether the threads have ended since."""
    host, release = stubborn_host(clock)
    assert host.stop(timeout=0.2) is False
    assert host.stop(timeout=0.2) is False
    release.set()
    deadline = time.monotonic() + 5
    while not host.stop(timeout=0.2) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.stop() is True


class RoleService:
    """A server_role= object with a life of its own that records when it is stopped."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def __call__(self) -> ServerRole:
        return ServerRole.SINGLE

    def start(self, *, clock: Clock, publisher: Publisher) -> None:
        self.events.append("role started")

    def stop(self) -> None:
        self.events.append("role stopped")

    def join(self, timeout: float | None = None) -> bool:
        return True


def test_role_is_resigned_only_after_the_role_gated_job_ended(clock: ManualClock) -> None:
    """The role service is stopped after the running role-gated job has ended, not before."""
    events: list[str] = []
    started = threading.Event()

    def body(token: CancellationToken) -> None:
        started.set()
        token.wait()
        time.sleep(0.2)  # the job needs a moment to wind down after its token is cancelled
        events.append("job ended")

    host = JobHost(
        [TimedJob(clock, minutes(5), body=body)], clock=clock, server_role=RoleService(events)
    ).start()
    assert started.wait(5)
    assert host.stop(timeout=5)
    assert ["role started", "job ended", "role stopped"] == events


def test_stop_releases_the_main_instance_lock(clock: ManualClock, tmp_path: Path) -> None:
    """After stop() another process acquires the MainDom lock while this one still lives."""
    ran = threading.Event()
    job = TimedJob(clock, minutes(5), body=lambda _t: ran.set())
    host = JobHost([job], clock=clock, main_dom=MainDom("life", directory=str(tmp_path)))
    host.start()
    assert ran.wait(5)

    def other_process() -> str:
        out = subprocess.run(
            [sys.executable, str(WORKER), str(tmp_path), "life", "once"],
            capture_output=True, text=True, timeout=30, check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        return out.stdout.strip()

    before = other_process()
    host.stop(timeout=5)
    assert ("not-main", "main") == (before, other_process())


def _appender(seen: list[str]) -> Callable[[JobNotification], None]:
    return lambda n: seen.append(type(n).__name__)


def test_no_run_starts_after_stopping_under_a_race(clock: ManualClock) -> None:
    """300 stops racing a due run: per job, never a JobExecuting after JobStopping."""
    bad: list[list[str]] = []
    for trial in range(300):
        trial_clock = ManualClock()
        job = TimedJob(trial_clock, minutes(1), delay=minutes(1))
        host = JobHost([job], clock=trial_clock)
        seen: list[str] = []
        host.subscribe(JobNotification, _appender(seen))
        # A subscriber that takes a moment (a log handler, a metrics push) widens the window.
        host.subscribe(JobStopping, lambda _n: time.sleep(0.001))
        host.start()
        trial_clock.wait_for_waiters(1)
        advancer = threading.Thread(target=trial_clock.advance, args=(60.0,))
        advancer.start()
        spin_until = time.perf_counter() + (trial % 30) * 20e-6  # spread stop over the window
        while time.perf_counter() < spin_until:
            pass
        assert host.stop(timeout=5)
        advancer.join()
        body = [k for k in seen if k not in ("JobStarting", "JobStarted")]
        stopping = body.index("JobStopping")
        if "JobExecuting" in body[stopping:] or body[-1] != "JobStopped":
            bad.append(seen)
    assert [] == bad


def test_no_run_is_handed_a_cancelled_token_when_executing_handler_stops(
    clock: ManualClock,
) -> None:
    """stop() from a JobExecuting handler does not deadlock and the run is not called."""
    tokens: list[bool] = []
    results: list[bool] = []
    job = TimedJob(clock, minutes(5), body=lambda t: tokens.append(t.is_cancelled()))
    other = TimedJob(clock, minutes(5), delay=INFINITE)
    host = JobHost([job, other], clock=clock)
    seen: list[str] = []

    def on_executing(_n: JobExecuting) -> None:
        results.append(host.stop(timeout=5))

    host.subscribe(JobExecuting, on_executing)
    host.subscribe(JobNotification, lambda n: seen.append(f"{type(n).__name__}"))
    counter = StopCounter(host, 2)
    began = time.monotonic()
    host.start()
    assert counter.all_stopped.wait(10)
    assert host.stop(timeout=5)
    assert time.monotonic() - began < 3.0
    assert ([], [True]) == (tokens, results)
    executing = seen.index("JobExecuting")
    assert ["JobExecuting", "JobCanceled"] == [
        k for k in seen[executing:] if k in ("JobExecuting", "JobExecuted", "JobCanceled")
    ]


@pytest.mark.slow
def test_atexit_stop_waits_exit_timeout_for_a_job_that_ignores_its_token() -> None:
    """Interpreter exit with a job ignoring its token takes about exit_timeout (5 s), not 30 s."""
    script = textwrap.dedent(
        """
        import threading, time
        from datetime import timedelta
        from recurjobs import JobHost, RecurringJob
        started = threading.Event()
        class Stubborn(RecurringJob):
            def run(self, token):
                started.set()
                time.sleep(120)
        host = JobHost([Stubborn(timedelta(hours=1), delay=timedelta(0))]).start()
        started.wait(10)
        print("running", flush=True)
        """
    )
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=25, check=True
    )
    took = time.monotonic() - began
    assert "running\n" == out.stdout
    assert 4.5 <= took < 12.0


def test_exit_timeout_and_start_timeout_are_kept_and_validated() -> None:
    """exit_timeout and start_timeout are stored; bad values raise naming the parameter."""
    host = JobHost([], exit_timeout=2.5, start_timeout=7)
    assert (2.5, 7.0) == (host.exit_timeout, host.start_timeout)
    assert (5.0, 10.0) == (JobHost([]).exit_timeout, JobHost([]).start_timeout)
    with pytest.raises(ValueError, match="exit_timeout"):
        JobHost([], exit_timeout=-1.0)
    with pytest.raises(ValueError, match="start_timeout"):
        JobHost([], start_timeout=-1.0)
    with pytest.raises(TypeError, match="exit_timeout"):
        JobHost([], exit_timeout="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="start_timeout"):
        JobHost([], start_timeout=None)  # type: ignore[arg-type]


def test_second_host_with_same_key_and_jobs_warns(
    clock: ManualClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two hosts in one process sharing a MainDom key and job classes log a WARNING at start."""
    hosts = [
        JobHost(
            [TimedJob(clock, minutes(5), delay=INFINITE)],
            clock=clock,
            main_dom=MainDom("twice", directory=str(tmp_path)),
        )
        for _ in range(2)
    ]
    with caplog.at_level(logging.WARNING, logger="recurjobs"):
        hosts[0].start()
        assert [] == [r for r in caplog.records if r.levelno >= logging.WARNING]
        hosts[1].start()
    for host in hosts:
        host.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert 1 == len(warnings)
    assert "'twice'" in warnings[0] and "TimedJob" in warnings[0]


def test_stop_before_start_and_restart(clock: ManualClock) -> None:
    """stop() of a never-started host is True; start() after stop() is a clear RuntimeError."""
    host = JobHost([TimedJob(clock, minutes(5))], clock=clock)
    assert host.stop() is True
    with pytest.raises(RuntimeError, match="stopped"):
        host.start()


def test_stop_from_a_job_starting_handler_does_not_deadlock(clock: ManualClock) -> None:
    """stop() from a JobStarting handler returns at once; start() returns and nothing runs."""
    results: list[bool] = []
    job = TimedJob(clock, minutes(5), delay=timedelta(0))
    host = JobHost([job, TimedJob(clock, minutes(5))], clock=clock)
    host.subscribe(JobStarting, lambda _n: results.append(host.stop(timeout=5)))
    began = time.monotonic()
    host.start()
    assert host.stop(timeout=5)
    assert time.monotonic() - began < 3.0
    assert ([False, False], []) == (results, job.starts)
