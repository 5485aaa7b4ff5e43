"""Runs in the last 24 hours per job, fast on a large history: settled hours are counted once.

Counting every run of the last day means reading about a day's worth of index entries (with
200 jobs every two minutes, 144,000) on every page load, which alone takes longer than the
page may. Rows only ever gain an outcome after they are written; their ``started_ms`` never
changes. So a whole hour that lies far enough in the past (``SETTLE_MS`` after its end, for
records still queued in a host's history writer) is counted once and remembered; only the two
ragged ends of the window (the part of an hour at the start of the window, the unsettled
last hour or so) are counted on each load, a few thousand index entries. A different set of
job names makes the remembered hours recount.

Failures (``outcome = 'failed'``) are rare and counted live through the
``(outcome, started_ms)`` index, so a run that fails shows up at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
SETTLE_MS = 10 * 60_000

__all__ = ["DAY_MS", "HOUR_MS", "SETTLE_MS", "RunCounter"]

#: ``count(names, start_ms, end_ms)`` -> {job: runs started in [start_ms, end_ms)}.
Count = Callable[[Collection[str], int, int], dict[str, int]]


class RunCounter:
    """Runs per job in the 24 hours before ``now_ms``; remembers settled hours (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: frozenset[str] = frozenset()
        self._hours: dict[int, dict[str, int]] = {}

    def runs(self, names: Collection[str], now_ms: int, count: Count) -> dict[str, int]:
        """{job: runs started in (now - 24 h, now]} for ``names``, by ``count`` queries."""
        start = now_ms - DAY_MS
        first_hour = -(-start // HOUR_MS) * HOUR_MS  # the first whole hour inside the window
        settled_end = (now_ms - SETTLE_MS) // HOUR_MS * HOUR_MS  # hours before this are final
        wanted = frozenset(names)
        with self._lock:
            if wanted != self._names:
                self._names, self._hours = wanted, {}
            for hour in [h for h in self._hours if h < first_hour]:
                del self._hours[hour]
            known = dict(self._hours)
        totals = dict.fromkeys(wanted, 0)
        if not wanted:
            return totals
        if settled_end <= first_hour:  # no whole settled hour: count the window live
            return _add(totals, count(wanted, start, now_ms + 1))
        missing = [h for h in range(first_hour, settled_end, HOUR_MS) if h not in known]
        if missing:  # all of them on the first load, then about one an hour
            for hour in missing:
                known[hour] = count(wanted, hour, hour + HOUR_MS)
            with self._lock:
                if self._names == wanted:
                    self._hours.update({h: known[h] for h in missing})
        for hour in range(first_hour, settled_end, HOUR_MS):
            _add(totals, known[hour])
        _add(totals, count(wanted, start, first_hour))
        return _add(totals, count(wanted, settled_end, now_ms + 1))


def _add(totals: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    for name, value in more.items():
        if name in totals:
            totals[name] += value
    return totals
