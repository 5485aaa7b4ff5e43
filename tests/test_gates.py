"""Gates before every run and the ignored back-off (SPEC 4), plus main instance and fork."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from recurjobs import (
    INFINITE,
    IgnoreReason,
    JobHost,
    JobIgnored,
    MainDom,
    ServerRole,
)
from recurjobs._gates import Gates
from recurjobs._roles import DEFAULT_SERVER_ROLES
from recurjobs.testing import ManualClock
from tests.helpers import Recorder, TimedJob, minutes, walk_to

ROOT = Path(__file__).parent.parent


class Switch:
    """A mutable boolean usable as a runtime_ready callable."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def __call__(self) -> bool:
        return self.value


def reasons(recorder: Recorder) -> list[IgnoreReason]:
    return [n.reason for n in recorder.items if isinstance(n, JobIgnored)]


ALL_ROLES = frozenset(ServerRole)


@pytest.mark.parametrize(
    ("ready", "role", "main", "roles", "expected"),
    [
        # Nothing to ask (always ready, a fixed role, no main instance): only the role counts.
        (None, ServerRole.SINGLE, None, DEFAULT_SERVER_ROLES, None),
        (None, ServerRole.SUBSCRIBER, None, DEFAULT_SERVER_ROLES, IgnoreReason.SERVER_ROLE),
        (None, ServerRole.SUBSCRIBER, None, ALL_ROLES, None),
        (None, ServerRole.UNKNOWN, None, frozenset(), IgnoreReason.SERVER_ROLE),
        # A source to ask: each gate in order.
        (
            lambda: False,
            ServerRole.SINGLE,
            None,
            DEFAULT_SERVER_ROLES,
            IgnoreReason.RUNTIME_NOT_READY,
        ),
        (lambda: True, ServerRole.SINGLE, None, DEFAULT_SERVER_ROLES, None),
        (None, lambda: ServerRole.SUBSCRIBER, None, DEFAULT_SERVER_ROLES, IgnoreReason.SERVER_ROLE),
        (None, lambda: ServerRole.SINGLE, None, DEFAULT_SERVER_ROLES, None),
        (None, ServerRole.SINGLE, False, DEFAULT_SERVER_ROLES, IgnoreReason.NOT_MAIN_DOM),
        (None, ServerRole.SINGLE, True, DEFAULT_SERVER_ROLES, None),
    ],
)
def test_gate_answers(
    ready: Callable[[], bool] | None,
    role: ServerRole | Callable[[], ServerRole],
    main: bool | None,
    roles: frozenset[ServerRole],
    expected: IgnoreReason | None,
) -> None:
    """Gates.check gives the first failing gate for every kind of source, including the
    fixed sources it answers from the role alone."""
    main_dom = None if main is None else _FixedMain(main)
    gates = Gates(runtime_ready=ready, server_role=role, main_dom=main_dom)  # type: ignore[arg-type]
    assert expected == gates.check(roles)


class _FixedMain:
    """Stands for a MainDom that always or never wins the main instance."""

    def __init__(self, wins: bool) -> None:
        self.wins = wins

    def try_acquire(self) -> bool:
        return self.wins


@pytest.mark.parametrize(
    ("ready", "role", "expected"),
    [
        (False, ServerRole.SUBSCRIBER, IgnoreReason.RUNTIME_NOT_READY),
        (True, ServerRole.SUBSCRIBER, IgnoreReason.SERVER_ROLE),
        (True, ServerRole.UNKNOWN, IgnoreReason.SERVER_ROLE),
    ],
)
def test_gates_are_checked_in_order(
    clock: ManualClock, ready: bool, role: ServerRole, expected: IgnoreReason
) -> None:
    """Runtime readiness is checked before the role; the first failing gate is the reason."""
    job = TimedJob(clock, minutes(5))
    host = JobHost([job], clock=clock, runtime_ready=lambda: ready, server_role=role)
    recorder = Recorder(host)
    with host:
        clock.wait_for_waiters(1)
    assert ([expected], ["JobExecuting", "JobIgnored"]) == (reasons(recorder), recorder.kinds())
    assert [] == job.starts


@pytest.mark.parametrize(
    ("role", "runs"),
    [
        (ServerRole.SINGLE, True),
        (ServerRole.SCHEDULING_PUBLISHER, True),
        (ServerRole.SUBSCRIBER, False),
        (ServerRole.UNKNOWN, False),
    ],
)
def test_default_roles(clock: ManualClock, role: ServerRole, runs: bool) -> None:
    """By default a job runs on SINGLE and SCHEDULING_PUBLISHER only."""
    job = TimedJob(clock, minutes(5))
    with JobHost([job], clock=clock, server_role=role):
        clock.wait_for_waiters(1)
    assert runs == bool(job.starts)


