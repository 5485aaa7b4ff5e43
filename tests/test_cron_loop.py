"""Calendar (Cron) jobs on a real JobHost driven by a ManualClock: daylight-saving changes in
three zones, long runs of days, leap days, month ends, triggers, schedule switches, overruns
and wall-clock steps. No test sleeps: time moves only when the test advances the clock."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from recurjobs import (
    INFINITE,
    CancellationToken,
    Cron,
    JobFailed,
    JobHost,
    NextExecution,
    RecurringJob,
    TriggerableJob,
)
from recurjobs.testing import ManualClock


class CalendarJob(RecurringJob, TriggerableJob):
    """Records the wall time of every run start, in the zone of its calendar."""

    def __init__(
        self,
        clock: ManualClock,
        period: Cron | timedelta,
        *,
        body: Callable[[CancellationToken], None] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(period, **kwargs)  # type: ignore[arg-type]
        self.clock = clock
        self.body = body
        self.zone = period.zone if isinstance(period, Cron) else UTC
        self.starts: list[str] = []

    def run(self, token: CancellationToken) -> None:
        self.starts.append(self.clock.now().astimezone(self.zone).isoformat(timespec="minutes"))
        if self.body is not None:
            self.body(token)


def run_until(clock: ManualClock, host: JobHost, until: datetime) -> None:
    """Advance straight to each planned run (as status() shows it) until ``until``."""
    while True:
        clock.wait_for_waiters(1)
        planned = host.status()[0].next_run
        if planned is None or planned > until:
            clock.advance(max(timedelta(0), until - clock.now()))
            clock.wait_for_waiters(1)
            return
        clock.advance(max(timedelta(0), planned - clock.now()))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def runs(expression: str, tz: str, start: datetime, until: datetime, **kwargs: object) -> list[str]:
    """The local start times of a Cron job on a host started at ``start``, up to ``until``."""
    clock = ManualClock(start)
    job = CalendarJob(clock, Cron(expression, tz=tz), **kwargs)  # type: ignore[arg-type]
    with JobHost([job], clock=clock) as host:
        run_until(clock, host, until)
    return job.starts


# ------------------------------------------------------------------ daylight saving
DST = [
    # zone, (spring change day UTC range), (fall change day UTC range), fixed skipped job,
    # expected runs in spring, fixed repeated job, expected runs in fall
    pytest.param(
        "Europe/Amsterdam",
        "30 2 * * *",
        (utc(2026, 3, 27, 12), utc(2026, 3, 30, 12)),
        ["2026-03-28T02:30+01:00", "2026-03-29T03:00+02:00", "2026-03-30T02:30+02:00"],
        "30 2 * * *",
        (utc(2026, 10, 23, 12), utc(2026, 10, 26, 12)),
        ["2026-10-24T02:30+02:00", "2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"],
        id="amsterdam",
    ),
    pytest.param(
        "America/New_York",
        "30 2 * * *",
        (utc(2026, 3, 6, 18), utc(2026, 3, 9, 18)),
        ["2026-03-07T02:30-05:00", "2026-03-08T03:00-04:00", "2026-03-09T02:30-04:00"],
        "30 1 * * *",
        (utc(2026, 10, 30, 18), utc(2026, 11, 2, 18)),
        ["2026-10-31T01:30-04:00", "2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00"],
        id="new-york",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "15 2 * * *",
        (utc(2026, 10, 2, 6), utc(2026, 10, 5, 6)),
        ["2026-10-03T02:15+10:30", "2026-10-04T02:30+11:00", "2026-10-05T02:15+11:00"],
        "45 1 * * *",
        (utc(2026, 4, 3, 6), utc(2026, 4, 6, 6)),
        ["2026-04-04T01:45+11:00", "2026-04-05T01:45+11:00", "2026-04-06T01:45+10:30"],
        id="lord-howe",
    ),
]


@pytest.mark.parametrize(
    ("tz", "skipped", "spring", "spring_runs", "repeated", "fall", "fall_runs"), DST
)
def test_a_fixed_time_job_runs_once_across_both_changes(
    tz: str,
    skipped: str,
    spring: tuple[datetime, datetime],
    spring_runs: list[str],
    repeated: str,
    fall: tuple[datetime, datetime],
    fall_runs: list[str],
) -> None:
    """A time skipped in spring runs once right after the jump; a repeated one runs once."""
    assert (spring_runs, fall_runs) == (
        runs(skipped, tz, *spring),
        runs(repeated, tz, *fall),
    )


HOURLY = [
    pytest.param(
        "Europe/Amsterdam",
        utc(2026, 3, 28, 22, 30),
        utc(2026, 3, 29, 2, 30),
        ["00:00+01:00", "01:00+01:00", "03:00+02:00", "04:00+02:00"],
        utc(2026, 10, 24, 21, 30),
        utc(2026, 10, 25, 3, 30),
        ["00:00+02:00", "01:00+02:00", "02:00+02:00", "02:00+01:00", "03:00+01:00", "04:00+01:00"],
        id="amsterdam",
    ),
    pytest.param(
        "America/New_York",
        utc(2026, 3, 8, 4, 30),
        utc(2026, 3, 8, 8, 30),
        ["00:00-05:00", "01:00-05:00", "03:00-04:00", "04:00-04:00"],
        utc(2026, 11, 1, 3, 30),
        utc(2026, 11, 1, 8, 30),
        ["00:00-04:00", "01:00-04:00", "01:00-05:00", "02:00-05:00", "03:00-05:00"],
        id="new-york",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        utc(2026, 10, 3, 13, 0),
        utc(2026, 10, 3, 17, 30),
        ["00:00+10:30", "01:00+10:30", "03:00+11:00", "04:00+11:00"],
        utc(2026, 4, 4, 12, 30),
        utc(2026, 4, 4, 17, 0),
        ["00:00+11:00", "01:00+11:00", "02:00+10:30", "03:00+10:30"],
        id="lord-howe",
    ),
]


@pytest.mark.parametrize(
    ("tz", "s_from", "s_to", "spring_runs", "f_from", "f_to", "fall_runs"), HOURLY
)
def test_an_hourly_job_runs_on_each_real_hour(
    tz: str,
    s_from: datetime,
    s_to: datetime,
    spring_runs: list[str],
    f_from: datetime,
    f_to: datetime,
    fall_runs: list[str],
) -> None:
    """An hourly job skips no real hour and runs on both passes of a repeated hour."""

    def times(values: list[str]) -> list[str]:
        return [v[11:] for v in values]

    assert (spring_runs, fall_runs) == (
        times(runs("0 * * * *", tz, s_from, s_to)),
        times(runs("0 * * * *", tz, f_from, f_to)),
    )


@pytest.mark.parametrize("tz", ["Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe"])
@pytest.mark.parametrize("month", [3, 10])
def test_a_month_of_daily_runs_does_not_drift(tz: str, month: int) -> None:
    """A 03:00 job runs at 03:00 local on each of 31 days around a change, no drift."""
    start = datetime(2026, month, 1, 12, tzinfo=UTC)
    starts = runs("0 3 * * *", tz, start, start + timedelta(days=31))
    days = [(start.astimezone(ZoneInfo(tz)) + timedelta(days=d + 1)).date() for d in range(31)]
    assert ([f"{d.isoformat()}T03:00" for d in days]) == [s[:16] for s in starts]


def test_a_leap_day_job_runs_on_each_leap_day_only() -> None:
    """0 12 29 2 * runs on 29 February 2028 and 2032, nothing in between."""
    starts = runs("0 12 29 2 *", "Europe/Amsterdam", utc(2026, 6, 1), utc(2033, 1, 1))
    assert ["2028-02-29T12:00+01:00", "2032-02-29T12:00+01:00"] == starts


def test_monthly_and_the_31st_rule() -> None:
    """@monthly runs on every 1st; 0 0 31 * * only in the seven months with a 31st."""
    start, end = utc(2026, 1, 1, 12), utc(2027, 1, 1, 12)
    monthly = runs("@monthly", "America/New_York", start, end)
    on_31st = runs("0 0 31 * *", "America/New_York", start, end)
    assert (
        [*(f"2026-{m:02d}-01" for m in range(2, 13)), "2027-01-01"],
        [
            "2026-01-31",
            "2026-03-31",
            "2026-05-31",
            "2026-07-31",
            "2026-08-31",
            "2026-10-31",
            "2026-12-31",
        ],
    ) == ([s[:10] for s in monthly], [s[:10] for s in on_31st])


# ---------------------------------------------------------------------- the loop rules
def test_a_cron_job_has_no_start_up_delay_and_runs_at_its_first_fire_time() -> None:
    """RecurringJob(Cron) has delay 0: started at 10:20, an hourly job first runs at 11:00."""
    clock = ManualClock(utc(2026, 6, 1, 10, 20))
    job = CalendarJob(clock, Cron("0 * * * *"))
    with JobHost([job], clock=clock) as host:
        run_until(clock, host, utc(2026, 6, 1, 12, 30))
    assert (timedelta(0), ["2026-06-01T11:00+00:00", "2026-06-01T12:00+00:00"]) == (
        job.delay,
        job.starts,
    )


def test_a_delay_moves_the_first_run_to_the_first_fire_time_after_it() -> None:
    """With delay 45 min from 10:20 the first run is the first fire time at or after 11:05."""
    starts = runs(
        "*/15 * * * *",
        "UTC",
        utc(2026, 6, 1, 10, 20),
        utc(2026, 6, 1, 11, 20),
        delay=timedelta(minutes=45),
    )
    assert ["2026-06-01T11:15+00:00"] == starts


class DuckCron:
    """A duck-typed job with a Cron period and no delay attribute."""

    name = "duck"

    def __init__(self, clock: ManualClock) -> None:
        self.period = Cron("*/10 * * * *")
        self.clock = clock
        self.starts: list[datetime] = []

    def run(self, token: CancellationToken) -> None:
        self.starts.append(self.clock.now())


def test_a_duck_typed_cron_job_without_delay_starts_on_its_calendar() -> None:
    """A duck-typed job with a Cron and no delay runs at its first fire time, not 3 min late."""
    clock = ManualClock(utc(2026, 6, 1, 10, 0))
    job = DuckCron(clock)
    with JobHost([job], clock=clock) as host:
        run_until(clock, host, utc(2026, 6, 1, 10, 25))
    assert [utc(2026, 6, 1, 10, 0), utc(2026, 6, 1, 10, 10), utc(2026, 6, 1, 10, 20)] == job.starts


def test_a_run_that_overruns_two_fire_times_is_followed_by_one_run() -> None:
    """A 25-minute run of a */10 job overruns 00:10 and 00:20: one run at 00:25, then 00:30."""
    clock = ManualClock(utc(2026, 6, 1, 0, 0))

    def long_first(_token: CancellationToken) -> None:
        if len(job.starts) == 1:
            clock.advance(timedelta(minutes=25))

    job = CalendarJob(clock, Cron("*/10 * * * *"), body=long_first)
    with JobHost([job], clock=clock) as host:
        run_until(clock, host, utc(2026, 6, 1, 0, 45))
    assert ["00:00", "00:25", "00:30", "00:40"] == [s[11:16] for s in job.starts]


@pytest.mark.parametrize(
    ("strategy", "next_delay", "run_minutes", "expected"),
    [
        pytest.param(NextExecution.NONE, None, 0, ["10:20", "11:00", "12:00"], id="none"),
        pytest.param(NextExecution.NONE, None, 50, ["10:20", "12:00"], id="none-overshoots-one"),
        pytest.param(
            NextExecution.NONE, None, 110, ["10:20", "12:10", "13:00"], id="none-overshoots-two"
        ),
        pytest.param(NextExecution.RESET, None, 0, ["10:20", "12:00"], id="reset"),
        pytest.param(NextExecution.REPLACE, None, 0, ["10:20", "12:00"], id="replace"),
        pytest.param(
            NextExecution.NONE,
            timedelta(minutes=10),
            0,
            ["10:20", "10:30", "11:00", "12:00"],
            id="next-delay",
        ),
    ],
)
def test_triggers_on_an_hourly_calendar(
    strategy: NextExecution, next_delay: timedelta | None, run_minutes: float, expected: list[str]
) -> None:
    """A trigger at 10:20 on an hourly job gives the runs each strategy promises."""
    clock = ManualClock(utc(2026, 6, 1, 10, 5))

    def body(_token: CancellationToken) -> None:
        if len(job.starts) == 1:
            clock.advance(timedelta(minutes=run_minutes))

    job = CalendarJob(clock, Cron("0 * * * *"), body=body)
    with JobHost([job], clock=clock) as host:
        clock.wait_for_waiters(1)
        clock.advance(timedelta(minutes=15))
        clock.wait_for_waiters(1)
        assert host.trigger(job, strategy, next_delay=next_delay)
        run_until(clock, host, utc(2026, 6, 1, 13, 30))
    assert expected == [s[11:16] for s in job.starts if s < "2026-06-01T13:30"][: len(expected)]


def test_switching_between_period_and_calendar_while_waiting() -> None:
    """Period -> Cron -> period while waiting: each change re-plans the wait at once."""
    clock = ManualClock(utc(2026, 6, 1, 0, 0))
    job = CalendarJob(clock, timedelta(hours=1), delay=timedelta(0))
    with JobHost([job], clock=clock) as host:
        run_until(clock, host, utc(2026, 6, 1, 0, 10))  # ran at 00:00, waits for 01:00
        job.period = Cron("*/15 * * * *")  # next: the first fire time after 00:10
        clock.wait_for_waiters(1)
        after_cron = host.status()[0].next_run
        run_until(clock, host, utc(2026, 6, 1, 0, 20))  # ran at 00:15
        job.period = timedelta(minutes=30)  # next: last start + 30 min
        clock.wait_for_waiters(1)
        after_period = host.status()[0].next_run
        run_until(clock, host, utc(2026, 6, 1, 1, 0))
    assert (utc(2026, 6, 1, 0, 15), utc(2026, 6, 1, 0, 45), ["00:00", "00:15", "00:45"]) == (
        after_cron,
        after_period,
        [s[11:16] for s in job.starts],
    )


def test_a_job_that_ran_switches_from_an_infinite_period_to_its_calendar() -> None:
    """A job that ran, then had an INFINITE period, follows a Cron given while it waits: the
    next run is the first fire time after the change."""
    clock = ManualClock(utc(2026, 6, 1, 0, 0))
    job = CalendarJob(clock, timedelta(hours=1), delay=timedelta(0))
    with JobHost([job], clock=clock) as host:
        run_until(clock, host, utc(2026, 6, 1, 0, 2))  # ran at 00:00
        job.period = INFINITE
        run_until(clock, host, utc(2026, 6, 1, 0, 4))
        job.period = Cron("*/10 * * * *")
        clock.wait_for_waiters(1)
        planned = host.status()[0].next_run
        run_until(clock, host, utc(2026, 6, 1, 0, 25))
    assert (utc(2026, 6, 1, 0, 10), ["00:00", "00:10", "00:20"]) == (
        planned,
        [s[11:16] for s in job.starts],
    )


def test_a_wall_clock_step_forward_is_noticed_within_a_minute() -> None:
    """The wall clock jumps 2 h past a 03:00 fire time: the job runs within 60 s, once."""
    clock = ManualClock(utc(2026, 6, 1, 2, 0))
    job = CalendarJob(clock, Cron("0 3 * * *"))
    with JobHost([job], clock=clock):
        clock.wait_for_waiters(1)
        clock.step_wall_clock(timedelta(hours=2))  # now 04:00 on the wall, monotonic unmoved
        clock.advance(60)
        clock.wait_for_waiters(1)
        clock.advance(3600)
        clock.wait_for_waiters(1)
    assert ["2026-06-01T04:01+00:00"] == job.starts


def test_a_wall_clock_step_over_many_fire_times_gives_one_run() -> None:
    """A */10 job, the wall clock stepped 2 h forward (twelve fire times jumped): one run
    within 60 s of monotonic time, then the calendar resumes at the next fire time."""
    clock = ManualClock(utc(2026, 6, 1, 2, 5))
    job = CalendarJob(clock, Cron("*/10 * * * *"))
    with JobHost([job], clock=clock) as host:
        clock.wait_for_waiters(1)
        clock.step_wall_clock(timedelta(hours=2))  # 04:05 on the wall
        clock.advance(60)
        clock.wait_for_waiters(1)
        after_step = list(job.starts)
        run_until(clock, host, utc(2026, 6, 1, 4, 25))
    assert ["2026-06-01T04:06+00:00"] == after_step
    assert ["04:06", "04:10", "04:20"] == [s[11:16] for s in job.starts]


def test_a_wall_clock_step_back_delays_the_run_and_never_repeats_it() -> None:
    """After running at 03:00, the wall clock steps back 1 h: 03:00 is not run again."""
    clock = ManualClock(utc(2026, 6, 1, 2, 59))
    job = CalendarJob(clock, Cron("0 3 * * *"))
    with JobHost([job], clock=clock) as host:
        run_until(clock, host, utc(2026, 6, 1, 3, 30))
        clock.step_wall_clock(timedelta(hours=-1))
        run_until(clock, host, utc(2026, 6, 2, 3, 30))
    assert ["2026-06-01T03:00+00:00", "2026-06-02T03:00+00:00"] == job.starts


@pytest.mark.parametrize("kind", [RuntimeError, SystemExit])
def test_a_failing_cron_job_keeps_its_calendar(
    kind: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """A job that raises at every run (SystemExit too) still runs at each fire time; each
    failure is logged with its traceback, published as JobFailed and counted."""
    clock = ManualClock(utc(2026, 6, 1, 0, 0))

    def fail(_token: CancellationToken) -> None:
        raise kind("boom")

    job = CalendarJob(clock, Cron("*/30 * * * *"), body=fail)
    host = JobHost([job], clock=clock)
    failed: list[BaseException | None] = []
    host.subscribe(JobFailed, lambda n: failed.append(n.exception))
    with caplog.at_level(logging.ERROR, logger="recurjobs"), host:
        run_until(clock, host, utc(2026, 6, 1, 1, 10))
        failures = host.status()[0].failures
    assert (["00:00", "00:30", "01:00"], 3) == ([s[11:16] for s in job.starts], failures)
    assert [kind] * 3 == [type(e) for e in failed]
    assert [("CalendarJob failed", kind)] * 3 == [
        (r.getMessage(), r.exc_info[0] if r.exc_info else None) for r in caplog.records
    ]


def test_stop_while_waiting_for_a_far_fire_time_is_prompt() -> None:
    """A host whose job waits for next year's fire time stops at once (True)."""
    clock = ManualClock(utc(2026, 6, 1, 0, 0))
    job = CalendarJob(clock, Cron("0 0 1 1 *"))
    host = JobHost([job], clock=clock).start()
    clock.wait_for_waiters(1)
    began = time.monotonic()
    assert (True, []) == (host.stop(timeout=10), job.starts)
    assert time.monotonic() - began < 2.0  # at once: a generous bound for a busy machine


