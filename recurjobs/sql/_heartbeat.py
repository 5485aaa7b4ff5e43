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

from recurjobs._clock import Clock
from recurjobs.sql._leases import Leases
from recurjobs.sql._store import JobStore

__all__ = ["Heartbeat"]

logger = logging.getLogger("recurjobs.sql")


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

    def step(self) -> None:
        """One iteration: the heartbeats and finish retries that are due now."""
        now = self.clock.monotonic()
        self.leases.renew_due(now, self.store)
        self.leases.retry_finishes(now, self.store)

    def _main(self) -> None:
        while not self._closing:
            try:
                self.step()
            except BaseException:  # a bug must not end the renewals
                logger.exception("distributed heartbeat iteration failed")
            if self.closing():
                return
            now = self.clock.monotonic()
            wake = self.leases.next_due()
            self.clock.wait(self._wake, None if wake == float("inf") else max(0.0, wake - now))
            self._wake.clear()
