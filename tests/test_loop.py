"""The recurring loop on a ManualClock: timing, triggers, period changes (SPEC 3)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from recurjobs import INFINITE, CancellationToken, JobExecuting, JobHost, NextExecution
from recurjobs.testing import ManualClock
from tests.helpers import MIN, Recorder, TimedJob, minutes, step_to, walk_to


def test_five_minute_period_runs_at_0_5_10(clock: ManualClock) -> None:
    """A 5 min job with no delay runs at 0, 5 and 10 minutes."""
    job = TimedJob(clock, minutes(5))
    with JobHost([job], clock=clock):
        walk_to(clock, 12)
    assert [0, 5, 10] == job.starts


def test_default_delay_is_three_minutes(clock: ManualClock) -> None:
    """Without a delay the first run comes three minutes after start."""

    class Plain(TimedJob):
        pass

    job = Plain(clock, minutes(10))
    del job.delay  # fall back to the class default
    with JobHost([job], clock=clock):
        walk_to(clock, 14)
    assert [3, 13] == job.starts


def test_trigger_runs_at_once(clock: ManualClock) -> None:
    """A trigger starts a run without any time passing."""
    job = TimedJob(clock, minutes(60), delay=minutes(30))
    with JobHost([job], clock=clock) as host:
        step_to(clock, 7)
        assert host.trigger(TimedJob)
        clock.wait_for_waiters(1)
    assert [7] == job.starts


@pytest.mark.parametrize(
    ("strategy", "next_delay", "run_minutes", "expected"),
    [
        pytest.param(NextExecution.NONE, None, 0, [0, 20, 60, 120], id="none"),
        pytest.param(NextExecution.NONE, None, 50, [0, 20, 120], id="none-long-run"),
        pytest.param(NextExecution.REPLACE, None, 0, [0, 20, 120], id="replace"),
        pytest.param(NextExecution.RESET, None, 0, [0, 20, 80], id="reset"),
        pytest.param(NextExecution.NONE, minutes(10), 0, [0, 20, 30, 90], id="next-delay"),
    ],
)
def test_trigger_strategies_on_a_60_minute_period(
    clock: ManualClock,
    strategy: NextExecution,
    next_delay: timedelta | None,
    run_minutes: float,
    expected: list[float],
) -> None:
    """A trigger at +20 min on a 60 min period gives the next runs SPEC's table promises."""

    def body(_token: CancellationToken) -> None:
        if len(job.starts) == 2:
            clock.advance(minutes(run_minutes))

    job = TimedJob(clock, minutes(60), body=body)
    with JobHost([job], clock=clock) as host:
        step_to(clock, 20)
        assert host.trigger(job, strategy, next_delay=next_delay)
        walk_to(clock, 125)
    assert expected == job.starts


def test_trigger_during_initial_delay_with_next_delay(clock: ManualClock) -> None:
    """A trigger during a 30 min delay with next_delay=5 min runs at 0, 5 and 65."""
    job = TimedJob(clock, minutes(60), delay=minutes(30))
    with JobHost([job], clock=clock) as host:
        clock.wait_for_waiters(1)
        assert host.trigger(TimedJob, next_delay=minutes(5))
        walk_to(clock, 70)
    assert [0, 5, 65] == job.starts


def test_infinite_delay_runs_only_on_trigger_then_every_period(clock: ManualClock) -> None:
    """An INFINITE delay waits for the first trigger, then the period takes over."""
    job = TimedJob(clock, minutes(10), delay=INFINITE)
    with JobHost([job], clock=clock) as host:
        walk_to(clock, 30)
        assert [] == job.starts
        assert host.trigger(TimedJob)
        walk_to(clock, 55)
    assert [30, 40, 50] == job.starts


def test_infinite_period_waits_for_triggers_only(clock: ManualClock) -> None:
    """An INFINITE period runs once after the delay and then only when triggered."""
    job = TimedJob(clock, INFINITE)
    with JobHost([job], clock=clock) as host:
        walk_to(clock, 30, step=10)
        host.trigger(TimedJob)
        walk_to(clock, 90, step=10)
    assert [0, 30] == job.starts


