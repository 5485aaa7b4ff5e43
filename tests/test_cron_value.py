"""Cron as a value: parsing, errors, equality, and next_after across daylight-saving changes."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from recurjobs import Cron


def test_equal_crons_hash_alike() -> None:
    """Two Crons with the same expression and zone are equal and hash alike."""
    a = Cron("0 3 * * *", tz="Europe/Amsterdam")
    b = Cron("0 3 * * *", tz=ZoneInfo("Europe/Amsterdam"))
    assert (True, hash(a)) == (a == b, hash(b))


def test_fixed_offsets_compare_by_offset_whatever_their_names() -> None:
    """Two fixed offsets with one name but different offsets are different Crons; the same
    offset given as a timezone or as its "UTC+02:00" name is the same Cron."""
    plus_two = Cron("0 3 * * *", tz=timezone(timedelta(hours=2), "X"))
    plus_three = Cron("0 3 * * *", tz=timezone(timedelta(hours=3), "X"))
    by_name = Cron("0 3 * * *", tz="UTC+02:00")
    assert plus_two != plus_three
    assert (True, hash(plus_two)) == (plus_two == by_name, hash(by_name))
    west = Cron("@daily", tz="UTC-09:30")
    assert ("UTC+02:00", "UTC-09:30") == (plus_two.zone_name, west.zone_name)
    new_year = datetime(2026, 1, 1, tzinfo=UTC)
    assert datetime(2026, 1, 1, 1, 0, tzinfo=UTC) == by_name.next_after(new_year)


def test_a_cron_keeps_what_it_was_given() -> None:
    """expression and tz are kept as given; describe() names expression and zone."""
    c = Cron("@daily", tz="America/New_York")
    assert ("@daily", "America/New_York", "@daily (America/New_York)") == (
        c.expression,
        c.tz,
        c.describe(),
    )


@pytest.mark.parametrize(
    "expression",
    ["* * *", "* * * * * *", "61 * * * *", "* 24 * * *", "@Daily", "@every", "", "0 0 31 2 *"],
)
def test_a_bad_expression_is_a_value_error_naming_it(expression: str) -> None:
    """A bad expression is a ValueError at construction whose message quotes it."""
    with pytest.raises(ValueError, match="expression") as info:
        Cron(expression)
    assert repr(expression) in str(info.value)


def test_an_unknown_zone_is_a_value_error_naming_it() -> None:
    """An unknown zone name is a ValueError at construction naming the zone."""
    with pytest.raises(ValueError, match="'Mars/Olympus'"):
        Cron("* * * * *", tz="Mars/Olympus")


@pytest.mark.parametrize(("expression", "tz"), [(5, "UTC"), ("* * * * *", 5), (None, "UTC")])
def test_a_value_of_the_wrong_type_is_a_type_error(expression: object, tz: object) -> None:
    """A non-string expression or a zone that is neither str nor tzinfo is a TypeError."""
    with pytest.raises(TypeError):
        Cron(expression, tz=tz)  # type: ignore[arg-type]


def test_a_naive_instant_is_a_value_error() -> None:
    """next_after refuses a naive datetime."""
    with pytest.raises(ValueError, match="aware"):
        Cron("* * * * *").next_after(datetime(2026, 1, 1))


def test_a_cron_survives_pickling_and_stays_frozen() -> None:
    """A Cron pickles to an equal value and refuses attribute assignment."""
    c = Cron("*/5 * * * *", tz=timezone(timedelta(hours=2)))
    with pytest.raises(AttributeError):
        setattr(c, "_expression", "x")  # noqa: B010
    assert c == pickle.loads(pickle.dumps(c))


def fires(cron: Cron, start: datetime, count: int) -> list[str]:
    out, t = [], start
    for _ in range(count):
        t = cron.next_after(t)
        out.append(t.astimezone(cron.zone).isoformat())
    return out


@pytest.mark.parametrize(
    ("tz", "expression", "start", "expected"),
    [
        # Amsterdam, clocks back 2026-10-25 03:00 CEST -> 02:00 CET: a 02:30 job runs once.
        (
            "Europe/Amsterdam",
            "30 2 * * *",
            datetime(2026, 10, 24, 12, tzinfo=UTC),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ),
        # Amsterdam, clocks forward 2026-03-29 02:00 -> 03:00: a 02:30 job runs right after.
        (
            "Europe/Amsterdam",
            "30 2 * * *",
            datetime(2026, 3, 28, 12, tzinfo=UTC),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        ),
        # Amsterdam, an hourly job runs on each real hour of the repeated hour.
        (
            "Europe/Amsterdam",
            "0 * * * *",
            datetime(2026, 10, 24, 23, 30, tzinfo=UTC),
            ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"],
        ),
        # Lord Howe, clocks back by 30 minutes 2026-04-05 02:00 -> 01:30: 01:30 runs once.
        (
            "Australia/Lord_Howe",
            "30 1 * * *",
            datetime(2026, 4, 3, 0, tzinfo=UTC),
            ["2026-04-04T01:30:00+11:00", "2026-04-05T01:30:00+11:00", "2026-04-06T01:30:00+10:30"],
        ),
    ],
)
def test_next_after_follows_daylight_saving(
    tz: str, expression: str, start: datetime, expected: list[str]
) -> None:
    """next_after yields the Debian-cron fire times across a daylight-saving change."""
    assert expected == fires(Cron(expression, tz=tz), start, len(expected))


def test_next_after_from_inside_the_repeated_hour_never_goes_back() -> None:
    """From the second pass of a repeated hour, a fixed-time job's next fire is tomorrow."""
    c = Cron("30 2 * * *", tz="Europe/Amsterdam")
    second_pass = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)  # 02:15 CET, after 02:30 CEST
    assert datetime(2026, 10, 26, 1, 30, tzinfo=UTC) == c.next_after(second_pass)


def test_next_after_is_strictly_after_and_in_utc() -> None:
    """A fire time equal to t is not returned; results are aware UTC datetimes."""
    c = Cron("0 * * * *", tz="Europe/Amsterdam")
    t = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    nxt = c.next_after(t)
    assert (datetime(2026, 6, 1, 11, 0, tzinfo=UTC), UTC) == (nxt, nxt.tzinfo)


@pytest.mark.parametrize(
    ("expression", "tz", "after"),
    [
        pytest.param("0 0 29 2 *", "UTC", datetime(9997, 1, 1, tzinfo=UTC), id="leap-day"),
        pytest.param("@yearly", "America/New_York", datetime(9999, 6, 1, tzinfo=UTC), id="yearly"),
        pytest.param(
            "* * * * *", "Europe/Amsterdam", datetime(9999, 12, 31, 23, 59, tzinfo=UTC), id="zone"
        ),
    ],
)
def test_next_after_names_the_calendar_when_no_fire_time_is_left(
    expression: str, tz: str, after: datetime
) -> None:
    """When the next fire time would be after year 9999, next_after raises a ValueError that
    names the calendar (not datetime's bare "year 10000 is out of range")."""
    with pytest.raises(ValueError, match=rf"\({tz}\) has no fire time after .* before year 10000"):
        Cron(expression, tz=tz).next_after(after)
