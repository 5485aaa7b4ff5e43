"""RowWriter: which of this host's job rows must be written, and writing them.

A row is written when its job is new to this host, when the job's schedule (period or
calendar) or ``align_to_clock`` changed since this host last wrote it, or when the table may
not exist yet (before the first successful write). The poller asks at its polls
(:meth:`RowWriter.pending`, one pass over the jobs under its lock, which also notes the
calendar jobs for the poll) and writes when that says so (:meth:`RowWriter.ensure`); a failed
write is logged and left to the poller to try again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import timedelta

from recurjobs._cron import Cron
from recurjobs._guard import log_quietly
from recurjobs.sql._runs import first_line
from recurjobs.sql._store import JobStore

__all__ = ["RowWriter"]

logger = logging.getLogger("recurjobs.sql")


class RowWriter:
    """Keeps the rows of ``jobs`` (the poller's, by name, read under its ``lock``) written."""

    def __init__(
        self, *, store: JobStore, lock: threading.Lock, jobs: Mapping[str, object]
    ) -> None:
        self.store = store
        self._lock = lock
        self._jobs = jobs
        self._ensured: dict[str, tuple[timedelta | Cron, bool]] = {}
        self.schema_ready = False
        """The table was created (or found) by this host: rows can be polled."""
        self.crons: dict[str, Cron] = {}
        """The calendar jobs, as the last :meth:`pending` found them (read under the lock)."""

    def pending(self) -> bool:
        """Whether some row must be written: new job, changed period/alignment, or no table.

        One pass over the jobs (called under the lock, at most once per poll), which also
        notes the calendar (Cron) jobs for the poll.
        """
        ensured = self._ensured
        crons: dict[str, Cron] = {}
        pending = not self.schema_ready
        for name, job in self._jobs.items():
            spec = _spec(job)
            if isinstance(spec[0], Cron):
                crons[name] = spec[0]
            if not pending and ensured.get(name) != spec:
                pending = True
        self.crons = crons
        return pending

    def ensure(self) -> bool:
        """Create the table and write the rows that need it; False (logged) on failure."""
        with self._lock:
            todo = [j for n, j in self._jobs.items() if self._ensured.get(n) != _spec(j)]
        try:
            if not self.schema_ready:
                self.store.create_schema()
                self.schema_ready = True
                self._warm_up()
            self.store.ensure(todo)
        except Exception as exc:
            url, why = self.store.url, first_line(exc, self.store.engine)
            log_quietly(
                logging.WARNING,
                "preparing distributed jobs on %s failed: %s",
                url,
                why,
                on=logger,
            )
            return False
        with self._lock:
            for job in todo:
                self._ensured[getattr(job, "name")] = _spec(job)  # noqa: B009
        return True

    def _warm_up(self) -> None:
        """Have the claim and finish statements compiled now rather than at the first
        boundary, where every host would compile them at once (best effort)."""
        try:
            self.store.warm_up()
        except Exception as exc:
            why = first_line(exc, self.store.engine)
            log_quietly(
                logging.DEBUG,
                "warming up on %s failed: %s",
                self.store.url,
                why,
                on=logger,
            )


def _spec(job: object) -> tuple[timedelta | Cron, bool]:
    """What a job's row holds of it: its schedule and whether it is aligned to the clock."""
    period: timedelta | Cron = getattr(job, "period")  # noqa: B009
    return period, bool(getattr(job, "align_to_clock", False))
