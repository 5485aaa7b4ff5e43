"""The heartbeat thread: renews the claims this host holds and retries pending finishes.

It has its own thread, ``recurjobs-heartbeat``, and its own database connection (its own
store), so a heartbeat is never queued behind a claim that waits on a locked row, a poll, or
a finish retry of the run threads. Each iteration: renew the claims whose beat is due, retry
the finishes whose back-off is over, then wait on the host clock until the next of those (a
new claim, an ended run or :meth:`Heartbeat.close` wakes it at once).
"""

from __future__ import annotations

import logging
import threading
import time

from recurjobs._clock import Clock
from recurjobs._guard import log_quietly
from recurjobs.sql._leases import Leases
from recurjobs.sql._store import JobStore

__all__ = ["Heartbeat"]

logger = logging.getLogger("recurjobs.sql")

_FLUSH_PAUSE = 0.1  # real seconds between two rounds of retrying finishes in hand_back()


class Heartbeat:
    """Keeps the claims of ``leases`` alive through ``store`` until closed."""

    def __init__(self, *, leases: Leases, store: JobStore, clock: Clock) -> None:
        self.leases = leases
        self.store = store
        self.clock = clock
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        leases.on_change.append(self._wake)

    def start(self) -> None:
        """Start the ``recurjobs-heartbeat`` daemon thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._main, name="recurjobs-heartbeat", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop renewing: the thread ends after its current step (does not wait)."""
        self._closing = True
        self._wake.set()

    def closing(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closing

    def join(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` real seconds for the thread; True when it has ended."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def hand_back(self, deadline: float | None) -> bool:
        """End the thread, then retry the pending finishes on the calling thread until they
        all settled or ``deadline`` (``time.monotonic()``; None: no limit) passed.

        True when the thread ended and no finish is left pending; a finish still pending is
        logged (its row becomes claimable when its lease runs out).
        """
        self.close()
        if not self.join(_left(deadline)):
            return False  # still in a database call: it owns the finishes until it returns
        while self.leases.pending():
            self.leases.retry_finishes(None, self.store)
            left = _left(deadline)
            if not self.leases.pending() or left == 0.0:
                break
            threading.Event().wait(_FLUSH_PAUSE if left is None else min(_FLUSH_PAUSE, left))
        for run in self.leases.pending():
            log_quietly(
                logging.WARNING,
                "distributed job %s: the row could not be handed back before the stop deadline; "
                "it becomes claimable again when its lease expires",
                run.claim.name,
                on=logger,
            )
        return not self.leases.pending()

    def step(self) -> None:
        """One iteration: the heartbeats and finish retries that are due now."""
        now = self.clock.monotonic()
        self.leases.renew_due(now, self.store)
        self.leases.retry_finishes(now, self.store)

    def _main(self) -> None:
        while not self._closing:
            try:
                self.step()
            except BaseException as exc:  # a bug must not end the renewals
                log_quietly(
                    logging.ERROR, "distributed heartbeat iteration failed", exc_info=exc, on=logger
                )
            if self.closing():
                return
            now = self.clock.monotonic()
            wake = self.leases.next_due()
            self.clock.wait(self._wake, None if wake == float("inf") else max(0.0, wake - now))
            self._wake.clear()


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
