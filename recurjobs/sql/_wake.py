"""When the poller should wake besides its cadence: just after the next clock boundary.

Jobs aligned to the clock fall due together at a UTC multiple of their period. A poller that
only polls every ``poll_period`` finds them up to a whole poll period late; waking once right
after the boundary claims them at once. The boundary is read on the host's wall clock and the
database decides what is due, so the wake comes :data:`AFTER` past it, leaving room for a
database clock a little behind; a host whose clock is further off simply finds them at its
next regular poll.

Pure arithmetic on epoch seconds; the poller turns the answer into a wait.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["AFTER", "next_boundary"]

AFTER = 0.005
"""Seconds past the boundary at which the poller wakes."""


def next_boundary(now: float, periods: Iterable[float]) -> float:
    """The first moment after ``now`` (epoch seconds) that is a multiple of one of ``periods``
    (seconds), plus :data:`AFTER`; ``inf`` when there are none."""
    best = math.inf
    for period in periods:
        if period > 0 and math.isfinite(period):
            at = (math.floor((now - AFTER) / period) + 1) * period + AFTER
            best = min(best, at)
    return best
