"""Reused threads for distributed runs.

A run used to get a thread of its own. Starting one costs the poller about 0.1-0.3 ms (the OS
thread, then waiting until it first runs), so a host claiming a hundred rows at a period
boundary started its last run tens of milliseconds after its first. Here a thread that ended a
run parks for :data:`IDLE_S` and takes the next run handed to it: handing over is an
``Event.set()``. A thread that stays idle that long ends, so a host whose runs are rare keeps no
threads; :meth:`RunThreads.close` (at ``stop()``) ends the idle ones at once.

What a job sees of the reuse: each run executes in a fresh :mod:`contextvars` context, as in a
new thread, and its thread is named ``recurjobs-run-<job name>`` while it runs; but
``threading.local`` values set by one run are still there for the next run on the same thread
(as in every thread-pool executor). docs/decisions.md has the reasoning.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable

from recurjobs._guard import log_quietly

__all__ = ["IDLE_S", "RunThreads"]

logger = logging.getLogger("recurjobs.sql")

IDLE_S = 120.0
"""How long a thread waits for its next run before it ends (real seconds: a pooled thread is
not part of the schedule, so it does not wait on the host's clock)."""

_Task = tuple[str, Callable[[], None]]


class _Worker:
    __slots__ = ("task", "thread", "wake")

    def __init__(self, task: _Task, target: Callable[[_Worker], None]) -> None:
        self.task: _Task | None = task
        self.wake = threading.Event()
        self.thread = threading.Thread(target=target, args=(self,), name=task[0], daemon=True)


class RunThreads:
    """Threads that run one task at a time and are reused for the next one."""

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self._idle_s = idle_s
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # the most recently parked last: reused first
        self._closed = False

    def submit(self, name: str, task: Callable[[], None]) -> threading.Thread:
        """Run ``task`` on a parked thread (renamed ``name``) or on a new one; return the
        thread. Raises :class:`RuntimeError` when a new thread cannot start (the process is out
        of threads) or the pool is closed; ``task`` then never runs."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the run threads are closed")
            if self._idle:
                worker = self._idle.pop()
                worker.task = (name, task)
                worker.thread.name = name
                worker.wake.set()
                return worker.thread
        worker = _Worker((name, task), self._loop)
        worker.thread.start()
        return worker.thread

    def idle(self) -> int:
        """How many threads are parked waiting for a run."""
        with self._lock:
            return len(self._idle)

    def close(self, timeout: float | None = 0.0) -> bool:
        """No more tasks: parked threads end now, busy ones after their task. Waits up to
        ``timeout`` for the parked ones; True when they have ended."""
        with self._lock:
            self._closed = True
            parked, self._idle = self._idle, []
        for worker in parked:
            worker.wake.set()
        for worker in parked:
            if worker.thread is not threading.current_thread():
                worker.thread.join(timeout)
        return not any(w.thread.is_alive() for w in parked)

    def _loop(self, worker: _Worker) -> None:
        task = worker.task
        while task is not None:
            try:
                contextvars.Context().run(task[1])
            except BaseException as exc:  # the task is written never to raise; if it does,
                # this thread is not reused
                log_quietly(logging.ERROR, "a run thread's task raised", exc_info=exc, on=logger)
                return
            task = self._park(worker)

    def _park(self, worker: _Worker) -> _Task | None:
        """Wait for the next task; None when the pool closed or the wait timed out."""
        with self._lock:
            worker.task = None
            if self._closed:
                return None
            worker.wake.clear()
            worker.thread.name = "recurjobs-run-idle"
            self._idle.append(worker)
        worker.wake.wait(self._idle_s)
        with self._lock:
            task = worker.task
            if task is None and worker in self._idle:
                self._idle.remove(worker)  # timed out (or closed: already removed)
            return task