def test_job_may_list_every_role(clock: ManualClock) -> None:
    """A job whose server_roles lists every role runs even on SUBSCRIBER and UNKNOWN."""
    jobs = [TimedJob(clock, minutes(5), server_roles=list(ServerRole)) for _ in range(2)]
    with JobHost(jobs[:1], clock=clock, server_role=ServerRole.SUBSCRIBER):
        clock.wait_for_waiters(1)
    with JobHost(jobs[1:], clock=clock, server_role=ServerRole.UNKNOWN):
        clock.wait_for_waiters(1)
    assert [[0], [0]] == [j.starts for j in jobs]


def test_role_callable_is_re_read_and_change_runs_at_next_check(clock: ManualClock) -> None:
    """A role that changes from SUBSCRIBER to SINGLE runs the job at the next check."""
    role = [ServerRole.SUBSCRIBER]
    job = TimedJob(clock, minutes(5), ignored_delay=minutes(1))
    with JobHost([job], clock=clock, server_role=lambda: role[0]):
        walk_to(clock, 7)
        role[0] = ServerRole.SINGLE
        walk_to(clock, 12)
    assert [10] == job.starts


def test_ignored_run_is_logged_at_debug_naming_job_and_reason(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An ignored run logs one DEBUG line with the job and the reason."""
    caplog.set_level(logging.DEBUG, logger="recurjobs")
    with JobHost([TimedJob(clock, minutes(5))], clock=clock, runtime_ready=lambda: False):
        clock.wait_for_waiters(1)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert ["TimedJob ignored: RUNTIME_NOT_READY"] == lines


def test_zero_period_with_failing_gate_ignores_once_a_minute(clock: ManualClock) -> None:
    """Period 0, a failing gate and a 1 min ignored_delay give exactly 60 ignores an hour."""
    job = TimedJob(clock, timedelta(0), ignored_delay=minutes(1))
    host = JobHost([job], clock=clock, runtime_ready=lambda: False)
    recorder = Recorder(host)
    with host:
        walk_to(clock, 59.5, step=0.5)
    assert 60 == len(reasons(recorder))


@pytest.mark.parametrize(
    ("period", "ignored", "expected"),
    [
        (5, 1, 3),  # re-checks every max(5, 1) = 5 min: at 0, 5, 10
        (1, 5, 3),  # re-checks every max(1, 5) = 5 min
        (5, 0, 3),  # no back-off: every period
    ],
)
def test_back_off_counts_as_the_run(
    clock: ManualClock, period: float, ignored: float, expected: int
) -> None:
    """A gated job re-checks every max(period, ignored_delay)."""
    job = TimedJob(clock, minutes(period), ignored_delay=minutes(ignored))
    host = JobHost([job], clock=clock, runtime_ready=lambda: False)
    recorder = Recorder(host)
    with host:
        walk_to(clock, 12)
    assert expected == len(reasons(recorder))


def test_infinite_back_off_sleeps_until_a_finite_value(clock: ManualClock) -> None:
    """ignored_delay=INFINITE sleeps until changed; the change ends an overdue back-off."""
    ready = Switch(False)
    job = TimedJob(clock, minutes(1), ignored_delay=INFINITE)
    host = JobHost([job], clock=clock, runtime_ready=ready)
    recorder = Recorder(host)
    with host:
        walk_to(clock, 60, step=5)
        assert 1 == len(reasons(recorder))
        ready.value = True
        job.ignored_delay = minutes(10)
        clock.wait_for_waiters(1)
    assert [60] == job.starts


def test_ignored_delay_change_recomputes_from_the_back_off_start(clock: ManualClock) -> None:
    """A shorter ignored_delay during a back-off ends it at start + new value."""
    ready = Switch(False)
    job = TimedJob(clock, minutes(1), ignored_delay=minutes(30))
    with JobHost([job], clock=clock, runtime_ready=ready):
        walk_to(clock, 5)
        ready.value = True
        job.ignored_delay = minutes(10)
        walk_to(clock, 11)
    assert [10, 11] == job.starts


def test_shutdown_during_back_off_is_not_canceled(clock: ManualClock) -> None:
    """Stopping a host while a job backs off ends it without a JobCanceled."""
    host = JobHost(
        [TimedJob(clock, minutes(5), ignored_delay=INFINITE)], clock=clock,
        runtime_ready=lambda: False,
    )  # fmt: skip
    recorder = Recorder(host)
    host.start()
    clock.wait_for_waiters(1)
    assert host.stop(timeout=5)
    assert ["JobExecuting", "JobIgnored"] == recorder.kinds()


def test_gate_callable_that_raises_counts_as_not_ready(clock: ManualClock) -> None:
    """A runtime_ready callable that raises ignores the run; the thread lives on."""

    def broken() -> bool:
        raise OSError("probe failed")

    job = TimedJob(clock, minutes(5), ignored_delay=timedelta(0))
    host = JobHost([job], clock=clock, runtime_ready=broken)
    recorder = Recorder(host)
    with host:
        walk_to(clock, 5)
    assert [IgnoreReason.RUNTIME_NOT_READY] * 2 == reasons(recorder)


class Ambiguous:
    """A value whose truth cannot be told, like a numpy array."""

    def __bool__(self) -> bool:
        raise ValueError("the truth value is ambiguous")


def test_gate_answer_whose_truth_raises_counts_as_not_ready(clock: ManualClock) -> None:
    """runtime_ready returning a value whose bool() raises ignores the run; the thread lives
    on, and a trigger is refused instead of raising on the caller's thread."""
    job = TimedJob(clock, minutes(5), ignored_delay=timedelta(0))
    host = JobHost([job], clock=clock, runtime_ready=Ambiguous)  # type: ignore[arg-type]
    recorder = Recorder(host)
    with host:
        walk_to(clock, 5)
        assert not host.trigger(job)
        assert host.status()[0].alive
    assert [IgnoreReason.RUNTIME_NOT_READY] * 2 == reasons(recorder)
    assert [] == job.starts


@pytest.mark.parametrize("ignored_delay", [minutes(30), INFINITE], ids=["30-min", "infinite"])
def test_trigger_accepted_during_a_back_off_runs_at_once(
    clock: ManualClock, ignored_delay: timedelta
) -> None:
    """The gate opens during a back-off and a trigger is accepted: the run happens at once,
    not when the back-off would have ended (never, for INFINITE)."""
    ready = Switch(False)
    job = TimedJob(clock, minutes(60), ignored_delay=ignored_delay)
    host = JobHost([job], clock=clock, runtime_ready=ready)
    recorder = Recorder(host)
    with host:
        walk_to(clock, 5)
        assert 1 == len(reasons(recorder))
        ready.value = True
        assert host.trigger(job)
        clock.wait_for_waiters(1)
    assert [5] == job.starts


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("runtime_ready", lambda _x: True),
        ("server_role", ServerRole),  # the enum class is callable, with an argument
        ("server_role", lambda _x: ServerRole.SINGLE),
    ],
)
def test_gate_callable_that_needs_arguments_is_a_type_error(name: str, value: object) -> None:
    """A gate callable that cannot be called without arguments fails at the call, naming it."""
    with pytest.raises(TypeError, match=f"{name} must be a callable.*no arguments"):
        JobHost([], **{name: value})  # type: ignore[arg-type]


