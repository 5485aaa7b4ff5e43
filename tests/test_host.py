"""JobHost life cycle, triggers' return values, validation and notification sequences."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta

import pytest

import recurjobs
from recurjobs import (
    INFINITE,
    CancellationToken,
    JobHost,
    JobNotification,
    JobStarted,
    NextExecution,
    RecurringJob,
    Signal,
)
from recurjobs.testing import ManualClock
from tests.helpers import Recorder, TimedJob, minutes, walk_to


class NotTriggerable(RecurringJob):
    """A job without the TriggerableJob mixin."""

    def run(self, token: CancellationToken) -> None:
        pass


def test_public_names_are_pinned() -> None:
    """recurjobs.__all__ is exactly the curated public surface, in sorted() order."""
    expected = [
        "CancellationToken", "Clock",
        "Cron", "DistributedJob", "DistributedJobClaimed",
        "DistributedJobLeaseLost", "DistributedJobSettings", "HistorySettings", "INFINITE",
        "IgnoreReason",
        "JobCanceled", "JobCancelled", "JobExecuted", "JobExecuting", "JobFailed", "JobHost",
        "JobIgnored", "JobNotification", "JobStarted", "JobStarting", "JobStatus",
        "JobStopped", "JobStopping", "JobTrigger", "MainDom", "NextExecution", "RecurringJob",
        "RunRecord", "ServerRole", "ServerRoleChanged", "Signal", "Subscription", "SystemClock",
        "TriggerableJob",
    ]  # fmt: skip
    assert expected == recurjobs.__all__
    assert sorted(recurjobs.__all__) == recurjobs.__all__


def test_trigger_returns_false_before_start_and_after_stop(clock: ManualClock) -> None:
    """Triggering a host that is not running does nothing and returns False."""
    job = TimedJob(clock, minutes(5), delay=INFINITE)
    host = JobHost([job], clock=clock)
    assert host.trigger(TimedJob) is False
    host.start()
    clock.wait_for_waiters(1)
    host.stop()
    assert host.trigger(TimedJob) is False
    assert [] == job.starts


def test_trigger_unregistered_job_returns_false(clock: ManualClock) -> None:
    """Triggering a job class that is not registered returns False."""

    class Other(TimedJob):
        pass

    with JobHost([TimedJob(clock, minutes(5))], clock=clock) as host:
        assert host.trigger(Other) is False
        assert host.trigger(Other(clock, minutes(1))) is False


def test_trigger_without_mixin_is_a_type_error(clock: ManualClock) -> None:
    """A job class without TriggerableJob cannot be triggered; the error names the mixin."""
    with JobHost([NotTriggerable(minutes(5))], clock=clock) as host:
        with pytest.raises(TypeError, match="TriggerableJob"):
            host.trigger(NotTriggerable)  # type: ignore[type-var]


def test_strategy_and_next_delay_together_is_a_value_error(clock: ManualClock) -> None:
    """Giving both a strategy other than NONE and next_delay is rejected at the call."""
    with JobHost([TimedJob(clock, minutes(5))], clock=clock) as host:
        with pytest.raises(ValueError, match="next_delay"):
            host.trigger(TimedJob, NextExecution.RESET, next_delay=minutes(1))


def test_trigger_by_class_with_two_instances_asks_for_the_instance(clock: ManualClock) -> None:
    """With two instances of one class registered, triggering by class is a ValueError."""
    a, b = TimedJob(clock, minutes(5)), TimedJob(clock, minutes(5))
    with JobHost([a, b], clock=clock) as host:
        with pytest.raises(ValueError, match="instance"):
            host.trigger(TimedJob)
        clock.wait_for_waiters(2)
        assert host.trigger(b)
        clock.wait_for_waiters(2)
    assert ([0], [0, 0]) == (a.starts, b.starts)


def test_trigger_for_gives_a_typed_handle(clock: ManualClock) -> None:
    """host.trigger_for(J).trigger() triggers J."""
    job = TimedJob(clock, INFINITE, delay=INFINITE)
    with JobHost([job], clock=clock) as host:
        handle = host.trigger_for(TimedJob)
        assert handle.trigger()
        clock.wait_for_waiters(1)
    assert [0] == job.starts


def test_stop_cancels_the_token_and_a_cooperative_job_is_canceled(clock: ManualClock) -> None:
    """stop() cancels the running job's token; raise_if_cancelled gives Executing, Canceled."""
    started = threading.Event()

    def body(token: CancellationToken) -> None:
        started.set()
        token.wait()
        token.raise_if_cancelled()

    job = TimedJob(clock, minutes(5), body=body)
    host = JobHost([job], clock=clock)
    recorder = Recorder(host)
    host.start()
    assert started.wait(5)
    assert host.stop(timeout=5)
    assert ["JobExecuting", "JobCanceled"] == recorder.kinds()