def test_status_shows_the_calendar_and_its_next_fire_time() -> None:
    """status() reports the Cron as the period and the next fire time as next_run (UTC)."""
    clock = ManualClock(utc(2026, 3, 28, 12, 0))
    cron = Cron("30 2 * * *", tz="Europe/Amsterdam")
    job = CalendarJob(clock, cron)
    with JobHost([job], clock=clock) as host:
        clock.wait_for_waiters(1)
        first = host.status()[0]
        run_until(clock, host, utc(2026, 3, 29, 12, 0))
        second = host.status()[0]
    # 02:30 does not exist on 29 March (it runs at 03:00 CEST, 01:00 UTC); then 02:30 CEST.
    assert (cron, utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)) == (
        first.period,
        first.next_run,
        second.next_run,
    )


def test_one_watch_notices_a_wall_clock_step_for_every_calendar_job() -> None:
    """Three calendar jobs, wall clock stepped 02:00 -> 04:00: the two due run within 60 s."""
    clock = ManualClock(utc(2026, 6, 1, 2, 0))
    jobs = [CalendarJob(clock, Cron(e)) for e in ("0 3 * * *", "10 3 * * *", "0 5 * * *")]
    with JobHost(jobs, clock=clock):
        clock.wait_for_waiters(3)
        clock.step_wall_clock(timedelta(hours=2))
        clock.advance(60)
        clock.wait_for_waiters(3)
        ran = [len(j.starts) for j in jobs]
    assert [1, 1, 0] == ran