def test_period_infinite_to_finite_and_back(clock: ManualClock) -> None:
    """A change from INFINITE to 10 min resumes the schedule; back to INFINITE stops it."""
    job = TimedJob(clock, INFINITE)
    with JobHost([job], clock=clock):
        walk_to(clock, 25)
        job.period = minutes(10)
        walk_to(clock, 45)
        job.period = INFINITE
        walk_to(clock, 90)
    assert [0, 25, 35, 45] == job.starts


def test_period_change_while_waiting_applies_at_once(clock: ManualClock) -> None:
    """Shortening the period while waiting re-plans from the last start at once."""
    job = TimedJob(clock, minutes(60))
    with JobHost([job], clock=clock):
        walk_to(clock, 5)
        job.period = minutes(10)
        walk_to(clock, 35)
    assert [0, 10, 20, 30] == job.starts


def test_period_change_during_the_initial_delay_keeps_the_first_run(clock: ManualClock) -> None:
    """A job thread's first wait comes straight from start()'s plan; a period change during it
    wakes the thread, keeps the first run at the end of the delay and sets the cadence after."""
    job = TimedJob(clock, minutes(60), delay=minutes(30))
    with JobHost([job], clock=clock):
        clock.wait_for_waiters(1)
        walk_to(clock, 10)
        job.period = minutes(10)
        walk_to(clock, 55)
    assert [30, 40, 50] == job.starts


def test_stop_during_the_initial_delay_ends_the_thread_at_once(clock: ManualClock) -> None:
    """stop() while every thread is in its first wait (a day's delay) ends them all without
    the clock moving."""
    jobs = [TimedJob(clock, minutes(5), delay=timedelta(days=1)) for _ in range(20)]
    host = JobHost(jobs, clock=clock)
    host.start()
    clock.wait_for_waiters(20)
    began = time.monotonic()
    assert host.stop(timeout=10)
    took = time.monotonic() - began
    assert all(job.starts == [] for job in jobs)
    assert took < 2.0  # at once: woken, not timed out (a generous bound for a busy machine)


def test_period_change_during_a_run_applies_to_the_next_wait(clock: ManualClock) -> None:
    """A period set while the job runs decides the very next wait."""

    def body(_token: CancellationToken) -> None:
        if len(job.starts) == 1:
            job.period = minutes(5)

    job = TimedJob(clock, minutes(60), body=body)
    with JobHost([job], clock=clock):
        walk_to(clock, 12)
    assert [0, 5, 10] == job.starts


def test_overrun_runs_once_immediately_then_re_anchors(clock: ManualClock) -> None:
    """A run that overruns three ticks is followed by one run at once, then the cadence."""

    def body(_token: CancellationToken) -> None:
        if len(job.starts) == 1:
            clock.advance(minutes(17))

    job = TimedJob(clock, minutes(5), body=body)
    with JobHost([job], clock=clock):
        walk_to(clock, 28)
    assert [0, 17, 22, 27] == job.starts


def test_zero_period_runs_back_to_back(clock: ManualClock) -> None:
    """A zero period starts the next run as soon as the previous one ends."""
    done = threading.Event()

    def body(_token: CancellationToken) -> None:
        clock.advance(1.0)
        if len(job.starts) == 5:
            done.set()
            job.period = INFINITE

    job = TimedJob(clock, timedelta(0), body=body)
    with JobHost([job], clock=clock):
        assert done.wait(5)
        clock.wait_for_waiters(1)
    assert [0.0, 1 / MIN, 2 / MIN, 3 / MIN, 4 / MIN] == pytest.approx(job.starts, abs=1e-5)


def test_exception_does_not_end_the_loop(clock: ManualClock) -> None:
    """A run that raises is published as JobFailed and the schedule goes on."""

    def body(_token: CancellationToken) -> None:
        raise RuntimeError("boom")

    job = TimedJob(clock, minutes(5), body=body)
    host = JobHost([job], clock=clock)
    recorder = Recorder(host)
    with host:
        walk_to(clock, 10)
    assert [0, 5, 10] == job.starts
    assert ["JobExecuting", "JobFailed"] * 3 == recorder.kinds()