def test_hosts_in_one_process_share_the_main_instance(clock: ManualClock, tmp_path: Path) -> None:
    """Two hosts with the same key in one process both run: one acquisition is shared."""
    jobs = [TimedJob(clock, minutes(5)) for _ in range(2)]
    hosts = [
        JobHost([j], clock=clock, main_dom=MainDom("app", directory=str(tmp_path))) for j in jobs
    ]
    for host in hosts:
        host.start()
    clock.wait_for_waiters(2)
    for host in hosts:
        host.stop()
    assert [[0], [0]] == [j.starts for j in jobs]


def test_not_main_instance_is_ignored(clock: ManualClock, tmp_path: Path) -> None:
    """A process that is not the main instance ignores runs with NOT_MAIN_DOM."""
    holder = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "maindom_worker.py"), str(tmp_path), "app", "poll"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert "main" == holder.stdout.readline().strip()
        host = JobHost(
            [TimedJob(clock, minutes(5))], clock=clock,
            main_dom=MainDom("app", directory=str(tmp_path)),
        )  # fmt: skip
        recorder = Recorder(host)
        with host:
            clock.wait_for_waiters(1)
    finally:
        holder.kill()
        holder.wait()
    assert [IgnoreReason.NOT_MAIN_DOM] == reasons(recorder)