def test_idle_calendar_jobs_share_one_bounded_wait() -> None:
    """Of three idle calendar jobs a day from their fire times, one wakes each minute (it leads
    the watch); the others wait for their fire time in one go."""
    clock = ManualClock(utc(2026, 6, 1, 2, 0))
    jobs = [CalendarJob(clock, Cron(e)) for e in ("0 1 * * *", "5 1 * * *", "10 1 * * *")]
    with JobHost(jobs, clock=clock):
        clock.wait_for_waiters(3)
        for _ in range(3):  # let the lead settle (a hand-over wakes one more job once)
            clock.advance(60)
            clock.wait_for_waiters(3)
        left = [w.deadline - clock.monotonic() for w in clock._parked]
    # One waits at most a minute; the others until their fire time, about 23 hours away.
    assert (1, 2) == (sum(x <= 60 for x in left), sum(x > 80000 for x in left))


class BrokenCalendar(RecurringJob):
    """A Cron job whose period property raises once ``broken`` is set."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(Cron("*/10 * * * *"))
        self.clock = clock
        self.broken = False
        self.starts: list[datetime] = []

    @property  # type: ignore[misc]
    def period(self) -> timedelta | Cron:
        if self.broken:
            raise SystemExit("period is broken")
        return self._period

    def run(self, token: CancellationToken) -> None:
        self.starts.append(self.clock.now())
        self.broken = True


def test_a_calendar_whose_period_property_raises_keeps_the_last_good_calendar(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After the period property starts raising (even SystemExit), the calendar runs on and
    the error is logged."""
    clock = ManualClock(utc(2026, 6, 1, 0, 0))
    job = BrokenCalendar(clock)
    with caplog.at_level(logging.ERROR, logger="recurjobs"), JobHost([job], clock=clock) as host:
        run_until(clock, host, utc(2026, 6, 1, 0, 25))
    assert [utc(2026, 6, 1, 0, 0), utc(2026, 6, 1, 0, 10), utc(2026, 6, 1, 0, 20)] == job.starts
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and all(r.exc_info and r.exc_info[0] is SystemExit for r in errors)
    assert all("raised SystemExit: period is broken" in r.getMessage() for r in errors)


