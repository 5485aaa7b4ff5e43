"""Bad input around calendar schedules: a clear error at the call, naming what was wrong."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo

import pytest

from recurjobs import CancellationToken, Cron, DistributedJob, JobHost, RecurringJob
from recurjobs.testing import ManualClock


class Job(RecurringJob):
    def run(self, token: CancellationToken) -> None:
        pass


class Dist(DistributedJob):
    def execute(self, token: CancellationToken) -> None:
        pass


class DuckDist:
    name = "duck"
    period = Cron("* * * * *")
    align_to_clock = True

    def execute(self, token: CancellationToken) -> None:
        pass


class AlignedCron(DistributedJob):
    name = "aligned"
    period = Cron("0 3 * * *")
    align_to_clock = True

    def execute(self, token: CancellationToken) -> None:
        pass


class _NamelessZone(tzinfo):
    """A tzinfo of one's own: no IANA key, not a fixed offset; no name stands for it."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "MINE"


def _set_period(value: object) -> Callable[[], object]:
    def call() -> object:
        job = Job(Cron("* * * * *"))
        job.period = value  # type: ignore[assignment]
        return job

    return call


CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    (
        "align_to_clock with a Cron (keywords)",
        lambda: Dist(name="d", period=Cron("* * * * *"), align_to_clock=True),
        ValueError,
        "align_to_clock",
    ),
    ("align_to_clock with a Cron (class attributes)", lambda: AlignedCron(), ValueError, "Cron"),
    (
        "align_to_clock with a Cron (duck-typed, at JobHost)",
        lambda: JobHost([DuckDist()], database="sqlite://"),
        ValueError,
        "align_to_clock",
    ),
    ("a cron string as period", lambda: Job("0 3 * * *"), TypeError, "period"),  # type: ignore[arg-type]
    ("a cron string via the setter", _set_period("0 3 * * *"), TypeError, "period"),
    ("a negative period via the setter", _set_period(timedelta(-5)), ValueError, "period"),
    (
        "a cron string as a distributed period",
        lambda: Dist(name="d", period="* * * * *"),  # type: ignore[arg-type]
        TypeError,
        "period",
    ),
    ("a bad expression", lambda: Cron("0 3 * *"), ValueError, "expression"),
    ("a bad field", lambda: Cron("0 25 * * *"), ValueError, "'0 25 * * *'"),
    ("an unknown macro", lambda: Cron("@every_minute"), ValueError, "@every_minute"),
    ("an unknown zone", lambda: Cron("0 3 * * *", tz="Europe/Atlantis"), ValueError, "Atlantis"),
    ("a zone of the wrong type", lambda: Cron("0 3 * * *", tz=2), TypeError, "tz"),  # type: ignore[arg-type]
    ("a folder of the zone database", lambda: Cron("@daily", tz="Europe"), ValueError, "'Europe'"),
    ("a zone name too long for a path", lambda: Cron("@daily", tz="a" * 5000), ValueError, "tz"),
    ("an offset of a day", lambda: Cron("@daily", tz="UTC+24:00"), ValueError, "UTC+24:00"),
    (
        "a distributed calendar in a zone no name stands for",
        lambda: Dist(name="d", period=Cron("0 3 * * *", tz=_NamelessZone())),
        ValueError,
        "read back",
    ),
    ("an expression of the wrong type", lambda: Cron(3), TypeError, "expression"),  # type: ignore[arg-type]
    (
        "a naive instant for next_after",
        lambda: Cron("* * * * *").next_after(ManualClock().now().replace(tzinfo=None)),
        ValueError,
        "aware",
    ),
    (
        "a number for ManualClock.step_wall_clock",
        lambda: ManualClock().step_wall_clock(60),  # type: ignore[arg-type]
        TypeError,
        "delta",
    ),
    ("a non-datetime for next_after", lambda: Cron("* * * * *").next_after(5), TypeError, "t"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("call", "kind", "words"), [pytest.param(c, k, w, id=i) for i, c, k, w in CASES]
)
def test_bad_calendar_input_is_refused_at_the_call(
    call: Callable[[], object], kind: type[Exception], words: str
) -> None:
    """Each bad input raises the expected error whose message names the parameter or value."""
    with pytest.raises(kind) as info:
        call()
    assert (True, kind) == (words in str(info.value), type(info.value))
