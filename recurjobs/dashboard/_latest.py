"""The latest run of every job, kept up to date from the newest rows instead of re-read.

Finding each job's latest run afresh is one index probe per job name (and one to find each
name), fine for a few jobs and too slow for hundreds on every refresh. Runs only ever appear
with a higher id, and a run's row changes afterwards only while it is open (its outcome is
written when it ends). So after one full read, each load reads just the rows above the highest
id seen (less ``OVERLAP``, for inserts that commit out of id order) and the open latest runs by
id, both through the primary key. A full read is repeated every ``FULL_EVERY_S`` seconds (to
forget pruned rows) and whenever more than ``MAX_NEW`` new rows arrived since the last load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recurjobs.dashboard._records import Run

__all__ = ["LatestRuns"]

FULL_EVERY_S = 300.0
OVERLAP = 100
MAX_NEW = 5000
MAX_OPEN = 500

#: ``full()`` -> (the latest run of every job, the highest id before reading them).
Full = Callable[[], "tuple[dict[str, Run], int]"]
#: ``newer(above_id, ids, limit)`` -> rows with id > above_id or id in ids, at most ``limit``.
Newer = Callable[[int, Sequence[int], int], "list[Run]"]


class LatestRuns:
    """The latest run of each job (by ``started_ms``, then ``id``); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._high: int | None = None
        self._full_at = 0.0

    def get(self, full: Full, newer: Newer) -> dict[str, Run]:
        """The latest runs, refreshed by ``newer`` (or ``full`` when due)."""
        with self._lock:
            if self._high is None or time.monotonic() - self._full_at > FULL_EVERY_S:
                return self._full(full)
            open_ids = [r.id for r in self._runs.values() if r.outcome is None][:MAX_OPEN]
            rows = newer(self._high - OVERLAP, open_ids, MAX_NEW + len(open_ids) + OVERLAP + 1)
            if len(rows) > MAX_NEW + len(open_ids) + OVERLAP:
                return self._full(full)
            for row in rows:
                current = self._runs.get(row.job)
                if (
                    current is None
                    or current.id == row.id
                    or (row.started_ms, row.id) > (current.started_ms, current.id)
                ):
                    self._runs[row.job] = row
                self._high = max(self._high, row.id)
            return dict(self._runs)

    def _full(self, full: Full) -> dict[str, Run]:
        runs, high = full()
        self._runs, self._high, self._full_at = dict(runs), high, time.monotonic()
        return dict(runs)