def test_two_triggers_during_a_run_give_one_extra_run(clock: ManualClock) -> None:
    """Triggers that arrive while the job runs coalesce into exactly one extra run."""
    running, release = threading.Event(), threading.Event()

    def body(_token: CancellationToken) -> None:
        if len(job.starts) == 1:
            running.set()
            assert release.wait(5)

    job = TimedJob(clock, minutes(60), body=body)
    with JobHost([job], clock=clock) as host:
        assert running.wait(5)
        assert host.trigger(TimedJob)
        assert host.trigger(TimedJob, NextExecution.RESET)
        release.set()
        walk_to(clock, 30, step=10)
    assert [0, 0] == job.starts


def test_handler_that_raises_changes_nothing(clock: ManualClock) -> None:
    """A notification handler's exception is swallowed; runs and other handlers go on."""
    def bad(_n: object) -> None:
        raise ValueError("handler bug")

    job = TimedJob(clock, minutes(5))
    host = JobHost([job], clock=clock)
    host.subscribe(JobExecuting, bad)
    recorder = Recorder(host)
    with host:
        walk_to(clock, 10)
    assert [0, 5, 10] == job.starts
    assert ["JobExecuting", "JobExecuted"] * 3 == recorder.kinds()


def test_trigger_with_next_delay_infinite_waits_for_next_trigger(clock: ManualClock) -> None:
    """next_delay=INFINITE parks the job until the next trigger."""
    job = TimedJob(clock, minutes(10))
    with JobHost([job], clock=clock) as host:
        step_to(clock, 3)
        host.trigger(TimedJob, next_delay=INFINITE)
        walk_to(clock, 40, step=5)
        host.trigger(TimedJob)
        walk_to(clock, 55, step=5)
    assert [0, 3, 40, 50] == job.starts


@pytest.mark.parametrize(
    ("strategy", "trigger_minute", "expected"),
    [
        pytest.param(NextExecution.NONE, 5, [0, 70, 120, 180], id="none"),
        pytest.param(NextExecution.NONE, 62, [0, 70, 120, 180], id="none-after-the-tick"),
        pytest.param(NextExecution.REPLACE, 5, [0, 70, 120, 180], id="replace"),
        pytest.param(NextExecution.RESET, 5, [0, 70, 130], id="reset"),
    ],
)
def test_trigger_during_an_overrun_replaces_the_catch_up_run(
    clock: ManualClock, strategy: NextExecution, trigger_minute: float, expected: list[float]
) -> None:
    """The run at 0 of a 60 min job lasts until 70 and a trigger comes during it: one run at
    70 (the triggered run stands in for the catch-up run), then SPEC's table from T = 60."""
    inside, go = threading.Event(), threading.Event()

    def body(_token: CancellationToken) -> None:
        if len(job.starts) == 1:
            inside.set()
            assert go.wait(5)
            clock.advance(minutes(70 - trigger_minute))

    job = TimedJob(clock, minutes(60), body=body)
    with JobHost([job], clock=clock) as host:
        assert inside.wait(5)
        clock.advance(minutes(trigger_minute))
        assert host.trigger(job, strategy)
        go.set()
        walk_to(clock, 185, step=5)
    assert expected == job.starts


@pytest.mark.parametrize("strategy", list(NextExecution))
def test_period_change_after_a_trigger_counts_from_the_triggered_run(
    clock: ManualClock, strategy: NextExecution
) -> None:
    """A 60 min job triggered at 20, period set to 15 at 25: next run at 20 + 15 = 35."""
    job = TimedJob(clock, minutes(60))
    with JobHost([job], clock=clock) as host:
        step_to(clock, 20)
        assert host.trigger(job, strategy)
        walk_to(clock, 25)
        job.period = minutes(15)
        walk_to(clock, 51)
    assert [0, 20, 35, 50] == job.starts