def test_job_returning_after_cancel_is_executed(clock: ManualClock) -> None:
    """A job that returns normally after its token was cancelled counts as Executed."""
    started = threading.Event()

    def body(token: CancellationToken) -> None:
        started.set()
        token.wait()

    job = TimedJob(clock, minutes(5), body=body)
    host = JobHost([job], clock=clock)
    recorder = Recorder(host)
    host.start()
    assert started.wait(5)
    host.stop(timeout=5)
    assert ["JobExecuting", "JobExecuted"] == recorder.kinds()


def test_start_and_stop_notifications(clock: ManualClock) -> None:
    """Each job publishes Starting, Started at start and Stopping, Stopped at stop."""
    job = TimedJob(clock, minutes(5), delay=INFINITE)
    host = JobHost([job], clock=clock)
    seen: list[str] = []
    host.subscribe(JobNotification, lambda n: seen.append(type(n).__name__))
    host.start()
    clock.wait_for_waiters(1)
    host.stop()
    assert ["JobStarting", "JobStarted", "JobStopping", "JobStopped"] == seen


@pytest.mark.parametrize("gate_open", [True, False], ids=["runs", "ignored"])
def test_a_job_due_at_once_publishes_started_before_its_first_run(
    clock: ManualClock, gate_open: bool
) -> None:
    """delay=0: the first run (or ignored run) comes after JobStarted, never before it."""
    job = TimedJob(clock, minutes(5), delay=timedelta(0))
    seen: list[str] = []
    for _ in range(20):
        seen.clear()
        host = JobHost([job], clock=clock, runtime_ready=lambda: gate_open)
        host.subscribe(JobNotification, lambda n: seen.append(type(n).__name__))
        host.start()
        clock.wait_for_waiters(1)
        host.stop()
        run = ["JobExecuting", "JobExecuted" if gate_open else "JobIgnored"]
        assert ["JobStarting", "JobStarted", *run, "JobStopping", "JobStopped"] == seen


def test_stop_from_a_started_handler_lets_the_held_thread_end(clock: ManualClock) -> None:
    """A JobStarted handler that stops the host: the job's thread (held until JobStarted is
    published) is let go and ends without a run. (stop() inside start() returns False at once:
    the sequence goes on after the handler.)"""
    job = TimedJob(clock, minutes(5), delay=timedelta(0))
    host = JobHost([job], clock=clock)
    results: list[bool] = []
    host.subscribe(JobStarted, lambda _n: results.append(host.stop(timeout=5)))
    started = time.monotonic()
    host.start()
    assert host.stop(timeout=5)
    assert time.monotonic() - started < 4
    assert ([False], []) == (results, job.starts)


def test_stop_with_uncooperative_job_returns_false_in_about_timeout(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """stop(timeout) never hangs: an uncooperative job makes it return False after timeout,
    and a warning names the job."""
    started, release = threading.Event(), threading.Event()

    def body(_token: CancellationToken) -> None:
        started.set()
        release.wait(30)

    host = JobHost([TimedJob(clock, minutes(5), body=body)], clock=clock).start()
    assert started.wait(5)
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="recurjobs"):
        result = host.stop(timeout=0.3)
    took = time.monotonic() - began
    release.set()
    assert result is False
    assert 0.25 <= took < 3.0
    assert ["TimedJob did not stop before the stop() deadline"] == [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
    ]


def test_start_and_stop_twice_are_safe_and_restart_is_refused(clock: ManualClock) -> None:
    """start() twice returns the host, stop() twice is harmless, start() after stop() raises."""
    host = JobHost([TimedJob(clock, minutes(5), delay=INFINITE)], clock=clock)
    assert host is host.start()
    assert host is host.start()
    clock.wait_for_waiters(1)
    assert (True, True) == (host.stop(), host.stop())
    with pytest.raises(RuntimeError, match="stopped"):
        host.start()


def test_add_after_start_starts_the_job(clock: ManualClock) -> None:
    """A job added to a running host gets its own thread at once."""
    with JobHost([], clock=clock) as host:
        job = TimedJob(clock, minutes(5))
        host.add(job)
        walk_to(clock, 5)
    assert [0, 5] == job.starts


