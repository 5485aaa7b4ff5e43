"""The reused run threads (``recurjobs.sql._workers``): on their own, then under a poller.

Idle timeouts here are real seconds (a parked thread is not part of any schedule); the waits
are liveness bounds, never a period passing.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from recurjobs import CancellationToken
from recurjobs.sql._workers import RunThreads
from tests.sql.helpers import Job, make_due, wait_until
from tests.sql.test_poller import DELAY, IDLE, PERIOD, Harness, MakeHarness, harness

__all__ = ["harness"]  # the poller fixture, used below

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("_VAR", default="unset")


@pytest.fixture
def pool() -> Iterator[RunThreads]:
    made = RunThreads(idle_s=30.0)
    yield made
    made.close(5.0)


def _recorder() -> tuple[list[tuple[str, int, str]], threading.Event, Callable[[str], None]]:
    seen: list[tuple[str, int, str]] = []
    done = threading.Event()

    def task(label: str) -> None:
        thread = threading.current_thread()
        seen.append((label, thread.ident or 0, thread.name))
        done.set()

    return seen, done, task


def test_a_thread_that_ended_a_task_takes_the_next(pool: RunThreads) -> None:
    """The second task runs on the first task's thread, renamed for it; no thread is started."""
    seen, done, task = _recorder()
    first = pool.submit("recurjobs-run-a", lambda: task("a"))
    assert done.wait(5) and wait_until(lambda: pool.idle() == 1)
    assert "recurjobs-run-idle" == first.name
    done.clear()
    second = pool.submit("recurjobs-run-b", lambda: task("b"))
    assert done.wait(5)
    assert (first, [first.ident, first.ident]) == (second, [s[1] for s in seen])
    assert ["recurjobs-run-a", "recurjobs-run-b"] == [s[2] for s in seen]


def test_tasks_at_once_get_threads_of_their_own(pool: RunThreads) -> None:
    """While a thread is busy, the next task starts a new thread instead of waiting."""
    release, running = threading.Event(), threading.Barrier(3, timeout=5)

    def task() -> None:
        running.wait()
        release.wait(5)

    threads = {pool.submit(f"recurjobs-run-{i}", task) for i in range(2)}
    running.wait()  # both tasks run together
    release.set()
    assert 2 == len(threads)
    assert wait_until(lambda: pool.idle() == 2)


def test_each_task_runs_in_a_fresh_context(pool: RunThreads) -> None:
    """A context variable one task sets is not seen by the next task on the same thread, as
    when every run had a new thread."""
    values: list[str] = []
    done = threading.Event()

    def task(value: str) -> None:
        values.append(_VAR.get())
        _VAR.set(value)
        done.set()

    pool.submit("recurjobs-run-a", lambda: task("first"))
    assert done.wait(5) and wait_until(lambda: pool.idle() == 1)
    done.clear()
    pool.submit("recurjobs-run-a", lambda: task("second"))
    assert done.wait(5)
    assert ["unset", "unset"] == values


def test_an_idle_thread_ends_after_the_idle_time() -> None:
    """A thread without a task for ``idle_s`` ends; the next task gets a new thread."""
    pool = RunThreads(idle_s=0.05)
    _seen, done, task = _recorder()
    first = pool.submit("recurjobs-run-a", lambda: task("a"))
    first.join(5)
    assert (False, 0) == (first.is_alive(), pool.idle())
    second = pool.submit("recurjobs-run-a", lambda: task("b"))
    assert done.wait(5) and second is not first
    pool.close(5.0)


def test_close_ends_parked_threads_and_refuses_tasks(pool: RunThreads) -> None:
    """``close`` ends the parked threads at once; a later submit raises, and its task never
    runs; a busy thread ends after its task instead of parking."""
    release, running = threading.Event(), threading.Event()

    def long_task() -> None:
        running.set()
        release.wait(5)

    busy = pool.submit("recurjobs-run-b", long_task)
    assert running.wait(5)
    seen, done, task = _recorder()
    parked = pool.submit("recurjobs-run-a", lambda: task("a"))
    assert done.wait(5) and wait_until(lambda: pool.idle() == 1)
    assert pool.close(5.0)
    assert not parked.is_alive() and busy.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit("recurjobs-run-c", lambda: task("c"))
    release.set()
    busy.join(5)
    assert (False, ["a"]) == (busy.is_alive(), [s[0] for s in seen])


def test_a_task_that_raises_ends_its_thread_and_the_pool_goes_on(pool: RunThreads) -> None:
    """A task is written never to raise; if one does (anything, ``BaseException`` too), its
    thread logs it and ends rather than being reused, and the next task gets a new thread."""

    def bad() -> None:
        raise SystemExit(3)

    broken = pool.submit("recurjobs-run-bad", bad)
    broken.join(5)
    assert (False, 0) == (broken.is_alive(), pool.idle())
    _seen, done, task = _recorder()
    fresh = pool.submit("recurjobs-run-a", lambda: task("a"))
    assert done.wait(5) and fresh is not broken


# --------------------------------------------------------------- under a poller
def _run_twice(h: Harness, job: Job) -> None:
    h.start()
    make_due(h.store, job.name)
    h.past_delay()
    assert wait_until(lambda: job.runs == 1 and not h.poller.leases.all())
    make_due(h.store, job.name)
    h.clock.wait_for_waiters(IDLE)
    h.clock.advance(DELAY)
    assert wait_until(lambda: job.runs == 2 and not h.poller.leases.all())


def test_consecutive_runs_reuse_a_thread_in_a_fresh_context(harness: MakeHarness) -> None:
    """The second run of a distributed job runs on the first run's thread (named after the
    job while it runs), and does not see a context variable the first run set."""
    seen: list[tuple[int | None, str, str]] = []

    def body(token: CancellationToken) -> None:
        thread = threading.current_thread()
        seen.append((thread.ident, thread.name, _VAR.get()))
        _VAR.set("set by a run")

    job = Job("a", PERIOD, body=body)
    _run_twice(harness(job), job)
    assert seen[0][0] == seen[1][0]
    assert [("recurjobs-run-a", "unset")] * 2 == [s[1:] for s in seen]


def test_hand_back_ends_the_parked_run_threads(harness: MakeHarness) -> None:
    """After the stop sequence no run thread is left: parked ones end at ``hand_back``."""
    threads: list[threading.Thread] = []
    job = Job("a", PERIOD, body=lambda token: threads.append(threading.current_thread()))
    h = harness(job)
    _run_twice(h, job)
    assert (1, True) == (h.poller._threads.idle(), threads[-1].is_alive())
    h.poller.stop_claiming()
    assert h.poller.wait_runs(None)
    assert h.poller.hand_back(None)
    assert [False, False] == [t.is_alive() for t in threads]


def test_stop_from_a_run_does_not_wait_for_itself(harness: MakeHarness) -> None:
    """``wait_runs`` called from a run's own (reused) thread does not wait for that run: it
    returns at once, False (that run has not ended)."""
    results: list[bool] = []
    h: Harness | None = None

    def body(token: CancellationToken) -> None:
        assert h is not None
        h.poller.stop_claiming()
        results.append(h.poller.wait_runs(None))

    job = Job("a", timedelta(seconds=10), body=body)
    h = harness(job)
    h.start()
    make_due(h.store, "a")
    h.past_delay()
    assert wait_until(lambda: bool(results))
    assert [False] == results  # its own run had not ended: not all ended, and no hang
