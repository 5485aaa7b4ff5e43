"""Leases: the claims this host holds, renewed, watched, and handed back.

A claim is held from the moment it is won until its finish lands (or the fence refuses it):
while the job runs, and afterwards for as long as a failed finish is pending. The heartbeat
thread (``_heartbeat``) calls :meth:`Leases.renew_due` and :meth:`Leases.retry_finishes`; a
watchdog thread, ``recurjobs-lease``, exists while runs do: it does no I/O, so a heartbeat
stuck on a dead database cannot keep it from cancelling a run whose claim may expire
unrenewed.

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
from recurjobs._guard import log_quietly
from recurjobs._notifications import DistributedJobLeaseLost, Publisher
from recurjobs.sql._runs import Run, finish_once, first_line
from recurjobs.sql._store import JobStore

__all__ = ["Leases"]

logger = logging.getLogger("recurjobs.sql")

_FIRST_RETRY = 0.1  # seconds before the first retry of a failed finish; doubles up to interval


class Leases:
    """The claims this host holds, by job name: running jobs and pending finishes."""

    def __init__(self, *, store: JobStore, clock: Clock, publisher: Publisher, interval: float):
        self.store = store
        self.clock = clock
        self.publisher = publisher
        self.interval = interval
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._wake = threading.Event()
        self._watch: threading.Thread | None = None
        self.on_change: list[threading.Event] = []
        """Events set when the heartbeat thread has work earlier than it planned (its wake-up)."""
        # When the heartbeat thread and the watchdog next wake up by themselves (monotonic), as
        # they planned it last: a change that needs nothing earlier does not wake them, so a
        # hundred runs starting or ending together do not wake both threads a hundred times.
        self._beat_planned = math.inf
        self._watch_planned = math.inf

    # ------------------------------------------------------------------ registry
    def add(self, run: Run, sent: float) -> None:
        """Register a run whose claim was sent at monotonic ``sent``; watch it from now on."""
        run.deadline = self._deadline(run, sent)
        run.next_beat = sent + self.interval
        with self._lock:
            self._runs[run.claim.name] = run
            if self._watch is None:
                self._watch_planned = math.inf
                self._watch = threading.Thread(
                    target=self._watchdog, name="recurjobs-lease", daemon=True
                )
                self._watch.start()
            beat = run.next_beat < self._beat_planned
            watch = run.deadline < self._watch_planned
        if watch:
            self._wake.set()
        if beat:
            self._wake_heartbeat()

    def ended(self, run: Run, settled: bool) -> None:
        """The run's thread is ending; forget the claim if its finish ``settled``, else keep it
        (renewed) with its finish pending."""
        with self._lock:
            if settled:
                if self._runs.get(run.claim.name) is run:
                    del self._runs[run.claim.name]
                beat = False
            else:
                run.pending = True
                run.next_finish = self.clock.monotonic() + _FIRST_RETRY
                beat = run.next_finish < self._beat_planned
            # The watchdog ends once no run is live; it need not hear of anything else.
            watch = not any(not r.ended for r in self._runs.values())
        if watch:
            self._wake.set()
        if beat:
            self._wake_heartbeat()

    def get(self, name: str) -> Run | None:
        """The claim held for ``name`` (running or finishing), if any."""
        with self._lock:
            return self._runs.get(name)

    def all(self) -> list[Run]:
        """Every claim held (lost runs and pending finishes included)."""
        with self._lock:
            return list(self._runs.values())

    def running(self) -> list[Run]:
        """The runs whose job is still executing (their threads occupy a slot)."""
        return [r for r in self.all() if not r.ended]

    def pending(self) -> list[Run]:
        """The runs that ended but whose finish has not landed yet."""
        return [r for r in self.all() if r.pending]

    def watchdog(self) -> threading.Thread | None:
        """The watchdog thread while it exists."""
        with self._lock:
            return self._watch

    def cancel_all(self) -> None:
        """Cancel the token of every run in progress (shutdown)."""
        for run in self.all():
            run.token.cancel()
        self._changed()

    def next_due(self) -> float:
        """When the heartbeat thread has work next (monotonic; ``inf``: nothing held). The
        heartbeat thread calls it just before it waits: the answer is when it plans to wake up
        by itself."""
        with self._lock:
            runs = list(self._runs.values())
            beats = [r.next_beat for r in runs if _renewed(r)]
            finishes = [r.next_finish for r in runs if r.pending]
            due = min([*beats, *finishes], default=math.inf)
            self._beat_planned = due
        return due

    def _deadline(self, run: Run, sent: float) -> float:
        return sent + run.claim.lease.total_seconds() - self.interval

    def _changed(self) -> None:
        self._wake.set()
        self._wake_heartbeat()

    def _wake_heartbeat(self) -> None:
        for event in self.on_change:
            event.set()

    # ---------------------------------------------------------------- renewing
    def renew_due(self, now: float, store: JobStore | None = None) -> None:
        """Send the heartbeats that are due at monotonic ``now`` (heartbeat thread)."""
        store = store if store is not None else self.store
        for run in [r for r in self.all() if _renewed(r) and r.next_beat <= now]:
            sent = self.clock.monotonic()
            try:
                renewed = store.heartbeat(run.claim)
            except Exception as exc:
                log_quietly(
                    logging.WARNING,
                    "renewing the claim of %s on %s failed: %s",
                    run.claim.name,
                    store.url,
                    first_line(exc, store.engine),
                    on=logger,
                )
                run.next_beat = self.clock.monotonic() + self.interval
                continue
            if not renewed:
                if run.pending:
                    self._settle(run)  # someone else holds the row now: nothing to hand back
                elif not run.ended:  # else the claim is gone because the run just ended
                    self.lose(run, "its claim was taken over by another host")
                continue
            with self._lock:  # a later deadline: the watchdog need not wake up for it
                run.deadline = self._deadline(run, sent)
                run.next_beat = sent + self.interval

    def retry_finishes(self, now: float | None = None, store: JobStore | None = None) -> None:
        """Retry the pending finishes that are due at monotonic ``now`` (None: all of them)."""
        store = store if store is not None else self.store
        for run in self.pending():
            if now is not None and run.next_finish > now:
                continue
            if finish_once(store, run):
                self._settle(run)
            else:
                backoff = min(self.interval, _FIRST_RETRY * 2 ** min(run.finish_failures, 20))
                run.next_finish = self.clock.monotonic() + backoff

    def _settle(self, run: Run) -> None:
        with self._lock:
            run.pending = False
            if self._runs.get(run.claim.name) is run:
                del self._runs[run.claim.name]
        self._changed()

    def lose(self, run: Run, why: str) -> None:
        """The claim is (or may be) gone: cancel the run and say so, once."""
        with self._lock:
            if run.lost or run.ended:
                return
            run.lost = True
            run.stats.lease_losses += 1
        log_quietly(
            logging.WARNING,
            "distributed job %s lost its claim: %s; cancelling it",
            run.claim.name,
            why,
            on=logger,
        )
        run.token.cancel()
        notification = DistributedJobLeaseLost(
            job=run.job, at=self.clock.now(), claim_id=run.claim.claim_id
        )
        self.publisher.publish(notification)

    def _watchdog(self) -> None:
        while True:
            now = self.clock.monotonic()
            with self._lock:
                if not any(not r.ended for r in self._runs.values()):
                    self._watch = None
                    return
                live = [r for r in self._runs.values() if _renewed(r) and not r.ended]
                expired = [r for r in live if r.deadline <= now]
                earliest = min((r.deadline for r in live), default=math.inf)
                self._watch_planned = -math.inf if expired else earliest
            for run in expired:
                self.lose(run, "its claim could not be renewed in time")
            if expired:
                continue
            self.clock.wait(self._wake, None if math.isinf(earliest) else earliest - now)
            self._wake.clear()


def _renewed(run: Run) -> bool:
    """Whether the claim still needs renewing: the run goes on (or its finish is pending), and
    the claim was not given up."""
    if run.lost:
        return False
    return run.pending or not run.ended
