"""Runs in the last 24 hours per job, fast on a large history: settled buckets are counted once.

Counting every run of the last day means reading a day's worth of index entries (with 200
jobs every two minutes, 144,000) on every page load, which alone takes longer than the page
may. A row's ``started_ms`` never changes after it is written (only its outcome does), so the
day is cut into five-minute buckets: a bucket that ended more than ``SETTLE_MS`` ago is
counted once, by one grouped query, and remembered. Each load then counts only the two ragged
ends of the window (the part of a bucket at its start, and the unsettled last minutes) in one
small query. A different set of job names makes the remembered buckets recount.

A run can be written long after it started (a history write delayed by a database outage,
clocks that differ between hosts), into a bucket already remembered. So the remembered buckets
hold exactly the rows up to one id, ``high``: each load also counts the rows above ``high``
that started in a remembered bucket, through the primary key (only the rows written since
``high``, a few minutes' worth, are read). ``high`` moves up to the highest id a load saw at
least ``SETTLE_MS`` earlier (the rows below it have long committed, even those whose inserts
committed out of id order), and the rows it passes are added to their buckets on the way. At
the first load ``high`` starts ``OVERLAP`` ids below the highest, the allowance for inserts
committing out of id order that :mod:`._latest` makes too.

Failures (``outcome = 'failed'``) are counted live through the ``(outcome, started_ms)`` index
(a run's outcome is written when it ends, which may be hours after it started).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from typing import NamedTuple

BUCKET_MS = 5 * 60_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
SETTLE_MS = 2 * 60_000
#: At the first load, the newest this many ids are treated as possibly not committed yet.
OVERLAP = 100
#: A load's highest id is noted at most this often (the notes wait ``SETTLE_MS`` to be used).
MARK_EVERY_MS = 10_000

__all__ = ["BUCKET_MS", "DAY_MS", "HOUR_MS", "SETTLE_MS", "Late", "RunCounter"]


class Late(NamedTuple):
    """Rows to count by primary key: ``above < id``, started in ``[start_ms, end_ms)``; those
    with ``id <= fold_to`` are counted apart (they join the remembered buckets)."""

    above: int
    fold_to: int
    start_ms: int
    end_ms: int


#: ``buckets(names, start_ms, end_ms, upto_id)`` -> {(job, started_ms // BUCKET_MS): runs} for
#: runs of ``names`` started in [start_ms, end_ms) (multiples of BUCKET_MS) with id <= upto_id.
CountBuckets = Callable[[Collection[str], int, int, int], dict[tuple[str, int], int]]
#: ``ranges(names, [(start_ms, end_ms), ...], late)`` -> ({job: runs started in any of the
#: ranges}, {(job, bucket, id <= late.fold_to): runs of ``late``}) (no late rows for None).
CountRanges = Callable[
    [Collection[str], Sequence[tuple[int, int]], Late | None],
    tuple[dict[str, int], dict[tuple[str, int, bool], int]],
]


class RunCounter:
    """Runs per job started in (now - 24 h, now]; remembers settled buckets (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: frozenset[str] = frozenset()
        self._buckets: dict[int, dict[str, int]] = {}
        self._sum: dict[str, int] = {}  # the sum of the remembered buckets
        self._high: int | None = None  # the remembered buckets hold the rows with id <= this
        self._marks: list[tuple[int, int]] = []  # (now_ms, highest id) seen by earlier loads

    def runs(
        self,
        names: Collection[str],
        now_ms: int,
        top_id: int,
        buckets: CountBuckets,
        ranges: CountRanges,
    ) -> dict[str, int]:
        """{job: runs started in (now - 24 h, now]} for ``names``; ``top_id`` is the highest id
        in the table when this load began."""
        wanted = frozenset(names)
        if not wanted:
            return {}
        low, high = now_ms - DAY_MS + 1, now_ms + 1  # the window as [low, high)
        first = -(-low // BUCKET_MS)  # the first whole bucket inside the window
        settled = (now_ms - SETTLE_MS) // BUCKET_MS  # buckets before this one are remembered
        if settled <= first:
            counts, _ = ranges(wanted, [(low, high)], None)
            return _add(dict.fromkeys(wanted, 0), counts)
        with self._lock:
            # ids only grow: a highest id below ``high`` is a table emptied or made anew.
            if wanted != self._names or self._high is None or top_id < self._high:
                self._names, self._buckets, self._sum = wanted, {}, {}
                self._high, self._marks = max(top_id - OVERLAP, 0), []
            for old in [b for b in self._buckets if b < first or b >= settled]:
                _add(self._sum, self._buckets.pop(old), -1)
            missing = [b for b in range(first, settled) if b not in self._buckets]
            if missing:  # all of them at the first load, then about one per five minutes
                start, end = min(missing), max(missing) + 1
                found: dict[int, dict[str, int]] = {b: {} for b in missing}
                counted = buckets(wanted, start * BUCKET_MS, end * BUCKET_MS, self._high)
                for (job, b), count in counted.items():
                    if b in found:
                        found[b][job] = count
                for b, counts in found.items():
                    self._buckets[b] = counts
                    _add(self._sum, counts)
            totals = _add(dict.fromkeys(wanted, 0), self._sum)
            fold_to = self._fold_to(now_ms, top_id)
            ends = [(low, first * BUCKET_MS), (settled * BUCKET_MS, high)]
            late = Late(self._high, fold_to, first * BUCKET_MS, settled * BUCKET_MS)
            counts, rows = ranges(wanted, [(a, b) for a, b in ends if a < b], late)
            _add(totals, counts)
            for (job, b, folded), count in rows.items():
                if job not in wanted:
                    continue
                totals[job] += count
                if folded:  # b is one of the remembered buckets, as late spans just them
                    bucket = self._buckets.setdefault(b, {})
                    bucket[job] = bucket.get(job, 0) + count
                    self._sum[job] = self._sum.get(job, 0) + count
            self._high = max(self._high, fold_to)
        return totals

    def _fold_to(self, now_ms: int, top_id: int) -> int:
        """Note this load's highest id; return the newest noted at least ``SETTLE_MS`` ago
        (``high`` when none is that old), forgetting the notes before it."""
        assert self._high is not None
        if not self._marks or now_ms - self._marks[-1][0] >= MARK_EVERY_MS:
            self._marks.append((now_ms, top_id))
        old = [i for i, (at, _) in enumerate(self._marks) if at <= now_ms - SETTLE_MS]
        if not old:
            return self._high
        fold_to = self._marks[old[-1]][1]
        del self._marks[: old[-1] + 1]
        return max(self._high, fold_to)


def _add(totals: dict[str, int], more: dict[str, int], sign: int = 1) -> dict[str, int]:
    """Add (or, with ``sign=-1``, subtract) ``more`` into ``totals``; return ``totals``."""
    for name, value in more.items():
        totals[name] = totals.get(name, 0) + sign * value
    return totals
