"""Runs in the last 24 hours per job, fast on a large history: settled buckets are counted once.

Counting every run of the last day means reading a day's worth of index entries (with 200
jobs every two minutes, 144,000) on every page load, which alone takes longer than the page
may. A row's ``started_ms`` never changes after it is written (only its outcome does), so the
day is cut into five-minute buckets: a bucket that ended more than ``SETTLE_MS`` ago (time for
records still queued in a host's history writer) is counted once, by one grouped query, and
remembered. Each load then counts only the two ragged ends of the window (the part of a bucket
at its start, and the unsettled last minutes) in one small query. A different set of job
names makes the remembered buckets recount.

Failures (``outcome = 'failed'``) are counted live through the ``(outcome, started_ms)`` index
(a run's outcome is written when it ends, which may be hours after it started).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence

BUCKET_MS = 5 * 60_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
SETTLE_MS = 2 * 60_000

__all__ = ["BUCKET_MS", "DAY_MS", "HOUR_MS", "SETTLE_MS", "RunCounter"]

#: ``buckets(names, start_ms, end_ms)`` -> {(job, started_ms // BUCKET_MS): runs} for runs of
#: ``names`` started in [start_ms, end_ms) (both multiples of BUCKET_MS).
CountBuckets = Callable[[Collection[str], int, int], dict[tuple[str, int], int]]
#: ``ranges(names, [(start_ms, end_ms), ...])`` -> {job: runs started in any of the ranges}.
CountRanges = Callable[[Collection[str], Sequence[tuple[int, int]]], dict[str, int]]


class RunCounter:
    """Runs per job started in (now - 24 h, now]; remembers settled buckets (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: frozenset[str] = frozenset()
        self._buckets: dict[int, dict[str, int]] = {}
        self._sum: dict[str, int] = {}  # the sum of the remembered buckets

    def runs(
        self,
        names: Collection[str],
        now_ms: int,
        buckets: CountBuckets,
        ranges: CountRanges,
    ) -> dict[str, int]:
        """{job: runs started in (now - 24 h, now]} for ``names``."""
        wanted = frozenset(names)
        if not wanted:
            return {}
        low, high = now_ms - DAY_MS + 1, now_ms + 1  # the window as [low, high)
        first = -(-low // BUCKET_MS)  # the first whole bucket inside the window
        settled = (now_ms - SETTLE_MS) // BUCKET_MS  # buckets before this one are final
        if settled <= first:
            return _add(dict.fromkeys(wanted, 0), ranges(wanted, [(low, high)]))
        with self._lock:
            if wanted != self._names:
                self._names, self._buckets, self._sum = wanted, {}, {}
            for old in [b for b in self._buckets if b < first or b >= settled]:
                _add(self._sum, self._buckets.pop(old), -1)
            missing = [b for b in range(first, settled) if b not in self._buckets]
            if missing:  # all of them at the first load, then about one per five minutes
                start, end = min(missing), max(missing) + 1
                found: dict[int, dict[str, int]] = {b: {} for b in missing}
                for (job, b), count in buckets(wanted, start * BUCKET_MS, end * BUCKET_MS).items():
                    if b in found:
                        found[b][job] = count
                for b, counts in found.items():
                    self._buckets[b] = counts
                    _add(self._sum, counts)
            totals = _add(dict.fromkeys(wanted, 0), self._sum)
        ends = [(low, first * BUCKET_MS), (settled * BUCKET_MS, high)]
        return _add(totals, ranges(wanted, [(a, b) for a, b in ends if a < b]))


def _add(totals: dict[str, int], more: dict[str, int], sign: int = 1) -> dict[str, int]:
    """Add (or, with ``sign=-1``, subtract) ``more`` into ``totals``; return ``totals``."""
    for name, value in more.items():
        totals[name] = totals.get(name, 0) + sign * value
    return totals
