"""Pure schedule math: when does a job run next?

Everything here works on plain floats of monotonic seconds (``math.inf`` means never). No
threads, no clock reads, no SQL: the loop in ``_loop.py`` feeds in the moments it observed and
gets back the next plan. The rules are described in docs/concepts.md.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["INFINITE", "NextExecution", "Plan", "after_run", "after_trigger", "initial", "seconds"]

INFINITE = timedelta(milliseconds=-1)
""""Never": as a period, delay, ignored delay or next delay. Equal to .NET's InfiniteTimeSpan."""


class NextExecution(enum.Enum):
    """What a manual trigger does to the automatic schedule after the triggered run."""

    NONE = "none"
    """Keep the schedule; skip the pending tick only if the triggered run ran past it."""
    RESET = "reset"
    """Start the schedule afresh: the next run is one period after the trigger."""
    REPLACE = "replace"
    """The triggered run stands in for the pending tick: the next run is one period after it."""


def seconds(value: timedelta) -> float:
    """Convert a validated duration to seconds, ``INFINITE`` to ``math.inf``."""
    return math.inf if value == INFINITE else value.total_seconds()


@dataclass(frozen=True, slots=True)
class Plan:
    """The schedule of one job.

    ``next`` is the moment of the next automatic run (``inf``: none). ``anchor`` is the planned
    start of the last automatic run, from which the cadence counts (``None``: the schedule has
    not begun, as with an ``INFINITE`` delay). ``fixed`` marks a ``next`` that is a set moment
    (the first delay, a trigger's ``next_delay``, the catch-up run after an overrun) rather than
    ``anchor + period``, so a period change leaves it alone.
    """

    next: float
    anchor: float | None
    fixed: bool

    def with_period(self, period: float) -> Plan:
        """Re-plan a wait after the period changed: ``anchor + period``, fixed moments stay."""
        if self.fixed or self.anchor is None:
            return self
        return Plan(self.anchor + period, self.anchor, False)


def initial(start: float, delay: float) -> Plan:
    """The plan at host start: the first run ``delay`` after ``start``."""
    return Plan(start + delay, None, True)


def _cadence(anchor: float, end: float, period: float) -> Plan:
    """Next run one period after ``anchor``; if the run ended past it, exactly one run now."""
    nxt = anchor + period
    if end > nxt:
        # Missed one or more ticks: one catch-up run at once (never a burst); the run after it
        # counts from the catch-up run's start, which is where the plan re-anchors.
        return Plan(end, anchor, True)
    return Plan(nxt, anchor, False)


def after_run(planned: float, start: float, end: float, period: float) -> Plan:
    """The plan after an automatic run planned at ``planned`` that ran from ``start`` to ``end``.

    The cadence counts from the plan, so wake-up latency never accumulates; a run that started
    a whole period or more late (a re-plan into the past, a back-off) re-anchors at its start.
    """
    anchor = start if start - planned >= period else planned
    return _cadence(anchor, end, period)


def after_trigger(
    plan: Plan,
    *,
    strategy: NextExecution,
    next_delay: float | None,
    triggered_at: float,
    end: float,
    period: float,
) -> Plan:
    """The plan after a triggered run.

    ``plan`` is the plan as it stood when the trigger was taken (its ``next`` is the pending tick
    ``T``), ``triggered_at`` the moment the trigger arrived, ``end`` when the triggered run ended.
    """
    if next_delay is not None:
        if math.isinf(next_delay):
            # Wait for the next trigger, which then starts the schedule afresh.
            return Plan(math.inf, None, True)
        return _at_least(Plan(triggered_at + next_delay, None, True), end)
    if strategy is NextExecution.RESET or (plan.anchor is None and math.isinf(plan.next)):
        # RESET, or the first trigger of a job whose schedule had not begun (INFINITE delay).
        return _cadence(triggered_at, end, period)
    tick = plan.next
    if math.isinf(tick):
        return plan
    if strategy is NextExecution.REPLACE:
        return _cadence(tick, end, period)
    if end > tick:
        # NONE: the triggered run overshot the pending tick, so that tick is skipped.
        return _cadence(tick, end, period)
    return plan


def _at_least(plan: Plan, end: float) -> Plan:
    """A set moment that has already passed becomes "now"."""
    return plan if plan.next >= end else Plan(end, plan.anchor, True)
