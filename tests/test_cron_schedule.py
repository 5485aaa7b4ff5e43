"""The pure calendar math of _schedule.py: first run, after a run, after a trigger (tables)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from recurjobs import Cron, NextExecution
from recurjobs._schedule import fire_after_run, fire_after_trigger, first_fire

HOURLY = Cron("0 * * * *").next_after
NONE, RESET, REPLACE = NextExecution.NONE, NextExecution.RESET, NextExecution.REPLACE


def at(hhmm: str, day: int = 1) -> datetime:
    """2026-06-<day> hh:mm UTC."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    return datetime(2026, 6, day, hour, minute, tzinfo=UTC)


def show(value: datetime | None) -> str | None:
    return (
        None
        if value is None
        else f"{value:%H:%M}" + ("" if value.day == 1 else f"+{value.day - 1}d")
    )


@pytest.mark.parametrize(
    ("start", "delay", "expected"),
    [
        ("10:20", 0, "11:00"),  # the first fire time at or after start...
        ("10:00", 0, "10:00"),  # ...a start on a fire time runs at once
        ("10:20", 40 * 60, "11:00"),  # start + delay lands on a fire time
        ("10:20", 41 * 60, "12:00"),
        ("10:20", math.inf, None),  # INFINITE delay: no automatic run
        ("10:20", 1e15, None),  # beyond what a datetime reaches: practically never
    ],
)
def test_first_fire(start: str, delay: float, expected: str | None) -> None:
    """The first run is the first fire time at or after start + delay."""
    assert expected == show(first_fire(HOURLY, at(start), delay))


@pytest.mark.parametrize(
    ("planned", "start", "end", "expected"),
    [
        ("10:00", "10:00", "10:05", "11:00"),  # a short run: the next fire time
        ("10:00", "10:00", "11:00", "11:00:now"),  # ends on the next fire time: it runs now
        ("10:00", "10:00", "12:30", "12:30"),  # overran 11:00 and 12:00: one run at once
        ("10:00", "12:10", "12:15", "13:00"),  # started late (a wall-clock step): no burst
        ("12:30", "12:30", "12:31", "13:00"),  # the catch-up run: the calendar resumes
    ],
)
def test_fire_after_run(planned: str, start: str, end: str, expected: str) -> None:
    """After a run the calendar goes on; fire times the run overran give one run at once."""
    want = expected.removesuffix(":now")
    assert want == show(fire_after_run(HOURLY, at(planned), at(start), at(end)))


@pytest.mark.parametrize(
    ("pending", "strategy", "next_delay", "end", "expected"),
    [
        ("11:00", NONE, None, "10:25", "11:00"),  # NONE keeps the calendar
        ("11:00", NONE, None, "11:10", "12:00"),  # ...skipping a fire time it overshot
        ("11:00", NONE, None, "12:10", "12:10"),  # two overshot: one run at once
        ("11:00", RESET, None, "10:25", "12:00"),  # stands in for the pending fire time
        ("11:00", REPLACE, None, "10:25", "12:00"),
        ("11:00", REPLACE, None, "12:10", "12:10"),  # ...and overshot the next: at once
        ("11:00", NONE, 600.0, "10:25", "10:30"),  # next_delay: triggered_at + d
        ("11:00", NONE, 60.0, "10:25", "10:25"),  # ...already past: at once
        ("11:00", NONE, math.inf, "10:25", None),  # INFINITE: wait for the next trigger
        (None, NONE, None, "10:25", "11:00"),  # the first trigger starts the calendar
        (None, RESET, None, "11:30", "11:30"),  # ...from the triggered run's start
    ],
)
def test_fire_after_trigger(
    pending: str | None,
    strategy: NextExecution,
    next_delay: float | None,
    end: str,
    expected: str | None,
) -> None:
    """A trigger at 10:20 on an hourly calendar gives the next run of the strategy's rule."""
    fire = fire_after_trigger(
        HOURLY,
        None if pending is None else at(pending),
        strategy=strategy,
        next_delay=next_delay,
        triggered_at=at("10:20"),
        start=at("10:20"),
        end=at(end),
    )
    assert expected == show(fire)


@pytest.mark.parametrize("strategy", [NONE, RESET, REPLACE])
def test_a_trigger_replaces_the_catch_up_run(strategy: NextExecution) -> None:
    """The run of 10:00 ran until 11:10 (a catch-up run was due at 11:10) and a trigger came
    at 10:20: the triggered run at 11:10 stands in for the catch-up; next is 12:00."""
    fire = fire_after_trigger(
        HOURLY,
        at("11:10"),
        strategy=strategy,
        next_delay=None,
        triggered_at=at("10:20"),
        start=at("11:10"),
        end=at("11:10"),
    )
    assert "12:00" == show(fire)


def test_a_calendar_with_no_more_fire_times_plans_none() -> None:
    """A calendar that raises (no fire time left) plans no automatic run instead of failing."""

    def exhausted(_t: datetime) -> datetime:
        raise ValueError("no fire time within 50 years")

    assert (None, None) == (
        first_fire(exhausted, at("10:00"), 0),
        fire_after_run(exhausted, at("10:00"), at("10:00"), at("10:01")),
    )


def test_the_calendar_math_is_pure() -> None:
    """The calendar modules import no threads, clocks or SQL (layering guard)."""
    import ast
    from pathlib import Path

    root = Path(__file__).parent.parent / "recurjobs"
    imported: set[str] = set()
    for module in ("_cron.py", "_cronmath.py"):
        for node in ast.walk(ast.parse((root / module).read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert set() == imported & {"threading", "sqlalchemy", "time"}
