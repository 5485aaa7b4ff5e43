"""The dashboard's pure text: times, durations, schedules, next due, the SVG chart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from recurjobs.dashboard._chart import duration_chart
from recurjobs.dashboard._data import Run
from recurjobs.dashboard._format import (
    absolute,
    duration,
    next_due_ms,
    relative,
    schedule_text,
)

NOW = 1_796_000_000_000  # 2026-11-30 ...


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.mark.parametrize(
    ("delta_ms", "expected"),
    [
        (12 * 60_000, "in about 12 minutes"),
        (-3 * 3_600_000, "about 3 hours ago"),
        (400, "now"),
        (20_000, "in a few seconds"),
        (-70 * 60_000, "about an hour ago"),
        (2 * 86_400_000, "in about 2 days"),
    ],
)
def test_relative_times(delta_ms: int, expected: str) -> None:
    """Relative times read like a person would say them."""
    assert expected == relative(NOW + delta_ms, NOW)


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (850, "850 ms"),
        (4200, "4.2 s"),
        (5000, "5 s"),
        (185_000, "3 min 5 s"),
        (7_800_000, "2 h 10 min"),
        (3 * 86_400_000 + 4 * 3_600_000, "3 d 4 h"),
    ],
)
def test_durations(ms: int, expected: str) -> None:
    """Durations are short and exact to their largest two units."""
    assert expected == duration(ms)


def test_absolute_is_utc() -> None:
    """Absolute times are UTC with the zone written out."""
    assert "2026-11-30 15:04:05 UTC" == absolute(_ms(datetime(2026, 11, 30, 15, 4, 5, tzinfo=UTC)))


def test_schedules() -> None:
    """Periods read as "every ...", cron rows show their expression and zone."""
    assert "every 5 min" == schedule_text(300_000, None)
    assert "every 1 h (aligned to the clock)" == schedule_text(3_600_000, None, True)
    assert "cron 0 3 * * * (Europe/Amsterdam)" == schedule_text(
        60_000, "0 3 * * *|Europe/Amsterdam"
    )


def test_next_due_of_a_cron_row_is_its_next_fire_time_in_its_zone() -> None:
    """A cron row is next due at the first fire time after its last claim, in its zone."""
    claimed = _ms(datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    due = next_due_ms(
        period_ms=60_000,
        aligned=False,
        last_run_ms=claimed,
        last_attempted_run_ms=claimed,
        cron="0 3 * * *|Europe/Amsterdam",
        due_now=False,
        now_ms=claimed,
    )
    assert _ms(datetime(2026, 7, 2, 1, 0, tzinfo=UTC)) == due  # 03:00 CEST


def test_next_due_of_period_rows() -> None:
    """Interval rows are due a period after the last run; aligned ones at the next multiple;
    triggered ones now."""
    common: dict[str, Any] = {"last_attempted_run_ms": None, "cron": None, "now_ms": NOW}
    assert 1_000 + 60_000 == next_due_ms(
        period_ms=60_000, aligned=False, last_run_ms=1_000, due_now=False, **common
    )
    assert 120_000 == next_due_ms(
        period_ms=60_000, aligned=True, last_run_ms=61_000, due_now=False, **common
    )
    assert NOW == next_due_ms(
        period_ms=60_000, aligned=False, last_run_ms=1_000, due_now=True, **common
    )


def test_chart_escapes_every_text_and_draws_a_bar_per_run() -> None:
    """Host names in the bars' tooltips and the chart's title are escaped."""
    runs = [
        Run(
            i,
            "job",
            "distributed",
            "<script>x()</script>",
            None,
            "schedule",
            NOW - i * 1000,
            NOW - i * 1000 + 500,
            "executed",
        )
        for i in range(1, 4)
    ]
    svg = str(duration_chart(runs, NOW, "Durations of <img src=x>"))
    assert (3, False, False) == (svg.count("<rect "), "<script>" in svg, "<img" in svg)


def test_next_due_text_says_overdue() -> None:
    """A due time in the future is relative; one passed over a minute ago reads as overdue."""
    from recurjobs.dashboard._app import _next_text

    assert ["in about 5 minutes", "due now", "overdue by 3 h"] == [
        _next_text(NOW + 300_000, NOW),
        _next_text(NOW - 5_000, NOW),
        _next_text(NOW - 3 * 3_600_000, NOW),
    ]
