"""The one guard around user code: nothing a job, handler or property does ends the loop."""

from __future__ import annotations

import ast
import logging
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from recurjobs import (
    INFINITE,
    CancellationToken,
    Cron,
    JobExecuted,
    JobExecuting,
    JobFailed,
    JobHost,
    RecurringJob,
    ServerRole,
    SystemClock,
    TriggerableJob,
)
from recurjobs._guard import call_hook, call_user, in_user_code, run_user
from recurjobs.testing import ManualClock
from tests.helpers import MIN, RaisingFilter, Recorder, TimedJob, minutes, walk_to
from tests.sql.helpers import wait_until


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt])
def test_system_exit_from_run_is_a_failure_and_the_loop_lives(
    clock: ManualClock, kind: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """SystemExit or KeyboardInterrupt raised by run() is logged with its traceback and is
    JobFailed, and the next run happens."""

    def body(_token: CancellationToken) -> None:
        raise kind()

    job = TimedJob(clock, minutes(5), body=body)
    host = JobHost([job], clock=clock)
    recorder = Recorder(host)
    with caplog.at_level(logging.INFO, logger="recurjobs"), host:
        walk_to(clock, 10)
        assert host.trigger(TimedJob)
        walk_to(clock, 11)
    assert [0, 5, 10, 10] == job.starts
    assert ["JobExecuting", "JobFailed"] * 4 == recorder.kinds()
    failed = [n for n in recorder.items if isinstance(n, JobFailed)]
    assert [kind] * 4 == [type(n.exception) for n in failed]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [("TimedJob failed", kind)] * 4 == [
        (r.getMessage(), r.exc_info[0] if r.exc_info else None) for r in errors
    ]


def test_a_logging_filter_that_raises_does_not_end_the_loop(clock: ManualClock) -> None:
    """A filter on the recurjobs logger that raises at a run's log lines (failed or not): the
    job keeps its schedule and its thread lives."""

    def body(_token: CancellationToken) -> None:
        if len(job.starts) == 1:
            raise ValueError("first run fails")

    job = TimedJob(clock, minutes(5), body=body)
    host = JobHost([job], clock=clock)
    broken = RaisingFilter()
    logging.getLogger("recurjobs").addFilter(broken)
    try:
        with host:
            walk_to(clock, 10)
            alive = [s.alive for s in host.status()]
    finally:
        logging.getLogger("recurjobs").removeFilter(broken)
    assert ([0, 5, 10], [True]) == (job.starts, alive)


def test_a_logging_filter_that_raises_at_the_guards_line_keeps_the_last_good_period(
    clock: ManualClock,
) -> None:
    """A job's period property raises while a filter on the recurjobs logger raises too: the
    guard's ERROR line is lost, the last good period is used and the thread lives."""

    class Flaky(TimedJob):
        broken = False

        @property
        def period(self) -> timedelta:
            if self.broken:
                raise RuntimeError("no period now")
            return minutes(5)

        @period.setter
        def period(self, value: timedelta) -> None:
            pass

    job = Flaky(clock, minutes(5))
    host = JobHost([job], clock=clock)
    broken = RaisingFilter()
    try:
        with host:
            walk_to(clock, 5)
            job.broken = True
            logging.getLogger("recurjobs").addFilter(broken)
            walk_to(clock, 15)
            alive = [s.alive for s in host.status()]
    finally:
        logging.getLogger("recurjobs").removeFilter(broken)
    assert ([0, 5, 10, 15], [True]) == (job.starts, alive)


def test_a_logging_filter_that_raises_at_the_gates_line_keeps_the_thread(
    clock: ManualClock,
) -> None:
    """The host's ``server_role`` callable returns something that is no ServerRole while a
    filter on the recurjobs logger raises: the gates' ERROR line is lost, those runs are
    ignored (the role counts as UNKNOWN), and once the callable answers a role again the job
    runs on its schedule; its thread lives."""
    junk = False

    def role() -> ServerRole:  # a role source with a bug: it may return a string
        return "junk" if junk else ServerRole.SINGLE  # type: ignore[return-value]

    job = TimedJob(clock, minutes(5))
    host = JobHost([job], clock=clock, server_role=role)
    broken = RaisingFilter()
    try:
        with host:
            walk_to(clock, 5)
            junk = True
            logging.getLogger("recurjobs").addFilter(broken)
            walk_to(clock, 10)
            junk = False
            walk_to(clock, 20)
            alive = [s.alive for s in host.status()]
    finally:
        logging.getLogger("recurjobs").removeFilter(broken)
    lost = [m for m in broken.seen if "not a ServerRole" in m]
    assert ([0, 5, 15, 20], [True], True) == (job.starts, alive, bool(lost))


def test_a_logging_filter_that_raises_at_the_loops_last_resort_line_ends_only_that_job(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in one job's loop (planted here) while a filter on the recurjobs logger raises:
    the loop's last-resort line is lost, the thread ends as it would anyway, without an
    unhandled exception on the thread, and the host's other job runs on."""
    from recurjobs import _loop

    job, other = TimedJob(clock, minutes(5)), TimedJob(clock, minutes(5))
    run_once = _loop.JobRunner._run_once

    def buggy(runner: _loop.JobRunner, start: float, *, late: float, manual: bool) -> float:
        if runner.job is job and len(job.starts) == 2:
            raise RuntimeError("a bug in the loop")
        return run_once(runner, start, late=late, manual=manual)

    monkeypatch.setattr(_loop.JobRunner, "_run_once", buggy)
    unhandled: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: unhandled.append(args.exc_value))
    broken = RaisingFilter()
    logging.getLogger("recurjobs").addFilter(broken)
    try:
        with JobHost([job, other], clock=clock) as host:
            walk_to(clock, 5, waiters=2)  # both threads parked before each step of the clock
            clock.advance(minutes(5))  # minute 10: the job's loop fails there
            ended = wait_until(lambda: not host.status()[0].alive)
            walk_to(clock, 15)  # the other job, alone now
            alive = [s.alive for s in host.status()]
    finally:
        logging.getLogger("recurjobs").removeFilter(broken)
    crashed = [m for m in broken.seen if "crashed; the job will not run again" in m]
    assert (True, [False, True]) == (ended, alive)
    assert ([0, 5], [0, 5, 10, 15], 1, []) == (job.starts, other.starts, len(crashed), unhandled)


class _BrokenSink:
    """A run sink whose every method raises ``kind``: stands for a bug in the recorder."""

    def __init__(self, kind: type[BaseException]) -> None:
        self.kind = kind
        self.calls = 0

    def recurring(self, job: object, *_facts: object) -> None:
        self.calls += 1
        raise self.kind()

    def claimed(self, job: object, **_facts: object) -> object:
        raise self.kind()

    def ended(self, handle: object, **_facts: object) -> None:
        raise self.kind()


@pytest.mark.parametrize("kind", [RuntimeError, KeyboardInterrupt])
def test_a_sink_that_raises_is_logged_and_the_runs_go_on(
    clock: ManualClock, kind: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the history's sink raises at a run (a bug in the recorder) is logged through
    the guard and the loop keeps its schedule."""
    job = TimedJob(clock, minutes(5))
    host = JobHost([job], clock=clock)
    sink = _BrokenSink(kind)
    host._publisher.sink = sink
    with host:
        walk_to(clock, 10)
    assert [0, 5, 10] == job.starts
    assert 3 == sink.calls
    failures = [r for r in caplog.records if "in the history raised" in r.getMessage()]
    assert 3 == len(failures)
    assert all(r.exc_info and r.exc_info[0] is kind for r in failures)


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt])
def test_system_exit_from_a_handler_is_swallowed(
    clock: ManualClock, kind: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """A handler raising SystemExit or KeyboardInterrupt is logged (each time, with its
    traceback); the handlers after it and the runs go on."""

    def bad(_n: object) -> None:
        raise kind()

    job = TimedJob(clock, minutes(5))
    host = JobHost([job], clock=clock)
    host.subscribe(JobExecuting, bad)
    host.subscribe(JobExecuted, bad)
    recorder = Recorder(host)
    with caplog.at_level(logging.ERROR, logger="recurjobs"), host:
        walk_to(clock, 10)
    assert [0, 5, 10] == job.starts
    assert ["JobExecuting", "JobExecuted"] * 3 == recorder.kinds()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert (6, {kind}) == (len(errors), {r.exc_info[0] for r in errors if r.exc_info})
    assert all(f"raised {kind.__name__}" in r.getMessage() for r in errors)


class Flaky(RecurringJob, TriggerableJob):
    """A job whose duration properties raise once ``broken`` is set."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(minutes(5), delay=timedelta(0), ignored_delay=minutes(1))
        self.clock = clock
        self.broken = False
        self.starts: list[float] = []

    @property  # type: ignore[misc]
    def period(self) -> timedelta | Cron:
        if self.broken:
            raise RuntimeError("period is broken")
        return self._period

    @property
    def server_roles(self) -> frozenset[object]:  # type: ignore[override]
        if self.broken:
            raise SystemExit("server_roles is broken")
        return super().server_roles

    def run(self, token: CancellationToken) -> None:
        self.starts.append(round(self.clock.monotonic() / MIN, 6))
        self.broken = True


def test_property_that_raises_uses_the_last_good_value(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """period and server_roles properties that raise are logged; the last good value is used."""
    job = Flaky(clock)
    with caplog.at_level(logging.ERROR, logger="recurjobs"), JobHost([job], clock=clock) as host:
        walk_to(clock, 10)
        status = host.status()[0]
    assert [0, 5, 10] == job.starts
    assert minutes(5) == status.period
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "period of Flaky (using datetime.timedelta(seconds=300)) raised" in messages
    assert "server_roles of Flaky (using frozenset({" in messages


def test_a_signal_receiver_that_raises_is_logged_and_the_others_run(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A period_changed receiver that raises (SystemExit too) is logged and skipped; the next
    receiver and the loop's own re-plan still happen."""
    seen: list[object] = []

    def bad(_sender: object) -> None:
        raise SystemExit("receiver bug")

    job = TimedJob(clock, minutes(60))
    job.period_changed.connect(bad)
    job.period_changed.connect(seen.append)
    with caplog.at_level(logging.ERROR, logger="recurjobs"), JobHost([job], clock=clock):
        walk_to(clock, 5)
        job.period = minutes(10)
        walk_to(clock, 21)
    assert ([job], [0, 10, 20]) == (seen, job.starts)
    assert "receiver bug" in caplog.text


class BadIgnoredDelay(RecurringJob):
    """A job whose ignored_delay property raises once ``broken`` is set (the runtime is never
    ready, so every run backs off)."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(minutes(1), delay=timedelta(0))
        self.clock = clock
        self.broken = False

    @property  # type: ignore[misc]
    def ignored_delay(self) -> timedelta:
        if self.broken:
            raise RuntimeError("ignored_delay is broken")
        return minutes(10)

    def run(self, token: CancellationToken) -> None:
        pass


def test_an_ignored_delay_property_that_raises_uses_the_last_good_value(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The back-off keeps the last good ignored_delay (10 min) when the property starts to
    raise: the gate is re-checked at 0, 10 and 20, and the error is logged."""
    job = BadIgnoredDelay(clock)
    host = JobHost([job], clock=clock, runtime_ready=lambda: False)
    recorder = Recorder(host)
    with caplog.at_level(logging.ERROR, logger="recurjobs"), host:
        walk_to(clock, 1)
        job.broken = True
        walk_to(clock, 25)
    ignored = [n for n in recorder.items if type(n).__name__ == "JobIgnored"]
    assert 3 == len(ignored)
    assert "ignored_delay is broken" in caplog.text


class BadDelay(RecurringJob):
    """A job whose delay property raises once the host has accepted it."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(minutes(5))
        self.clock = clock
        self.broken = False
        self.starts: list[float] = []

    @property
    def delay(self) -> timedelta:  # type: ignore[override]
        if self.broken:
            raise ValueError("no delay today")
        return timedelta(0)

    def run(self, token: CancellationToken) -> None:
        self.starts.append(self.clock.monotonic() / MIN)


def test_delay_property_that_raises_uses_the_default(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A delay property that raises at start is logged and gives the default delay of three
    minutes."""
    job = BadDelay(clock)
    host = JobHost([job], clock=clock)
    job.broken = True
    with caplog.at_level(logging.ERROR, logger="recurjobs"), host:
        walk_to(clock, 8)
    assert [3, 8] == job.starts
    assert ["no delay today"] == [
        r.exc_info[1].args[0] for r in caplog.records if r.exc_info and r.exc_info[1]
    ]
    assert "delay of BadDelay (using the default) raised ValueError" in caplog.text


class Vanishing:
    """A duck-typed job whose run method is a property that raises after the first run."""

    period = minutes(5)
    delay = timedelta(0)

    def __init__(self) -> None:
        self.runs = 0

    @property
    def run(self) -> object:
        if self.runs:
            raise AttributeError("run is gone")
        return self._run

    def _run(self, _token: CancellationToken) -> None:
        self.runs += 1


def test_a_run_method_that_cannot_be_read_is_a_failed_run(clock: ManualClock) -> None:
    """Reading job.run raises: that run is a JobFailed and the loop goes on."""
    job = Vanishing()
    host = JobHost([job], clock=clock)
    recorder = Recorder(host)
    with host:
        walk_to(clock, 10)
        assert host.status()[0].alive
    assert ["JobExecuting", "JobExecuted"] + ["JobExecuting", "JobFailed"] * 2 == recorder.kinds()


def test_delay_property_that_raises_at_registration_is_logged_not_raised(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """JobHost([job]) with a delay property that raises already: the host is built (the error
    is logged, not raised at the caller) and the job runs after the default delay."""
    job = BadDelay(clock)
    job.broken = True
    with caplog.at_level(logging.ERROR, logger="recurjobs"):
        host = JobHost([job], clock=clock)
    assert "no delay today" in " ".join(r.getMessage() for r in caplog.records)
    with host:
        walk_to(clock, 8)
    assert [3, 8] == job.starts


@pytest.mark.parametrize(
    "period", [timedelta(days=10**6), timedelta.max], ids=["million-days", "max"]
)
def test_huge_period_means_practically_never(period: timedelta) -> None:
    """A period of a million days (or timedelta.max) waits without OverflowError on the real
    clock: a trigger still runs the job and status() works."""
    ran = threading.Semaphore(0)

    def body(_token: CancellationToken) -> None:
        ran.release()

    job = TimedJob(ManualClock(), period, delay=timedelta(0), body=body)
    with JobHost([job]) as host:
        assert ran.acquire(timeout=5)
        assert host.trigger(TimedJob)
        assert ran.acquire(timeout=5)
        assert host.trigger(TimedJob, next_delay=timedelta.max)
        assert ran.acquire(timeout=5)
        status = host.status()[0]
    assert (None, 3) == (status.next_run, status.runs)


class RecordingClock(SystemClock):
    """The real clock, recording every wait's timeout and counting the calls."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []
        self.calls = threading.Semaphore(0)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        self.timeouts.append(timeout)
        self.calls.release()
        return super().wait(event, timeout)


def test_huge_delays_wait_in_bounded_chunks() -> None:
    """Huge delay and ignored_delay values are waited in chunks the real clock accepts."""
    ran = threading.Event()
    job = TimedJob(ManualClock(), minutes(5), delay=timedelta.max, body=lambda _t: ran.set())
    gated = TimedJob(
        ManualClock(), timedelta(0), delay=timedelta(0), ignored_delay=timedelta(days=10**6)
    )
    clock, gated_clock = RecordingClock(), RecordingClock()
    with JobHost([job], clock=clock) as host, JobHost(
        [gated], clock=gated_clock, runtime_ready=lambda: False
    ):
        assert clock.calls.acquire(timeout=5)
        assert gated_clock.calls.acquire(timeout=5)
        assert host.trigger(TimedJob)
        assert ran.wait(5)
    longest = max(t for t in [*clock.timeouts, *gated_clock.timeouts] if t is not None)
    assert longest <= 86400.0


def test_status_with_max_period_does_not_raise(clock: ManualClock) -> None:
    """status() of a job with period timedelta.max gives next_run None instead of raising."""
    job = TimedJob(clock, timedelta.max, delay=timedelta(0))
    with JobHost([job], clock=clock) as host:
        clock.wait_for_waiters(1)
        status = host.status()[0]
    assert (None, 1) == (status.next_run, status.runs)


class BrokenClock(ManualClock):
    """A clock whose wait fails once ``broken`` is set: a fault inside the loop itself."""

    broken = False

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        if self.broken:
            raise RuntimeError("clock failure")
        return super().wait(event, timeout)


def test_dead_job_thread_shows_in_trigger_and_status(caplog: pytest.LogCaptureFixture) -> None:
    """If a job's thread ends anyway, that is logged with the cause, trigger() returns False
    and status() says alive=False."""
    clock = BrokenClock()
    job = TimedJob(clock, minutes(5), delay=INFINITE)
    with caplog.at_level(logging.ERROR, logger="recurjobs"), JobHost([job], clock=clock) as host:
        clock.wait_for_waiters(1)
        assert True is host.status()[0].alive
        clock.broken = True
        assert host.trigger(TimedJob)
        runner_thread = [t for t in threading.enumerate() if t.name == "recurjobs:TimedJob"]
        for thread in runner_thread:
            thread.join(5)
        assert (False, False) == (host.trigger(TimedJob), host.status()[0].alive)
    crashed = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert ["recurring loop of TimedJob crashed; the job will not run again"] == [
        r.getMessage() for r in crashed
    ]
    assert crashed[0].exc_info is not None
    assert "clock failure" == str(crashed[0].exc_info[1])


def test_guard_returns_the_error_or_the_default(caplog: pytest.LogCaptureFixture) -> None:
    """run_user hands back what job code raised; call_user logs it and returns the default."""

    def boom() -> int:
        raise SystemExit(3)

    assert None is run_user(lambda: None)
    assert isinstance(run_user(boom), SystemExit)
    with caplog.at_level(logging.ERROR, logger="recurjobs"):
        assert 7 == call_user("the answer", boom, default=7)
        assert 5 == call_user("the answer", lambda: 5, default=7)
    assert ["the answer raised SystemExit"] == [
        r.getMessage().split(":")[0] for r in caplog.records
    ]


def test_in_user_code_is_true_exactly_inside_a_guarded_call() -> None:
    """in_user_code() (what stop() asks) is True below run_user/call_user, nested too, and
    False outside them, inside call_hook, and on another thread started from user code."""
    seen: dict[str, bool] = {}

    def note(key: str) -> None:
        seen[key] = in_user_code()

    def nested() -> None:
        call_user("inner", note, "nested", default=None)
        note("after nested")

    def spawn() -> None:
        thread = threading.Thread(target=note, args=("other thread",))
        thread.start()
        thread.join()

    note("outside")
    run_user(note, "run_user")
    call_user("outer", note, "call_user", default=None)
    run_user(nested)
    call_hook(lambda: "hook", note, "call_hook")
    run_user(spawn)
    assert {
        "outside": False,
        "run_user": True,
        "call_user": True,
        "nested": True,
        "after nested": True,
        "call_hook": False,
        "other thread": False,
    } == seen
    assert not in_user_code()


def test_token_wait_with_a_huge_timeout_does_not_overflow() -> None:
    """token.wait(timedelta.max) on the real clock waits (in chunks) until cancelled."""
    token = CancellationToken(RecordingClock())
    threading.Timer(0.05, token.cancel).start()
    assert token.wait(timedelta.max) is True


def test_only_the_guard_catches_everything() -> None:
    """Outside recurjobs/_guard.py the core catches broad exceptions only at the two last-resort
    places (a crashed job loop, a failed stop sequence) and at two thread or process boundaries
    named below: user code is guarded in one place."""
    root = Path(__file__).resolve().parent.parent / "recurjobs"
    broad: list[str] = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ExceptHandler):
                continue
            caught = node.type
            if caught is None or (
                isinstance(caught, ast.Name) and caught.id in ("Exception", "BaseException")
            ):
                broad.append(path.name)
    # Besides the guard: the two last-resort places above; the trigger listener's thread, which
    # must outlive a broken request or socket; and the command line's boundary that turns any
    # failure (an app module that raises on import, a factory that fails) into one line.
    expected = ["_guard.py"] * 5 + ["_listener.py"] * 2 + ["_loop.py", "_shutdown.py"]
    assert [*expected, *["cli.py"] * 4] == broad


def test_the_period_is_read_from_whatever_defines_it() -> None:
    """RecurringJob's own period property (read without the guard) follows its setter; a
    subclass's class attribute or property is read instead, the property through the guard."""
    from recurjobs._jobview import JobView

    class Own(RecurringJob):
        def run(self, token: CancellationToken) -> None:
            pass

    class Attribute(Own):
        period = timedelta(minutes=7)

    class Broken(Own):
        @property  # type: ignore[misc]
        def period(self) -> timedelta:
            raise RuntimeError("no period")

    own = Own(timedelta(minutes=1))
    view = JobView(own)
    own.period = timedelta(minutes=2)
    assert timedelta(minutes=2) == view.period()
    assert timedelta(minutes=7) == JobView(Attribute(timedelta(minutes=1))).period()
    assert INFINITE == JobView(Broken(timedelta(minutes=1))).period()


class _AppSignal:
    """A signal of the application's own (not recurjobs.Signal): receivers kept and removed
    by identity; ``connect`` raises when ``broken``."""

    def __init__(self, *, broken: bool = False) -> None:
        self.receivers: list[object] = []
        self.broken = broken

    def connect(self, fn: object) -> None:
        if self.broken:
            raise RuntimeError("connect is broken")
        self.receivers.append(fn)

    def disconnect(self, fn: object) -> None:
        self.receivers = [r for r in self.receivers if r is not fn]

    def __repr__(self) -> str:
        return "<app signal>"


class DuckWithSignals:
    """A duck-typed job with signals of its own; the ignored_delay one cannot be connected."""

    period = minutes(5)
    delay = timedelta(0)

    def __init__(self) -> None:
        self.period_changed = _AppSignal()
        self.ignored_delay_changed = _AppSignal(broken=True)
        self.runs = 0

    def run(self, _token: CancellationToken) -> None:
        self.runs += 1


def test_signals_of_the_applications_own_are_connected_guarded_and_disconnected_at_the_end(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The job's own signal gets one receiver while the host runs and loses that very object
    when the job's thread ends; a connect that raises is logged by name and the job runs."""
    job = DuckWithSignals()
    with caplog.at_level(logging.ERROR, logger="recurjobs"), JobHost([job], clock=clock):
        walk_to(clock, 10)
        assert 1 == len(job.period_changed.receivers)
    assert ([], 3) == (job.period_changed.receivers, job.runs)
    assert "<app signal>.connect raised RuntimeError: connect is broken" in caplog.text
