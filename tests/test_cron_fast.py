"""Cron.next_after's own search gives exactly cronsim's fire times (random expressions, zones,
instants, with many instants close to daylight-saving changes)."""

from __future__ import annotations

import functools
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from recurjobs import Cron

ZONES = [
    "UTC",
    "Europe/Amsterdam",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",  # changes at midnight
    "Africa/Casablanca",  # leaves summer time for Ramadan: two changes a month apart
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Europe/London",
]


def reference(expression: str, zone: str, t: datetime) -> datetime:
    """cronsim's answer, asked the plain way: strictly after t, never back in time."""
    tz = UTC if zone == "UTC" else ZoneInfo(zone)
    fields = {
        "@hourly": "0 * * * *",
        "@daily": "0 0 * * *",
        "@weekly": "0 0 * * 0",
        "@monthly": "0 0 1 * *",
        "@yearly": "0 0 1 1 *",
    }.get(expression, expression)
    start = t.astimezone(tz)
    while True:
        fire = next(CronSim(fields, start)).astimezone(UTC)
        if fire > t:
            return fire
        start = (fire + timedelta(seconds=1)).astimezone(tz)


def _field(rng: random.Random, low: int, high: int, names: list[str] | None = None) -> str:
    kind = rng.random()
    if kind < 0.3:
        return "*"
    if kind < 0.45:
        return f"*/{rng.randint(2, max(2, (high - low) // 2))}"
    if kind < 0.6:
        a = rng.randint(low, high)
        return f"{a}-{rng.randint(a, high)}"
    if kind < 0.7:
        a = rng.randint(low, high)
        return f"{a}-{rng.randint(a, high)}/{rng.randint(1, 3)}"
    if kind < 0.85:
        return ",".join(str(v) for v in sorted(rng.sample(range(low, high + 1), rng.randint(2, 3))))
    if names is not None and kind < 0.9:
        return rng.choice(names)
    return str(rng.randint(low, high))


def random_expression(rng: random.Random) -> str:
    """A random five-field expression in cronsim's syntax, with L, LW and # now and then."""
    if rng.random() < 0.08:
        return rng.choice(["@hourly", "@daily", "@weekly", "@monthly", "@yearly"])
    minute = _field(rng, 0, 59)
    hour = _field(rng, 0, 23)
    dom = _field(rng, 1, 31)
    if rng.random() < 0.1:
        dom = rng.choice(["L", "LW", "15,L"])
    month = _field(rng, 1, 12, ["JAN", "MAR", "OCT", "NOV"])
    dow = _field(rng, 0, 7, ["MON", "SUN", "FRI"])
    if rng.random() < 0.1:
        dow = rng.choice(["5L", "1#2", "0#5", "MON#1,FRI#3"])
    if rng.random() < 0.5:
        dom, dow = (dom, "*") if rng.random() < 0.5 else ("*", dow)
    return f"{minute} {hour} {dom} {month} {dow}"


@functools.cache
def near_changes(zone: str) -> list[datetime]:
    """Instants of 2025-2027 where the zone's UTC offset changes (to the second)."""
    if zone == "UTC":
        return []
    tz = ZoneInfo(zone)

    def offset(ts: int) -> timedelta | None:
        return datetime.fromtimestamp(ts, tz).utcoffset()

    out = []
    ts, end = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp()), 1830297600  # 2028-01-01
    while ts < end:
        low, high = ts, ts + 6 * 3600
        if offset(low) != offset(high):
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (mid, high) if offset(mid) == offset(low) else (low, mid)
            out.append(datetime.fromtimestamp(high, UTC))
        ts += 6 * 3600
    return out


def cases(seed: int, count: int) -> list[tuple[str, str, datetime]]:
    rng = random.Random(seed)
    changes = {zone: near_changes(zone) for zone in ZONES}
    out = []
    for _ in range(count):
        zone = rng.choice(ZONES)
        expression = random_expression(rng)
        try:
            Cron(expression, tz=zone)
        except ValueError:
            continue
        if changes[zone] and rng.random() < 0.6:
            base = rng.choice(changes[zone])
            t = base + timedelta(seconds=rng.randint(-3 * 86400, 3 * 86400))
        else:
            t = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(
                seconds=rng.randint(0, 10 * 365 * 86400)
            )
        if rng.random() < 0.3:
            t = t.replace(second=0)  # exactly on a minute, often a fire time itself
        t += timedelta(microseconds=rng.choice([0, 0, 1, 500000]))
        out.append((expression, zone, t))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_next_after_equals_cronsim(seed: int) -> None:
    """For 1,500 random (expression, zone, instant) cases, next_after and cronsim agree."""
    mismatches = []
    for expression, zone, t in cases(seed, 1500):
        cron = Cron(expression, tz=zone)
        expected: datetime | str
        actual: datetime | str
        try:
            expected = reference(expression, zone, t)
        except StopIteration:
            expected = "none within 50 years"
        try:
            actual = cron.next_after(t)
        except ValueError:
            actual = "none within 50 years"
        if expected != actual:
            mismatches.append((expression, zone, t.isoformat(), expected, actual))
    assert [] == mismatches[:5]


@pytest.mark.parametrize("zone", ["Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe"])
@pytest.mark.parametrize(
    "expression",
    ["* * * * *", "*/5 * * * *", "0 * * * *", "30 2 * * *", "15 1-3 * * *", "0 9 * * 1-5"],
)
def test_a_chain_of_fire_times_across_a_year_equals_cronsim(expression: str, zone: str) -> None:
    """Chained fire times through 2026 (both changes) equal cronsim's chain, step by step."""
    cron = Cron(expression, tz=zone)
    step = {"* * * * *": 97, "*/5 * * * *": 53}.get(expression, 1)
    t, mismatches = datetime(2026, 1, 1, tzinfo=UTC), []
    for changes in near_changes(zone):
        if changes.year != 2026:
            continue
        t = changes - timedelta(hours=4)
        for _ in range(400):
            expected, actual = reference(expression, zone, t), cron.next_after(t)
            if expected != actual:
                mismatches.append((t.isoformat(), expected, actual))
            t = expected + timedelta(seconds=step if step > 1 else 0)
    assert [] == mismatches[:5]
