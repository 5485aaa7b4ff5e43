"""The recorder: turns a host's run notifications into records on a bounded queue.

It is the host's run sink (``recurjobs._runsink``): the job threads and the distributed run
threads call it directly with plain values, and it appends a small record; it never formats a
traceback, touches a database or waits. The writer thread
(``sql/_historywriter``) does the rest.

A recurring run is one record at its end, host-clock times: a :data:`Ran` tuple when it raised
nothing (nearly every run), a :class:`Done` with the captured error when it failed. A
distributed run is a :class:`Start` when it is claimed (so a run whose host dies leaves a row)
and an :class:`End`; their times are real monotonic instants that the writer turns into
database-clock times. When the queue is full, records are dropped and counted
(:class:`HistoryQueue`).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from recurjobs._guard import call_user
from recurjobs._runsink import MANUAL, SCHEDULE

__all__ = ["Done", "End", "HistoryQueue", "Ran", "Recorder", "Start"]

ErrorInfo = traceback.TracebackException | str | None


class Done(NamedTuple):
    """A whole run with an error, or a distributed run whose start was dropped (a recurring
    run without error is a :data:`Ran`)."""

    kind: str
    job: str
    claim_id: str | None
    trigger: str
    started: float  # recurring: epoch ms (host clock, unrounded); distributed: time.monotonic()
    ended: float
    outcome: str
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class Start:
    """A distributed run was claimed and begins (``at``: ``time.monotonic()``)."""

    job: str
    claim_id: str
    trigger: str
    at: float


@dataclass(frozen=True, slots=True)
class End:
    """A distributed run ended (``started``/``at``: ``time.monotonic()``)."""

    job: str
    claim_id: str
    trigger: str
    started: float
    at: float
    outcome: str
    error: ErrorInfo


Ran = tuple[str, str, float, float, str]
"""A recurring run that raised nothing: ``(job, trigger, started_ms, ended_ms, outcome)``,
host-clock epoch milliseconds, unrounded. A plain tuple, not a class: the run's thread builds
it with one bytecode, and the writer turns a batch of them into rows without a call per run
(``sql/_history.py``)."""

Record = Done | Start | End | Ran


class HistoryQueue:
    """A bounded FIFO between the run threads and the writer thread.

    :meth:`put` never blocks: when ``capacity`` records wait already (the database is slow or
    away), the record is dropped and counted. ``wake`` is set when the queue goes from empty to
    not empty (or on :meth:`close`), so the writer sleeps until there is work.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.wake = threading.Event()
        self._items: deque[Record] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self.dropped = 0  # since the start
        self._unreported = 0  # since the last take_dropped()

    def put(self, record: Record) -> bool:
        """Append ``record``; False (counted) when the queue is full or closed."""
        with self._lock:
            if self._closed or len(self._items) >= self.capacity:
                self.dropped += 1
                self._unreported += 1
                return False
            was_empty = not self._items
            self._items.append(record)
        if was_empty:
            self.wake.set()
        return True

    def take(self, limit: int) -> list[Record]:
        """Up to ``limit`` records, oldest first (removed from the queue)."""
        with self._lock:  # held briefly: a run thread's put() may be waiting
            items = self._items
            if len(items) <= limit:
                self._items = deque()
            else:
                items = deque(items.popleft() for _ in range(limit))
        return list(items)

    def __len__(self) -> int:
        return len(self._items)

    def take_dropped(self) -> int:
        """How many records were dropped since the last call."""
        with self._lock:
            count, self._unreported = self._unreported, 0
            return count

    def close(self) -> None:
        """Accept nothing more (what is queued stays, for the writer to flush)."""
        with self._lock:
            self._closed = True
        self.wake.set()


@dataclass(slots=True)
class _Claimed:
    """The recorder's handle on a distributed run in progress."""

    name: str
    claim_id: str
    trigger: str
    started: float  # time.monotonic()
    start_queued: bool


class Recorder:
    """The host's :class:`~recurjobs._runsink.RunSink`: queues one record per run.

    ``queue`` is read at each run (None: not recording, e.g. before start); ``skip`` names jobs
    whose runs are not recorded (the pruning job); ``name`` gives a job's name as ``status()``
    shows it. Everything here runs on the run threads: no formatting beyond the record, no
    waiting, no database.
    """

    def __init__(
        self,
        *,
        record_ignored: bool,
        skip: Callable[[object], bool],
        name: Callable[[object], str],
    ) -> None:
        self.queue: HistoryQueue | None = None
        self._record_ignored = record_ignored
        self._skip = skip
        self._name = name
        self._names: dict[int, tuple[object, str]] = {}  # id(job) -> (job, name), a cache

    def recurring(
        self,
        job: object,
        manual: bool,
        started_ms: float,
        ended_ms: float,
        outcome: str,
        error: BaseException | None,
        /,
    ) -> None:
        # Runs on every run thread at every run: kept to one frame (the name cache inlined);
        # the times stay floats here, the writer rounds them.
        queue = self.queue
        if queue is None or (outcome == "ignored" and not self._record_ignored):
            return
        known = self._names.get(id(job))
        name = known[1] if known is not None and known[0] is job else None
        if name is None:  # a skipped job never enters the cache, so a cached one is recorded
            if self._skip(job):
                return
            name = self._job_name(job)
        trigger = MANUAL if manual else SCHEDULE
        if error is None:
            queue.put((name, trigger, started_ms, ended_ms, outcome))
        else:
            info = _capture(error)
            queue.put(Done("recurring", name, None, trigger, started_ms, ended_ms, outcome, info))

    def claimed(self, job: object, *, claim_id: str, manual: bool) -> _Claimed | None:
        queue = self.queue
        if queue is None or self._skip(job):
            return None
        run = _Claimed(
            self._job_name(job), claim_id, MANUAL if manual else SCHEDULE, time.monotonic(), False
        )
        run.start_queued = queue.put(Start(run.name, claim_id, run.trigger, run.started))
        return run

    def ended(self, handle: object, *, outcome: str, error: BaseException | None) -> None:
        queue = self.queue
        if queue is None or not isinstance(handle, _Claimed):
            return
        info = None if error is None else _capture(error)
        now = time.monotonic()
        if handle.start_queued:
            name, claim_id, trigger = handle.name, handle.claim_id, handle.trigger
            queue.put(End(name, claim_id, trigger, handle.started, now, outcome, info))
        else:  # the start was dropped: write the whole run at once, if there is room now
            queue.put(
                Done("distributed", handle.name, handle.claim_id, handle.trigger, handle.started,
                     now, outcome, info)
            )  # fmt: skip

    def _job_name(self, job: object) -> str:
        known = self._names.get(id(job))
        if known is not None and known[0] is job:
            return known[1]
        name = self._name(job)
        self._names[id(job)] = (job, name)
        return name


def _capture(exc: BaseException) -> ErrorInfo:
    """The exception's type, message and stack, without its frames' locals (cheap to keep);
    the source lines are read later, by the writer thread."""
    captured = call_user(
        f"recording the {type(exc).__qualname__} of a run",
        lambda: traceback.TracebackException.from_exception(exc, lookup_lines=False),
        default=None,
    )
    return captured if captured is not None else type(exc).__qualname__  # a broken class
