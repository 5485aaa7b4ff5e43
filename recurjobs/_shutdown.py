"""One stop of one host: its deadline, which thread runs the stop sequence, who waits for it.

The sequence itself (the order) is ``JobHost._stop_sequence``; this module only makes sure it
runs once, never on a thread it must wait for, and that every ``stop()`` call (first,
concurrent or repeated) waits on the same deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Shutdown"]

logger = logging.getLogger("recurjobs")

# How long past the deadline a caller still waits for the steps after the waiting (resign,
# release, dispose): each is one quick call, bounded itself.
_GRACE = 2.0


class Shutdown:
    """The shared state of one host's stop: the deadline set by the first ``stop()`` call."""

    def __init__(self, timeout: float | None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.ended = False
        self._done = threading.Event()
        self._executor: int | None = None
        self._lock = threading.Lock()
        self._waiting: set[threading.Thread] = set()

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
            logger.exception("the stop sequence failed")
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
