"""How a host stops: the stop sequence (the order), its deadline, which thread runs it, and
who waits for it.

:func:`stop_sequence` is the order, written once, over the host's parts (:class:`HostParts`).
:class:`Shutdown` makes sure it runs once, never on a thread it must wait for, and that every
``stop()`` call (first, concurrent or repeated) waits on the same deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recurjobs._guard import call_user, in_user_code, log_quietly

if TYPE_CHECKING:
    from recurjobs._listener import Attachment
    from recurjobs._loop import JobRunner
    from recurjobs._maindom import MainDom

__all__ = ["HostParts", "Shutdown", "stop_sequence"]

logger = logging.getLogger("recurjobs")

# How long past the deadline a caller still waits for the steps after the waiting (resign,
# release, dispose): each is one quick call, bounded itself.
_GRACE = 2.0
# stop(): threads woken together. The stop phase of 10,000 idle jobs took 0.97-0.98 s 16 at a
# time, 0.83 s 64, 0.87-0.92 s 128 and 1.03-1.09 s 256 at a time (`micro_paths.py startstop`;
# woken together, threads fight over the GIL).
_WAKE_BATCH = 64
_BATCH_WAIT = 0.05  # stop(): longest wait for a batch to end before waking the next


@dataclass(frozen=True)
class HostParts:
    """What a host's stop handles, as the host holds them at one moment."""

    runners: list[JobRunner]  # one per recurring job started
    sql: Any  # the distributed side (sql._integration.HostSql), None when not made
    role_service: Any  # a server_role with a life of its own, or None
    forwarding: Attachment | None  # receives forwarded triggers, None when not listening
    main_dom: MainDom | None
    history: Any  # the run history, None when off


