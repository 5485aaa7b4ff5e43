"""Pausing and resuming recurring jobs in this process (``JobHost.pause``/``resume``)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from recurjobs import (
    CancellationToken,
    IgnoreReason,
    JobExecuted,
    JobExecuting,
    JobHost,
    JobIgnored,
    JobStopping,
)
from recurjobs.testing import ManualClock
from tests.helpers import Recorder, TimedJob, minutes, walk_to


def reasons(recorder: Recorder) -> list[IgnoreReason]:
    return [n.reason for n in recorder.items if isinstance(n, JobIgnored)]


def test_paused_job_ignores_due_runs_and_keeps_its_cadence(clock: ManualClock) -> None:
    """A paused job's ticks are ignored with PAUSED at its own period (no ignored back-off)."""
    job = TimedJob(clock, minutes(5), ignored_delay=minutes(60))
    host = JobHost([job], clock=clock)
    recorder = Recorder(host)
    with host:
        walk_to(clock, 2)
        assert True is host.pause(job)
        walk_to(clock, 12)
    assert [0] == job.starts
    assert [IgnoreReason.PAUSED, IgnoreReason.PAUSED] == reasons(recorder)


def test_resume_runs_at_the_next_scheduled_tick_not_at_once(clock: ManualClock) -> None:
    """Resuming does not trigger a run: the job runs at its next tick after the resume."""
    job = TimedJob(clock, minutes(5))
    with JobHost([job], clock=clock) as host:
        walk_to(clock, 1)
        host.pause(TimedJob)
        walk_to(clock, 7)
        assert True is host.resume(TimedJob)
        walk_to(clock, 9)
        starts_before_tick = list(job.starts)
        walk_to(clock, 11)
    assert ([0], [0, 10]) == (starts_before_tick, job.starts)


def test_pause_before_start_holds_from_the_first_run(clock: ManualClock) -> None:
    """A job paused before start() never runs, and status() shows it paused before and after."""
    job = TimedJob(clock, minutes(5))
    host = JobHost([job], clock=clock)
    assert True is host.pause("TimedJob")
    before = host.status()[0].paused
    with host:
        walk_to(clock, 11)
        during = host.status()[0].paused
    assert (True, True, []) == (before, during, job.starts)


def test_trigger_of_a_paused_job_is_refused(clock: ManualClock) -> None:
    """trigger() returns False while the job is paused and True again once it is resumed."""
    job = TimedJob(clock, minutes(5), delay=minutes(1))
    with JobHost([job], clock=clock) as host:
        clock.wait_for_waiters(1)
        host.pause(job)
        refused = host.trigger(job)
        host.resume(job)
        accepted = host.trigger(job)
        clock.wait_for_waiters(1)
    assert (False, True, [0]) == (refused, accepted, job.starts)


def test_unknown_job_returns_false(clock: ManualClock) -> None:
    """An unregistered name, class or instance is unknown: pause and resume return False."""
    job = TimedJob(clock, minutes(5))
    other = TimedJob(clock, minutes(5))
    host = JobHost([job], clock=clock)
    results = [host.pause("NoSuchJob"), host.resume(other), host.pause(JobHost)]
    assert [False, False, False] == results


def test_pause_after_stop_is_accepted(clock: ManualClock) -> None:
    """After stop() a known job can still be paused and resumed (True), with no effect."""
    job = TimedJob(clock, minutes(5))
    host = JobHost([job], clock=clock)
    host.start()
    host.stop()
    assert (True, True) == (host.pause(job), host.resume(job))


def test_pause_by_name_pauses_every_job_of_that_name(clock: ManualClock) -> None:
    """A name shared by two registered instances pauses both."""
    jobs = [TimedJob(clock, minutes(5), delay=minutes(1)) for _ in range(2)]
    with JobHost(jobs, clock=clock) as host:
        host.pause("TimedJob")
        walk_to(clock, 6, waiters=2)
        paused = [s.paused for s in host.status()]
    assert ([True, True], [[], []]) == (paused, [j.starts for j in jobs])


def test_zero_period_paused_job_does_not_spin(clock: ManualClock) -> None:
    """A paused job with period 0 ticks once a second, not in a tight loop."""
    job = TimedJob(clock, timedelta(0))
    host = JobHost([job], clock=clock)
    recorder = Recorder(host)
    host.pause(job)
    with host:
        walk_to(clock, 1, step=1 / 60)
    assert 61 == len(reasons(recorder))


