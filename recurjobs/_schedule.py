"""Pure schedule math: when does a job run next?

Periods work on plain floats of monotonic seconds (``math.inf`` means never); calendar
schedules (:class:`recurjobs.Cron`) on aware UTC datetimes of the wall clock (``None`` means
never), since fire times are wall-clock instants. No threads, no clock reads, no SQL: the loop
in ``_loop.py`` feeds in the moments it observed and gets back the next plan. The rules are
described in docs/concepts.md and docs/schedules.md.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple

__all__ = [
    "INFINITE",
    "Calendar",
    "NextExecution",
    "Plan",
    "after_run",
    "after_trigger",
    "fire_after_run",
    "fire_after_trigger",
    "first_fire",
    "initial",
    "next_fire",
    "seconds",
]

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


class Plan(NamedTuple):
    """The schedule of one job.

    ``next`` is the moment of the next automatic run (``inf``: none). ``anchor`` is the last
    start a period change counts from: the planned start of the last automatic run, or the
    start of the last triggered run (``None``: the schedule has not begun, as with an
    ``INFINITE`` delay); for a catch-up run, the planned start of the run that overran.
    ``fixed`` marks a ``next`` that is a set moment (the first delay, a trigger's
    ``next_delay``, the catch-up run after an overrun) rather than ``anchor + period``, so a
    period change leaves it alone.

    A named tuple: the loop makes one after every run, and a tuple is built in a fraction of a
    frozen dataclass's time.
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


# A Plan from its three values without the named tuple's Python ``__new__`` (the loop makes
# one after every run, through _cadence).
_plan: Callable[[tuple[float, float | None, bool]], Plan] = partial(tuple.__new__, Plan)


def _cadence(anchor: float, end: float, period: float) -> Plan:
    """Next run one period after ``anchor``; if the run ended past it, exactly one run now."""
    nxt = anchor + period
    if end > nxt:
        # Missed one or more ticks: one catch-up run at once (never a burst); the run after it
        # counts from the catch-up run's start, which is where the plan re-anchors.
        return _plan((end, anchor, True))
    return _plan((nxt, anchor, False))


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
    start: float,
    end: float,
    period: float,
    period_before: float | None = None,
) -> Plan:
    """The plan after a triggered run.

    ``plan`` is the plan as it stood when the trigger was taken (its ``next`` is the pending tick
    ``T``), ``triggered_at`` the moment the trigger arrived, ``start``-``end`` the triggered run
    (it starts after ``triggered_at`` when a run was in progress). A period change after it
    counts from ``start``: it is the last start. ``period_before``: the period when the run
    began, when it differs from ``period`` (changed during the run).
    """
    if next_delay is not None:
        if math.isinf(next_delay):
            # Wait for the next trigger, which then starts the schedule afresh.
            return Plan(math.inf, None, True)
        moment = triggered_at + next_delay
        # Passed already: a catch-up run at once, standing for the moment (whose grid is the
        # moment, then every period: the anchor is one period before it).
        return _at_least(Plan(moment, None, True), end, moment - period)
    if strategy is NextExecution.RESET or (plan.anchor is None and math.isinf(plan.next)):
        # RESET, or the first trigger of a job whose schedule had not begun (INFINITE delay).
        # It counts from the trigger; from the run's own start when the run began a whole period
        # or more after the trigger (it waited for a long run), as a late automatic run does.
        origin = start if start - triggered_at >= period else triggered_at
        return _since(_cadence(origin, end, period), start)
    if plan.fixed and plan.anchor is not None:
        # The catch-up run after an overrun was due (the trigger came during the long run):
        # the triggered run takes its place, never a second run right after it. A period
        # changed during the triggered run counts from its start, as any period change does.
        if period_before is not None and period_before != period:
            return _since(_cadence(start, end, period), start)
        return _since(_replace_catch_up(plan.anchor, start, end, period), start)
    tick = plan.next
    if math.isinf(tick):
        return _since(plan, start)
    if strategy is NextExecution.REPLACE or end > tick or start >= tick:
        # REPLACE; NONE whose run overshot the pending tick, or began at it (that tick is
        # skipped: the triggered run stands for it, never a second run at the same moment).
        return _since(_cadence(tick, end, period), start)
    return _since(plan, start)