class Shutdown:
    """The shared state of one host's stop: the deadline set by the first ``stop()`` call."""

    def __init__(self, timeout: float | None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.ended = False
        self._done = threading.Event()
        self._executor: int | None = None
        self._lock = threading.Lock()
        self._waiting: set[threading.Thread] = set()
        self.closed = threading.Event()  # step 1 is done: no run begins, every token cancelled

    def join(
        self, first: bool, parts: Callable[[], HostParts], starting: Callable[[], bool]
    ) -> bool:
        """One ``stop()`` call, after the host marked itself stopped: the ``first`` call runs
        the sequence, every call waits for it as far as its thread may; True when every thread
        ended. ``parts()`` reads the host's parts (the runners and SQL side under its lock);
        ``starting()`` says whether the caller is inside ``start()``."""
        me = threading.current_thread()
        runners = parts().runners
        # A thread the stop sequence waits for (or one running user code) must not run it.
        on_host_thread = in_user_code() or any(r.owns(me) for r in runners)

        def sequence() -> bool:
            return stop_sequence(self, parts())

        if first and not on_host_thread:
            return self.run(sequence)
        if first:
            self.run_in_thread(sequence)
        if self.runs_here() or starting():
            # A handler of the sequence itself, or of start(): the sequence goes on after it.
            return False
        if on_host_thread:
            self.closed.wait(self.left())  # every token cancelled, the caller's too
            return self.wait_for_threads(lambda: _job_threads(parts()))
        if self.done():
            return _all_ended(parts())
        return self.wait()

    def left(self, until: float | None = None) -> float | None:
        """Seconds until ``until`` (default: the deadline), never negative; None: no limit."""
        end = self.deadline if until is None else until
        return None if end is None else max(0.0, end - time.monotonic())

    def run(self, sequence: Callable[[], bool]) -> bool:
        """Run the stop sequence on this thread; record and return whether everything ended."""
        self._executor = threading.get_ident()
        ended = False
        try:
            ended = sequence()
        except BaseException:  # a bug in recurjobs: callers must still be released
            log_quietly(logging.ERROR, "the stop sequence failed", exc_info=True, on=logger)
        finally:
            self.ended = ended
            self._done.set()
        return ended

    def run_in_thread(self, sequence: Callable[[], bool]) -> None:
        """Run the sequence on a thread of its own (the caller is one it must wait for)."""
        thread = threading.Thread(
            target=self.run, args=(sequence,), name="recurjobs:stop", daemon=True
        )
        thread.start()

    def runs_here(self) -> bool:
        """Whether the calling thread is running the sequence now (a handler calling stop())."""
        return self._executor == threading.get_ident() and not self._done.is_set()

    def done(self) -> bool:
        """Whether the sequence has finished."""
        return self._done.is_set()

    def wait(self) -> bool:
        """Wait for the whole sequence (until the deadline, plus a moment for its last steps)."""
        left = self.left()
        self._done.wait(None if left is None else left + _GRACE)
        return self._done.is_set() and self.ended

    def wait_for_threads(self, threads: Callable[[], list[threading.Thread]]) -> bool:
        """Wait (until the deadline) for ``threads()`` other than this one to end.

        For a ``stop()`` called on a host thread: threads that are themselves waiting here are
        not waited for, so two jobs stopping the host at once never wait for each other.
        """
        me = threading.current_thread()
        with self._lock:
            self._waiting.add(me)
        try:
            while True:
                with self._lock:
                    others = [t for t in threads() if t not in self._waiting and t.is_alive()]
                if not others:
                    return True
                left = self.left()
                if left == 0.0:
                    return False
                others[0].join(0.01 if left is None else min(0.01, left))
        finally:
            with self._lock:
                self._waiting.discard(me)


def _job_threads(parts: HostParts) -> list[threading.Thread]:
    """The recurring jobs' threads and the threads of distributed runs still going."""
    threads = [r.thread for r in parts.runners if r.thread is not None]
    if parts.sql is not None:
        threads += parts.sql.run_threads()
    return threads


def _all_ended(parts: HostParts) -> bool:
    """After the stop sequence: whether every thread has ended by now (no waiting)."""
    ended = all(r.join(0) for r in parts.runners)
    if parts.sql is not None:
        ended = parts.sql.wait_runs(time.monotonic()) and ended
    return ended


def stop_sequence(shutdown: Shutdown, parts: HostParts) -> bool:
    """The stop order, top to bottom; the only place it is written. Returns whether every
    thread ended by ``shutdown.deadline``. ``parts``: the host's, as the sequence began."""
    runners, sql = parts.runners, parts.sql
    # 1. No run begins any more: cancel every token and stop claiming distributed runs.
    for runner in runners:
        runner.close()
    if sql is not None:
        sql.stop_claiming()
    shutdown.closed.set()
    # ... then publish JobStopping and wake each job thread. In batches, each given a
    # moment to end: thousands of threads woken at once fight over the GIL.
    for i in range(0, len(runners), _WAKE_BATCH):
        batch = runners[i : i + _WAKE_BATCH]
        for runner in batch:
            runner.stop()
        until = time.monotonic() + _BATCH_WAIT
        if shutdown.deadline is not None:
            until = min(until, shutdown.deadline)
        for runner in batch:
            runner.join(shutdown.left(until))
    # 2. Wait for the job threads and the distributed runs. Claims and the elected role
    #    stay alive meanwhile, so no other server starts the same work yet.
    ended = True
    for runner in runners:
        if not runner.join(shutdown.left()):
            log_quietly(
                logging.WARNING,
                "%s did not stop before the stop() deadline",
                runner.name,
                on=logger,
            )
            ended = False
    if sql is not None:
        ended = sql.wait_runs(shutdown.deadline) and ended
    # 3. Hand back the claims: flush pending finishes, end the poller and heartbeats.
    if sql is not None:
        ended = sql.hand_back(shutdown.deadline) and ended
    # 4. Resign the elected role, now that the jobs it gates have ended.
    if sql is not None:
        sql.resign()
    service = parts.role_service
    if service is not None:
        call_user("stop() of the server_role service", service.stop, default=None)
        # Its thread resigns on its way out (one bounded touch): give it that much even past
        # the deadline, or the lease stays held until it goes stale.
        left = shutdown.left()
        wait = None if left is None else max(left, _GRACE)
        joined = call_user(
            "join() of the server_role service", service.join, wait, default=False
        )
        ended = bool(joined) and ended
    # 5. Stop listening for forwarded triggers, then release the main-instance lock:
    #    another process may take over now.
    if parts.forwarding is not None:
        parts.forwarding.close()
    if parts.main_dom is not None:
        parts.main_dom.release()
    # 6. Write the run history still queued (every run has ended or been given up on).
    if parts.history is not None:
        ended = parts.history.close(shutdown.deadline) and ended
    # 7. Dispose of the engines recurjobs made.
    if sql is not None:
        sql.dispose()
    return ended
