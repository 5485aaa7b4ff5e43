"""RowView: what this host last read of its distributed jobs' rows, kept between polls.

Two things, both only as fresh as the last read: which jobs are paused (for ``status()``;
claims do not need it, the claim guard itself skips paused rows), and each free calendar
(Cron) row's next fire time with the database's now at the poll that read them. From those
the poller plans its wake-up just after the next fire time (:meth:`RowView.plan_fires`),
``status()`` shows a Cron job's next run, and a Cron job whose row another host made a period
row takes the gap after its next fire time as its lease (``_launch``).

The view shares the poller's lock, so a poll's reading and the poller's own state change in
one step; :meth:`~RowView.plan_fires` and :meth:`~RowView.forget_fire` are called with it held.
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timedelta

from recurjobs._clock import Clock
from recurjobs._cron import Cron
from recurjobs._guard import log_quietly
from recurjobs.sql._rows import Poll, utc
from recurjobs.sql._runs import first_line
from recurjobs.sql._store import JobStore

__all__ = ["RowView"]

logger = logging.getLogger("recurjobs.sql")

# Seconds past a fire time at which the poller wakes for it: the database's now must have
# reached the fire time when the claim's UPDATE runs.
_FIRE_MARGIN = 0.005
# Seconds between two reads of the paused flags for status() (the default poll period).
_PAUSED_READ_INTERVAL = 5.0


class RowView:
    """The paused flags and calendar of this host's jobs, as last read through ``store``.

    ``lock`` is the poller's lock; ``poll_s`` its poll period in seconds.
    """

    def __init__(self, *, store: JobStore, clock: Clock, lock: threading.Lock, poll_s: float):
        self.store = store
        self.clock = clock
        self._lock = lock
        self._poll_s = poll_s
        self._paused: set[str] = set()  # as last read from the rows (read_paused)
        self._paused_read_at = -math.inf
        self._paused_notes = 0  # pauses/resumes noted by this host (see read_paused)
        self._fires: dict[str, int] = {}  # name -> next fire time (ms) at the last poll
        self._db_clock: tuple[int, float] | None = None  # (database now ms, monotonic) then

    # ------------------------------------------------------------------ paused
    def note_paused(self, name: str, paused: bool) -> None:
        """Show a pause or resume made through this host at once (the next poll reads it)."""
        with self._lock:
            self._paused_notes += 1  # a read begun before this note must not undo it
            if paused:
                self._paused.add(name)
            else:
                self._paused.discard(name)

    def read_paused(self, names: list[str]) -> None:
        """Refresh which of this host's jobs are paused, for ``status()`` (claims do not need
        it: the claim guard itself skips paused rows). At most every 5 s, so a fast poll
        does not double its queries. A failure keeps the last view."""
        now = self.clock.monotonic()
        if now - self._paused_read_at < max(self._poll_s, _PAUSED_READ_INTERVAL):
            return
        self._paused_read_at = now
        with self._lock:
            notes = self._paused_notes
        try:
            paused = self.store.paused_names(names)
        except Exception as exc:
            why = first_line(exc, self.store.engine)
            log_quietly(
                logging.DEBUG,
                "reading paused jobs on %s failed: %s",
                self.store.url,
                why,
                on=logger,
            )
            return
        with self._lock:
            if notes == self._paused_notes:  # else a pause/resume landed meanwhile: keep it
                self._paused = paused

    def paused(self, name: str) -> bool:
        """Whether job ``name`` was paused as last read (or noted)."""
        return name in self._paused

    # ---------------------------------------------------------------- calendar
    def plan_fires(self, polled: Poll, read_at: float) -> float:
        """Remember the calendar a poll read (its answer arrived at monotonic ``read_at``) and
        return when to wake for it: just after its next future fire time (``inf``: none).
        Called with the lock held."""
        self._fires = dict(polled.fires_ms)
        if polled.now_ms is None:
            return math.inf
        self._db_clock = (polled.now_ms, read_at)
        ahead = [f for f in polled.fires_ms.values() if f > polled.now_ms]
        if not ahead:
            return math.inf
        return read_at + (min(ahead) - polled.now_ms) / 1000 + _FIRE_MARGIN

    def forget_fire(self, name: str) -> None:
        """Drop job ``name``'s fire time: claimed or lost, the next poll reads the row again.
        Called with the lock held."""
        self._fires.pop(name, None)

    def next_fire_of(self, name: str, cron: Cron) -> datetime:
        """A Cron job's next fire time: as the last poll found its free row (a past time: due,
        claimed at the next chance); else the first one after the database's now, estimated
        from the last poll (the host's clock before any poll)."""
        with self._lock:
            fire = self._fires.get(name)
            db_clock = self._db_clock
        if fire is not None:
            return utc(fire)
        if db_clock is None:
            return cron.next_after(self.clock.now())
        now_ms, read_at = db_clock
        elapsed = timedelta(seconds=max(0.0, self.clock.monotonic() - read_at))
        return cron.next_after(utc(now_ms) + elapsed)