def _replace_catch_up(anchor: float, start: float, end: float, period: float) -> Plan:
    """The plan after a triggered run (``start``-``end``) that took the place of the catch-up
    run of the long run planned at ``anchor``.

    ``T`` is the last tick of the grid at or before the triggered run's start: the ticks the
    long run missed are covered by the triggered run. When no tick of the (since changed)
    period was missed, or the period is zero or infinite, the plan counts from the triggered
    run's start, as after an automatic catch-up run.
    """
    if not 0 < period < math.inf or start < anchor + period:
        return _cadence(start, end, period) if period < math.inf else Plan(math.inf, start, False)
    tick = anchor + math.floor((start - anchor) / period) * period
    return _cadence(tick, end, period)


def _since(plan: Plan, start: float) -> Plan:
    """``plan`` with its period changes counting from ``start`` (set moments are left alone)."""
    return plan if plan.fixed else Plan(plan.next, start, False)


def _at_least(plan: Plan, end: float, grid: float | None = None) -> Plan:
    """A set moment that has already passed becomes "now" (a catch-up run, anchored at
    ``grid`` when given)."""
    if plan.next >= end:
        return plan
    return Plan(end, plan.anchor if grid is None else grid, True)


# ------------------------------------------------------------------ calendar schedules
# A calendar plan is just the wall-clock instant of the next automatic run: a fire time, a set
# moment (a trigger's next_delay), or a moment already past ("run at once": the one catch-up
# run after an overrun). None: no automatic run. The calendar itself comes in as its
# ``next_after`` (``Cron.next_after``: the first fire time strictly after an instant).

Calendar = Callable[[datetime], datetime]

_TICK = timedelta(microseconds=1)


def next_fire(cron: Calendar, t: datetime) -> datetime | None:
    """``cron(t)``; None when there is none (beyond year 9999, or never again)."""
    try:
        return cron(t)
    except (OverflowError, ValueError):
        return None


def first_fire(cron: Calendar, start: datetime, delay: float) -> datetime | None:
    """The first run: the first fire time at or after ``start + delay`` (``inf``: none)."""
    if math.isinf(delay):
        return None
    try:
        earliest = start + timedelta(seconds=delay)
    except OverflowError:  # further away than datetime reaches: practically never
        return None
    return next_fire(cron, earliest - _TICK)


def _resume(cron: Calendar, after: datetime, end: datetime) -> datetime | None:
    """The calendar from ``after`` on, for a run that ended at ``end``: the first fire time
    after ``after``; if the run already ran past it, exactly one run at once (``end``)."""
    fire = next_fire(cron, after)
    if fire is not None and fire <= end:
        # Overran one or more fire times: one catch-up run now, never a burst.
        return end
    return fire


def fire_after_run(
    cron: Calendar, planned: datetime, start: datetime, end: datetime
) -> datetime | None:
    """The next run after an automatic run planned at ``planned`` that ran ``start``-``end``.

    Fire times up to the run's start are covered by the run itself (a late start, a wall
    clock stepped forward); one that passed while it ran gives one run at once.
    """
    return _resume(cron, max(planned, start), end)


def fire_after_trigger(
    cron: Calendar,
    pending: datetime | None,
    *,
    strategy: NextExecution,
    next_delay: float | None,
    triggered_at: datetime,
    start: datetime,
    end: datetime,
) -> datetime | None:
    """The next run after a triggered run (``start``-``end``) of a calendar job.

    ``pending`` is the automatic run that was planned when the trigger came at ``triggered_at``
    (None: the schedule had not begun, or waits for a trigger). ``NONE`` keeps the calendar,
    skipping a fire time the triggered run overshot; ``RESET`` and ``REPLACE`` let the triggered
    run stand in for the pending fire time; ``next_delay`` sets the next run, after which the
    calendar resumes.
    """
    if next_delay is not None:
        if math.isinf(next_delay):
            return None
        try:
            moment = triggered_at + timedelta(seconds=next_delay)
        except OverflowError:
            return None
        return max(moment, end)
    if pending is None:
        # The first trigger of a schedule that had not begun starts the calendar.
        return _resume(cron, start, end)
    if strategy is NextExecution.NONE and start < pending and end <= pending:
        return pending
    # RESET/REPLACE: the triggered run stands in for the pending fire time (and any fire time
    # up to its start); NONE: the run overshot the pending fire time, which is skipped, or it
    # started at or after it (the catch-up run after an overrun, which it replaces).
    return _resume(cron, max(pending, start), end)
