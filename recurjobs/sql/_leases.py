"""Leases: the claims of the runs in progress on this host, renewed and watched.

The poller thread calls :meth:`Leases.renew_due` (heartbeats, database I/O). A watchdog
thread, ``recurjobs-lease``, exists while runs do: it does no I/O, so a poller thread stuck on
a dead database cannot keep it from cancelling a run whose claim may expire unrenewed.

The local deadline of a claim is measured on the host's monotonic clock from the moment the
last successful claim or heartbeat was *sent*: the database stamped it no earlier, so the
claim cannot go stale before ``sent + lease``. The run is cancelled one heartbeat interval
before that, and ``DistributedJobLeaseLost`` is published once.
"""

from __future__ import annotations

import logging
import math
import threading

from recurjobs._clock import Clock
from recurjobs._notifications import DistributedJobLeaseLost, Publisher
from recurjobs.sql._runs import Run
from recurjobs.sql._store import JobStore

__all__ = ["Leases"]

logger = logging.getLogger("recurjobs.sql")


class Leases:
    """The runs in progress, by job name, with their claims' renewal state."""

    def __init__(self, *, store: JobStore, clock: Clock, publisher: Publisher, interval: float):
        self.store = store
        self.clock = clock
        self.publisher = publisher
        self.interval = interval
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._wake = threading.Event()
        self._watch: threading.Thread | None = None

    # ------------------------------------------------------------------ registry
    def add(self, run: Run, sent: float) -> None:
        """Register a run whose claim was sent at monotonic ``sent``; watch it from now on."""
        run.deadline = self._deadline(run, sent)
        run.next_beat = sent + self.interval
        with self._lock:
            self._runs[run.claim.name] = run
            if self._watch is None:
                self._watch = threading.Thread(
                    target=self._watchdog, name="recurjobs-lease", daemon=True
                )
                self._watch.start()
        self._wake.set()

    def remove(self, name: str) -> None:
        """Forget the run of ``name`` (its thread has ended)."""
        with self._lock:
            self._runs.pop(name, None)
        self._wake.set()

    def get(self, name: str) -> Run | None:
        """The run of ``name`` in progress, if any."""
        with self._lock:
            return self._runs.get(name)

    def all(self) -> list[Run]:
        """Every run in progress (lost ones included: their threads still occupy a slot)."""
        with self._lock:
            return list(self._runs.values())

    def watchdog(self) -> threading.Thread | None:
        """The watchdog thread while it exists."""
        with self._lock:
            return self._watch

    def cancel_all(self) -> None:
        """Cancel the token of every run in progress (shutdown)."""
        for run in self.all():
            run.token.cancel()
        self._wake.set()

    def next_beat(self) -> float:
        """When the poller thread should renew next (monotonic; ``inf``: nothing to renew)."""
        return min((r.next_beat for r in self.all() if _watched(r)), default=math.inf)

    def _deadline(self, run: Run, sent: float) -> float:
        return sent + run.claim.lease.total_seconds() - self.interval

    # ---------------------------------------------------------------- renewing
    def renew_due(self, now: float) -> None:
        """Send the heartbeats that are due at monotonic ``now`` (poller thread)."""
        for run in [r for r in self.all() if _watched(r) and r.next_beat <= now]:
            sent = self.clock.monotonic()
            try:
                renewed = self.store.heartbeat(run.claim)
            except Exception as exc:
                logger.warning(
                    "renewing the claim of %s on %s failed: %s", run.claim.name, self.store.url, exc
                )
                run.next_beat = self.clock.monotonic() + self.interval
                continue
            if not renewed:
                if not run.finishing:  # else the claim is gone because the run just ended
                    self.lose(run, "its claim was taken over by another host")
                continue
            with self._lock:
                run.deadline = self._deadline(run, sent)
                run.next_beat = sent + self.interval
            self._wake.set()

    def lose(self, run: Run, why: str) -> None:
        """The claim is (or may be) gone: cancel the run and say so, once."""
        with self._lock:
            if run.lost:
                return
            run.lost = True
            run.stats.lease_losses += 1
        logger.warning("distributed job %s lost its claim: %s; cancelling it", run.claim.name, why)
        run.token.cancel()
        self.publisher.publish(
            DistributedJobLeaseLost(job=run.job, at=self.clock.now(), claim_id=run.claim.claim_id)
        )

    def _watchdog(self) -> None:
        while True:
            now = self.clock.monotonic()
            with self._lock:
                if not self._runs:
                    self._watch = None
                    return
                live = [r for r in self._runs.values() if _watched(r)]
            expired = [r for r in live if r.deadline <= now]
            for run in expired:
                self.lose(run, "its claim could not be renewed in time")
            if expired:
                continue
            earliest = min((r.deadline for r in live), default=math.inf)
            self.clock.wait(self._wake, None if math.isinf(earliest) else earliest - now)
            self._wake.clear()


def _watched(run: Run) -> bool:
    """Whether the run's claim still needs renewing and watching."""
    return not (run.lost or run.finishing)