def test_stop_from_inside_a_calendar_run_ends_the_host() -> None:
    """stop() called by a Cron job's own run returns and the host stops (no deadlock)."""
    clock = ManualClock(utc(2026, 6, 1, 0, 0))
    host: JobHost | None = None
    returned = threading.Event()

    def stop_host(_token: CancellationToken) -> None:
        assert host is not None
        host.stop(timeout=5)
        returned.set()

    job = CalendarJob(clock, Cron("* * * * *"), body=stop_host)
    host = JobHost([job], clock=clock)
    began = time.monotonic()
    host.start()  # 00:00 is a fire time: it runs at once
    assert (True, False, True) == (returned.wait(10), host.running, host.stop(timeout=10))
    assert time.monotonic() - began < 2.0  # at once: a generous bound for a busy machine


def test_a_calendar_with_no_fire_time_left_waits_for_triggers_on_a_running_host() -> None:
    """On a host started on 31 December 9999: a yearly job has no fire time from the start, a
    23:59 job runs once and then has none. Neither plans an automatic run (status() says
    next_run None), both stay alive, triggers run them, and stop() ends both threads."""
    clock = ManualClock(datetime(9999, 12, 31, 23, 0, tzinfo=UTC))
    yearly = CalendarJob(clock, Cron("@yearly"))
    last = CalendarJob(clock, Cron("59 23 31 12 *"))
    host = JobHost([yearly, last], clock=clock).start()
    clock.wait_for_waiters(2)
    first = [s.next_run for s in host.status()]
    clock.advance(timedelta(minutes=59))  # 23:59: as far as a datetime reaches
    clock.wait_for_waiters(2)
    ran = (list(yearly.starts), list(last.starts))
    triggered = (host.trigger(yearly), host.trigger(last))
    clock.wait_for_waiters(2)
    after = [(s.next_run, s.alive, s.failures) for s in host.status()]
    stopped = host.stop(timeout=5)
    assert [None, datetime(9999, 12, 31, 23, 59, tzinfo=UTC)] == first
    assert ([], ["9999-12-31T23:59+00:00"]) == ran
    assert (True, True) == triggered
    assert [(None, True, 0)] * 2 == after
    assert (["9999-12-31T23:59+00:00"], ["9999-12-31T23:59+00:00"] * 2) == (
        yearly.starts,
        last.starts,
    )
    assert stopped


class _AttributePeriodJob(CalendarJob):
    """A period kept in a plain attribute of the subclass: no setter, no period_changed."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock, timedelta(hours=1), delay=timedelta(0))
        self.__dict__["period"] = timedelta(hours=1)

    period = timedelta(hours=1)


def test_an_unannounced_switch_to_a_calendar_is_seen_when_the_wait_runs_out() -> None:
    """A job whose period is its own attribute (no signal) and becomes a calendar while the
    loop waits: when the wait for the old plan runs out, the loop reads the period again and
    follows the calendar; the old plan's run never happens."""
    clock = ManualClock(utc(2026, 6, 1, 0, 0))
    job = _AttributePeriodJob(clock)
    with JobHost([job], clock=clock):
        clock.wait_for_waiters(1)
        clock.advance(timedelta(minutes=10))  # ran at 00:00, waits for 01:00
        clock.wait_for_waiters(1)
        job.__dict__["period"] = Cron("5,35 * * * *")  # no signal: the loop learns at 01:00
        for _ in range(20):  # to 01:50 in 5-minute steps
            clock.advance(timedelta(minutes=5))
            clock.wait_for_waiters(1)
    assert ["00:00", "01:05", "01:35"] == [s[11:16] for s in job.starts]
