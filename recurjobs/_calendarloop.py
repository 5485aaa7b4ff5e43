"""How a job's thread follows a calendar: switching between a period and a calendar, and one
iteration of a job on a calendar.

A calendar plan (a :class:`Cron` period) is a wall-clock instant read against the clock's
``now()`` (the runner's ``fire``); a period plan is the runner's ``plan`` in monotonic seconds.
:func:`switch` moves between the two when the job's ``period`` changes kind; :func:`calendar_step`
is the runner's step for a job on a calendar. Both are the runner's own steps, run on its thread
with its lock and wake event, kept here so ``_loop.py`` reads as the thread and its run.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING

from recurjobs._clock import bounded
from recurjobs._cron import Cron
from recurjobs._schedule import Plan, fire_after_run, fire_after_trigger, next_fire, seconds
from recurjobs._watch import RECHECK

if TYPE_CHECKING:
    from recurjobs._loop import JobRunner
    from recurjobs._runnerstate import _Trigger

__all__ = ["calendar_step", "switch"]


def switch(runner: JobRunner, schedule: timedelta | Cron) -> None:
    """Follow a change between periods and calendars (or to another calendar).

    To a calendar: the next run is the first fire time after the change. Back to a period:
    the cadence counts from the last run's start (from the change if there was none). A
    schedule that has not begun (waiting for its first trigger) stays so.
    """
    if schedule == runner.cron:
        return
    if runner.cron is not None:
        begun = runner.fire is not None
    else:  # an INFINITE period that has run has begun; a first or next_delay trigger awaited not
        begun = runner.plan.anchor is not None or not math.isinf(runner.plan.next)
    if isinstance(schedule, Cron):
        fire = next_fire(schedule.next_after, runner._clock.now()) if begun else None
        with runner._lock:
            runner.cron, runner.fire = schedule, fire
        return
    now = runner._clock.monotonic()
    last = runner.outcome.last_start
    anchor = last if last is not None else now
    plan = Plan(math.inf, None, True)
    if begun:
        plan = Plan(anchor + seconds(schedule), anchor, False)
    with runner._lock:
        runner.cron, runner.fire, runner.plan = None, None, plan


def calendar_step(runner: JobRunner, cron: Cron, trigger: _Trigger | None) -> bool:
    """One iteration of a calendar job: wait (the watch bounds it), or run once."""
    now = runner._clock.now()
    if trigger is None:
        planned = runner.fire
        if planned is None:
            runner._clock.wait(runner._wake, None)
            return True
        left = (planned - now).total_seconds()
        if left > 0:
            leads = runner._watch.before_wait(runner, planned, runner._wake.set)
            runner._clock.wait(runner._wake, min(left, RECHECK) if leads else bounded(left))
            runner._watch.after_wait(runner, runner._clock.now())
            return True
        runner._run_once(
            runner._clock.monotonic(), late=(now - planned).total_seconds(), manual=False
        )
        fire = fire_after_run(cron.next_after, planned, now, runner._clock.now())
    else:
        runner._run_once(
            runner._clock.monotonic(), late=(now - trigger.wall).total_seconds(), manual=True
        )
        fire = fire_after_trigger(
            cron.next_after,
            runner.fire,
            strategy=trigger.strategy,
            next_delay=trigger.next_delay,
            triggered_at=trigger.wall,
            start=now,
            end=runner._clock.now(),
        )
    with runner._lock:
        runner.fire = fire
    return True