def test_duck_typed_job_runs_with_defaults(clock: ManualClock) -> None:
    """Any object with period and run(token) is accepted; missing attributes take defaults."""
    starts: list[float] = []

    class Duck:
        period = minutes(10)

        def run(self, token: CancellationToken) -> None:
            starts.append(clock.monotonic() / 60)

    with JobHost([Duck()], clock=clock):
        walk_to(clock, 14)
    assert [3, 13] == starts


def test_atexit_stops_a_started_host() -> None:
    """A started host is stopped by the interpreter's exit hooks (Stopping, Stopped seen)."""
    script = textwrap.dedent(
        """
        from datetime import timedelta
        from recurjobs import JobHost, JobStopped, RecurringJob
        class J(RecurringJob):
            def run(self, token):
                pass
        host = JobHost([J(timedelta(hours=1))])
        host.subscribe(JobStopped, lambda n: print("stopped", flush=True))
        host.start()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert "stopped\n" == out.stdout


def test_subscription_cancel_and_context_manager(clock: ManualClock) -> None:
    """A cancelled subscription, or one whose with-block ended, receives nothing more."""
    host = JobHost([TimedJob(clock, minutes(5))], clock=clock)
    seen: list[object] = []
    with host.subscribe(JobNotification, seen.append):
        pass
    host.subscribe(JobNotification, seen.append).cancel()
    kept: list[object] = []
    host.subscribe(JobNotification, kept.append)
    with host:
        walk_to(clock, 5)
    assert [] == seen
    assert kept  # the same notifications did reach a live subscription


def test_status_reports_each_job(clock: ManualClock) -> None:
    """status() gives name, kind, period, next run, last start, outcome and counters."""
    job = TimedJob(clock, minutes(5))
    with JobHost([job], clock=clock) as host:
        walk_to(clock, 7)
        (record,) = host.status()
    start = clock.now() - minutes(7)
    assert ("TimedJob", "recurring", minutes(5)) == (record.name, record.kind, record.period)
    assert (start + minutes(10), start + minutes(5)) == (record.next_run, record.last_start)
    assert ("executed", 2, 0, False) == (
        record.last_outcome, record.runs, record.failures, record.running
    )


def test_token_wait_follows_the_host_clock(clock: ManualClock) -> None:
    """CancellationToken.wait sleeps on the host's clock, so a ManualClock drives it."""
    token = CancellationToken(clock)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(token.wait(timedelta(minutes=1))))
    waiter.start()
    clock.wait_for_waiters(1)
    clock.advance(59)
    assert 1 == clock.waiters()
    clock.advance(1)
    waiter.join(5)
    assert [False] == result


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: TimedJob(ManualClock(), "5 min"), TypeError, "period"),  # type: ignore[arg-type]
        (lambda: TimedJob(ManualClock(), timedelta(seconds=-5)), ValueError, "period"),
        (lambda: TimedJob(ManualClock(), minutes(1), delay=-minutes(1)), ValueError, "delay"),
        (lambda: JobHost([], server_role="single"), TypeError, "server_role"),  # type: ignore[arg-type]
        (lambda: JobHost([], runtime_ready=True), TypeError, "runtime_ready"),  # type: ignore[arg-type]
        (lambda: JobHost([], main_dom=3), TypeError, "main_dom"),  # type: ignore[arg-type]
        (lambda: JobHost([], clock=object()), TypeError, "clock"),  # type: ignore[arg-type]
        (lambda: JobHost("jobs"), TypeError, "jobs"),
        (lambda: JobHost([object()]), TypeError, "run"),
        (lambda: JobHost([TimedJob]), TypeError, "instance"),
        (lambda: JobHost([]).stop(timeout=-1), ValueError, "timeout"),
        (lambda: JobHost([]).trigger(TimedJob, "reset"), TypeError, "strategy"),  # type: ignore[arg-type]
        (lambda: JobHost([]).trigger(TimedJob, next_delay=5), TypeError, "next_delay"),  # type: ignore[arg-type]
        (lambda: JobHost([]).subscribe(int, print), TypeError, "kind"),  # type: ignore[type-var]
        (lambda: CancellationToken().wait("1"), TypeError, "timeout"),  # type: ignore[arg-type]
        (lambda: Signal().connect(3), TypeError, "fn"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_rejected_at_the_call(call: object, error: type, name: str) -> None:
    """Bad arguments raise TypeError or ValueError naming the parameter, at the call."""
    with pytest.raises(error, match=name):
        call()  # type: ignore[operator]


def test_period_setter_fires_once_per_change_and_not_after_close(clock: ManualClock) -> None:
    """period fires period_changed once per new value, not for the same value or after close."""
    job = TimedJob(clock, minutes(5))
    fired: list[object] = []
    job.period_changed.connect(fired.append)
    job.period = minutes(5)
    job.period = minutes(6)
    job.period = INFINITE
    job.close()
    job.period = minutes(7)
    assert [job, job] == fired
    assert minutes(7) == job.period


def test_job_is_closed_once_after_its_thread_ended(clock: ManualClock) -> None:
    """The host calls close() exactly once, after the job's thread has ended."""
    closes: list[bool] = []

    class Closing(TimedJob):
        def close(self) -> None:
            closes.append(threading.current_thread().name.startswith("recurjobs:"))
            super().close()

    host = JobHost([Closing(clock, minutes(5), delay=INFINITE)], clock=clock).start()
    clock.wait_for_waiters(1)
    host.stop()
    host.stop()
    assert 1 == len(closes)


def test_trigger_with_a_closed_gate_returns_false(clock: ManualClock) -> None:
    """A trigger delivered while the runtime or the job's role gate is closed returns False at
    once and leaves nothing queued: the job runs only for the trigger after the gate opened."""
    ready = [False]
    job = TimedJob(clock, minutes(5), delay=INFINITE)
    role_job = TimedJob(
        clock, minutes(5), delay=INFINITE, server_roles=[recurjobs.ServerRole.SUBSCRIBER]
    )
    host = JobHost([job], clock=clock, runtime_ready=lambda: ready[0])
    role_host = JobHost([role_job], clock=clock)
    seen = [Recorder(host), Recorder(role_host)]
    with host, role_host:
        clock.wait_for_waiters(2)
        began = time.monotonic()
        results = [host.trigger(job), role_host.trigger(role_job)]
        took = time.monotonic() - began
        clock.advance(minutes(60))  # a refused trigger left nothing queued to be ignored later
        clock.wait_for_waiters(2)
        before_open = [r.kinds() for r in seen]
        ready[0] = True
        results.append(host.trigger(job))
        clock.wait_for_waiters(2)
    assert ([False, False, True], [60], []) == (results, job.starts, role_job.starts)
    assert ([[], []], True) == (before_open, took < 1.0)  # at once: a generous bound


def test_trigger_by_name_explains_what_to_pass(clock: ManualClock) -> None:
    """trigger("Name") is a TypeError asking for the class or instance (or trigger_distributed)."""
    with JobHost([TimedJob(clock, minutes(5), delay=INFINITE)], clock=clock) as host:
        with pytest.raises(TypeError, match="job class or instance") as info:
            host.trigger("TimedJob")  # type: ignore[arg-type]
    assert "trigger_distributed" in str(info.value)


def test_duration_errors_mention_infinite_only_where_allowed() -> None:
    """A negative duration's message suggests INFINITE only when INFINITE is accepted."""
    from recurjobs._validate import duration

    with pytest.raises(ValueError) as allowed:
        duration(timedelta(seconds=-5), "period")
    with pytest.raises(ValueError) as refused:
        duration(timedelta(seconds=-5), "period", infinite=False)
    assert ("INFINITE" in str(allowed.value), "INFINITE" in str(refused.value)) == (True, False)


def test_one_info_line_per_finished_run(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Each finished run logs one INFO line naming job, outcome and duration; ignored is DEBUG."""
    outcomes = iter(["ok", "fail", "cancel"])
    release = threading.Event()

    def body(token: CancellationToken) -> None:
        what = next(outcomes)
        if what == "fail":
            raise RuntimeError("boom")
        if what == "cancel":
            release.set()
            token.wait()
            token.raise_if_cancelled()

    job = TimedJob(clock, minutes(5), body=body)
    gated = TimedJob(clock, minutes(5), server_roles=[recurjobs.ServerRole.SUBSCRIBER])
    with caplog.at_level(logging.DEBUG, logger="recurjobs"):
        with JobHost([job, gated], clock=clock) as host:
            walk_to(clock, 5, waiters=2)
            clock.advance(minutes(5))
            assert release.wait(5)
            host.stop(timeout=5)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    runs = [m for m in info if "TimedJob" in m]
    assert 3 == len(runs)
    for message, outcome in zip(runs, ["executed", "failed", "canceled"], strict=True):
        assert outcome in message and " s" in message
