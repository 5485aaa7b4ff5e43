"""What the recurring loop tells the run history's sink: the host clock's times, in epoch ms."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from recurjobs import JobHost, SystemClock
from recurjobs._clock import monotonic_of, wall_seconds
from recurjobs.testing import ManualClock
from tests.helpers import TimedJob, minutes, walk_to


class _Sink:
    """Keeps what the loop reports of each recurring run."""

    def __init__(self) -> None:
        self.runs: list[tuple[bool, float, float, str]] = []

    def recurring(
        self,
        job: object,
        manual: bool,
        started_ms: float,
        ended_ms: float,
        outcome: str,
        error: BaseException | None,
        /,
    ) -> None:
        self.runs.append((manual, started_ms, ended_ms, outcome))

    def claimed(self, job: object, **_facts: object) -> object:
        return None

    def ended(self, handle: object, **_facts: object) -> None:
        pass


def test_recurring_runs_are_stamped_with_the_host_clock(clock: ManualClock) -> None:
    """SPEC 11: a recurring run's start and end come from the host clock (here a ManualClock
    at 2026-01-01), as epoch milliseconds; a run that takes simulated time ends later."""

    def slow(_token: object) -> None:
        clock.advance(2.0)  # the run takes two simulated seconds

    job = TimedJob(clock, minutes(5), body=slow)
    host = JobHost([job], clock=clock)
    sink = _Sink()
    host._publisher.sink = sink
    with host:
        walk_to(clock, 6, step=1 / 60)  # one simulated second at a time
    epoch = datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000
    assert [
        (False, epoch, epoch + 2000, "executed"),
        (False, epoch + 300_000, epoch + 302_000, "executed"),
    ] == sink.runs


def test_the_real_clock_is_read_as_time_time_itself() -> None:
    """For the real clock the stamps are ``time.time`` itself (what ``now()`` reads too, with no
    Python frame around it); any other clock is asked ``now()``."""
    assert wall_seconds(SystemClock()) is time.time
    manual = ManualClock()
    manual.advance(timedelta(seconds=1.5))
    assert manual.now().timestamp() == wall_seconds(manual)()


def test_the_loop_reads_monotonic_time_from_the_host_clock() -> None:
    """The loop's per-run readings: ``time.monotonic`` itself for the real clock (what
    ``SystemClock.monotonic()`` returns), the clock's own ``monotonic`` for any other."""
    assert time.monotonic is monotonic_of(SystemClock())
    manual = ManualClock()
    manual.advance(timedelta(seconds=7))
    assert manual.monotonic() == monotonic_of(manual)()