def test_executing_carries_the_scheduled_time(clock: ManualClock) -> None:
    """JobExecuting.scheduled_at is the planned tick: lateness is at - scheduled_at."""
    job = TimedJob(clock, minutes(5))
    host = JobHost([job], clock=clock)
    recorder = Recorder(host)
    with host:
        clock.wait_for_waiters(1)
        clock.advance(minutes(7))  # the 5 min tick is seen 2 min late
        clock.wait_for_waiters(1)
    executing = [n for n in recorder.items if isinstance(n, JobExecuting)]
    late = [(n.at - n.scheduled_at).total_seconds() for n in executing if n.scheduled_at]
    assert [0.0, 120.0] == late


@pytest.mark.parametrize("bad", [None, 3, 2.5, True, b"TimedJob"])
def test_bad_job_argument_is_a_type_error(clock: ManualClock, bad: object) -> None:
    """pause() names its parameter and the value when it is neither class, instance nor name."""
    host = JobHost([TimedJob(clock, minutes(5))], clock=clock)
    with pytest.raises(TypeError, match="job must be a job class, instance or name"):
        host.pause(bad)


def test_an_empty_job_name_is_a_value_error(clock: ManualClock) -> None:
    """An empty name is a ValueError naming the parameter."""
    host = JobHost([TimedJob(clock, minutes(5))], clock=clock)
    with pytest.raises(ValueError, match="job must be a non-empty name"):
        host.resume("")


def test_a_recurring_job_with_a_long_name_is_paused_by_that_name(clock: ManualClock) -> None:
    """A recurring job's name (as status() shows it) has no length limit: a 250-character name
    pauses it; an unknown name that long is simply unknown."""
    job = TimedJob(clock, minutes(5))
    job.name = "L" * 250  # type: ignore[attr-defined]
    host = JobHost([job], clock=clock)
    assert host.status()[0].name == job.name  # type: ignore[attr-defined]
    assert host.pause("L" * 250)
    assert not host.resume("M" * 250)


def test_a_job_may_pause_itself_from_its_run(clock: ManualClock) -> None:
    """pause() called inside the job's own run returns True without deadlock; later ticks are
    ignored."""
    results: list[bool] = []
    host_box: list[JobHost] = []
    job = TimedJob(clock, minutes(5), body=lambda token: results.append(host_box[0].pause(job)))
    host = JobHost([job], clock=clock)
    host_box.append(host)
    recorder = Recorder(host)
    with host:
        walk_to(clock, 11)
    assert ([0], [True], [IgnoreReason.PAUSED] * 2) == (job.starts, results, reasons(recorder))


def test_pause_from_a_handler_and_stop_at_once_do_not_deadlock(clock: ManualClock) -> None:
    """A JobExecuting handler that pauses the job while another thread stops the host: both
    calls return and the host stops."""
    job = TimedJob(clock, minutes(5))
    host = JobHost([job], clock=clock)
    answers: list[bool] = []
    host.subscribe(JobExecuting, lambda n: answers.append(host.pause(n.job)))
    host.start()
    clock.wait_for_waiters(1)
    stopper = threading.Thread(target=host.stop, args=(10,))
    stopper.start()
    answers.append(host.resume(job))
    stopper.join(30)
    assert (False, [True, True]) == (stopper.is_alive(), answers)


def test_status_table_shows_paused_as_the_next_run(clock: ManualClock) -> None:
    """The status table (flask recurjobs status) says "paused" in the NEXT RUN column."""
    from recurjobs.cli import status_table

    host = JobHost([TimedJob(clock, minutes(5))], clock=clock)
    host.pause("TimedJob")
    line = status_table(host.status()).splitlines()[1].split()
    assert ["TimedJob", "recurring", "5m", "paused"] == line[:4]


def test_pause_and_resume_during_stop_from_the_run_and_from_handlers(clock: ManualClock) -> None:
    """stop() in progress while the job's own run (its token just cancelled by the stop), a
    JobStopping handler (on the stopping thread) and a JobExecuted handler (the run's end)
    call pause() or resume(): no deadlock, every call answers True, stop() returns True."""
    started = threading.Event()
    answers: dict[str, bool] = {}
    box: list[JobHost] = []

    def body(token: CancellationToken) -> None:
        started.set()
        token.wait(20)  # until stop() cancels it
        answers["run"] = box[0].pause(job)

    job = TimedJob(clock, minutes(5), body=body)
    host = JobHost([job], clock=clock)
    box.append(host)
    host.subscribe(JobStopping, lambda n: answers.setdefault("stopping", host.pause(n.job)))
    host.subscribe(JobExecuted, lambda n: answers.setdefault("ended", host.resume(n.job)))
    host.start()
    assert started.wait(10)
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(host.stop(10)))
    stopper.start()
    stopper.join(30)
    assert (False, [True]) == (stopper.is_alive(), stopped)
    assert {"run": True, "stopping": True, "ended": True} == answers
