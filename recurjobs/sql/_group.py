"""Group commit: calls made by many threads at once, run together as one batch.

When a hundred runs end together, each of their threads hands its row back with a fenced
finish. Run one by one, every finish takes a pooled connection (opening new ones past the
pool's size) and a transaction of its own, and the poller queues behind them for a connection.
:class:`Grouped` lets them share: the first caller runs its own request at once; callers that
arrive while a batch is in flight wait, and the next batch takes all of them (up to
``limit``), run by the first of them. A lone caller waits for nothing, a crowd takes one
connection and one transaction per batch.

Each request gets its own answer (or the batch's exception). The batch function must run the
requests so that each is judged on its own (one guarded statement per request, in one
transaction): grouping changes how many transactions there are, never what a request decides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Grouped"]

K = TypeVar("K")
R = TypeVar("R")


class _Slot(Generic[K, R]):
    __slots__ = ("done", "error", "item", "lead", "value")

    def __init__(self, item: K) -> None:
        self.item = item
        self.done = threading.Event()
        self.lead = False
        self.value: R | None = None
        self.error: BaseException | None = None


class Grouped(Generic[K, R]):
    """Runs ``batch(items) -> answers`` (one answer per item, in order) for concurrent callers
    of :meth:`call`, one batch at a time, each batch holding every request waiting."""

    def __init__(self, batch: Callable[[Sequence[K]], Sequence[R]], *, limit: int = 200) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self._batch = batch
        self._limit = limit
        self._lock = threading.Lock()
        self._waiting: list[_Slot[K, R]] = []
        self._busy = False

    def call(self, item: K) -> R:
        """The answer to ``item``, run in the next batch (at once when none is in flight)."""
        slot: _Slot[K, R] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.done.wait()
            if not slot.lead:
                return _answer(slot)
        self._lead()
        return _answer(slot)

    def _lead(self) -> None:
        """Run one batch of the waiting requests (the caller's own is the first of them), then
        hand the lead to the first request still waiting, if any."""
        with self._lock:
            batch = self._waiting[: self._limit]
            del self._waiting[: self._limit]
        try:
            answers = self._batch([s.item for s in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers to {len(batch)} requests")
            for s, answer in zip(batch, answers, strict=True):
                s.value = answer
        except BaseException as exc:  # every request of the batch gets it
            for s in batch:
                s.error = exc
        finally:
            with self._lock:
                if self._waiting:
                    nxt = self._waiting[0]
                    nxt.lead = True
                    nxt.done.set()
                else:
                    self._busy = False
            for s in batch:
                s.done.set()


def _answer(slot: _Slot[K, R]) -> R:
    if slot.error is not None:
        raise slot.error
    return slot.value  # type: ignore[return-value]