def test_unwritable_lock_directory_fails_start(tmp_path: Path) -> None:
    """start() reports a lock directory that cannot be used as a clear RuntimeError."""
    (tmp_path / "file").write_text("")
    host = JobHost([], main_dom=MainDom("k", directory=str(tmp_path / "file" / "sub")))
    with pytest.raises(RuntimeError, match="not writable"):
        host.start()


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
def test_one_of_three_processes_runs_and_another_takes_over_after_kill(tmp_path: Path) -> None:
    """Three processes share a key: exactly one runs its jobs; kill -9 it and another takes over."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "gate_worker.py"), str(tmp_path), "app"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(3)
    ]
    try:
        first = _next_runner(procs, timeout=20)
        time.sleep(1.0)  # let the others check (and fail) several times
        assert [] == [p.pid for p in procs if p is not first and _has_line(p)]
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        second = _next_runner([p for p in procs if p is not first], timeout=20)
        assert second is not first
    finally:
        for p in procs:
            p.kill()
            p.wait()


_lines: dict[int, list[str]] = {}


def _reader(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        _lines.setdefault(proc.pid, []).append(line.strip())


def _has_line(proc: subprocess.Popen[str]) -> bool:
    return bool(_lines.get(proc.pid))


def _next_runner(procs: list[subprocess.Popen[str]], timeout: float) -> subprocess.Popen[str]:
    for p in procs:
        if p.pid not in _lines:
            _lines[p.pid] = []
            threading.Thread(target=_reader, args=(p,), daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in procs if _has_line(p)]
        if found:
            assert 1 == len(found)
            return found[0]
        time.sleep(0.02)
    raise AssertionError("no process ran its jobs in time")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_sees_the_host_as_not_running(clock: ManualClock, tmp_path: Path) -> None:
    """After fork the child's host is not running, can start afresh, and is not main."""
    main_dom = MainDom("app", directory=str(tmp_path))
    job = TimedJob(clock, INFINITE, delay=INFINITE)
    host = JobHost([job], clock=clock, main_dom=main_dom).start()
    clock.wait_for_waiters(1)
    assert main_dom.try_acquire()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            report = [host.running, main_dom.is_main, main_dom.try_acquire()]
            host.start()
            report.append(host.running)
            report.append(host.stop(timeout=5))
            os.write(write, repr(report).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    assert host.running
    assert main_dom.is_main
    host.stop()
    assert "[False, False, False, True, True]" == child


class _ListRolesJob:
    """A duck-typed job whose server_roles is a list the test changes in place."""

    period = minutes(5)
    delay = timedelta(0)
    ignored_delay = minutes(1)

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.server_roles = [ServerRole.SUBSCRIBER]
        self.starts: list[float] = []

    def run(self, token: object) -> None:
        self.starts.append(round(self.clock.monotonic() / 60, 6))


def test_roles_list_changed_in_place_is_seen_at_the_next_check(clock: ManualClock) -> None:
    """A mutable server_roles is checked again at every run (only an immutable value's check
    is kept), so appending SINGLE in place lets the job run at the next check."""
    job = _ListRolesJob(clock)
    with JobHost([job], clock=clock, server_role=ServerRole.SINGLE):
        walk_to(clock, 7)
        job.server_roles.append(ServerRole.SINGLE)
        walk_to(clock, 12)
    assert [10] == job.starts


def test_roles_replaced_by_a_new_frozenset_are_seen_at_the_next_check(clock: ManualClock) -> None:
    """The kept check of an immutable server_roles lasts only while the attribute holds that
    very object: assigning another frozenset takes effect at the next check."""
    job = TimedJob(clock, minutes(5), ignored_delay=minutes(1))
    job.server_roles = frozenset({ServerRole.SUBSCRIBER})
    with JobHost([job], clock=clock, server_role=ServerRole.SINGLE):
        walk_to(clock, 7)
        job.server_roles = frozenset({ServerRole.SINGLE})
        walk_to(clock, 12)
    assert [10] == job.starts


@pytest.mark.parametrize(
    ("period", "ignored", "expected"), [(5, 30, 30), (60, 10, 60)], ids=["back-off", "period"]
)
def test_status_during_a_back_off_shows_when_the_next_run_comes(
    clock: ManualClock, period: int, ignored: int, expected: int
) -> None:
    """While an ignored run backs off, next_run is the end of the back-off (or the next tick,
    if later), not the ignored run's past plan."""
    job = TimedJob(clock, minutes(period), ignored_delay=minutes(ignored))
    with JobHost([job], clock=clock, runtime_ready=lambda: False) as host:
        clock.wait_for_waiters(1)
        clock.advance(minutes(1))
        clock.wait_for_waiters(1)
        status = host.status()[0]
    assert "ignored" == status.last_outcome
    assert clock.now() + minutes(expected - 1) == status.next_run
