"""Calendar schedules: the cost of one next fire time, and of 1,000 idle Cron jobs.

``next_after``: the median cost of ``Cron.next_after(t)`` for common expressions, in UTC and in
Europe/Amsterdam, over instants spread through a year (daylight-saving changes included).

Idle: the process CPU time of a host with 1,000 Cron jobs whose next fire time is a day away,
against the same host with 1,000 period jobs (the peer column of that row), each measured in
its own fresh process over the same idle window. Calendar jobs check the wall clock again at
least once a minute; this row shows what that costs.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import Row, repeat, repetitions, settle

ORDER = 25
JOBS = 1000
EXPRESSIONS = ["* * * * *", "0 3 * * *", "*/5 * * * *", "0 9 * * 1-5", "@monthly"]
ZONES = ["UTC", "Europe/Amsterdam"]


def measure_next_after(calls: int) -> dict[str, Any]:
    """Median microseconds of next_after per (expression, zone), over random instants."""
    from recurjobs import Cron

    rng = random.Random(7)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    instants = [base + timedelta(seconds=rng.randint(0, 365 * 86400)) for _ in range(calls)]
    out: dict[str, Any] = {}
    for zone in ZONES:
        for expression in EXPRESSIONS:
            cron = Cron(expression, tz=zone)
            for t in instants[:50]:  # warm up: zone data, caches
                cron.next_after(t)
            samples = []
            for t in instants:
                t0 = time.perf_counter_ns()
                cron.next_after(t)
                samples.append(time.perf_counter_ns() - t0)
            out[f"{expression} ({zone})"] = statistics.median(samples) / 1000.0
    return out


def _idle(jobs: list[Any], idle: float) -> dict[str, Any]:
    from recurjobs import JobHost

    host = JobHost(jobs).start()
    try:
        settle(2.0)
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(idle)
        cpu1, wall1 = time.process_time(), time.monotonic()
        return {"cpu": cpu1 - cpu0, "wall": wall1 - wall0}
    finally:
        host.stop()


def measure_cron_jobs(jobs: int, idle: float) -> dict[str, Any]:
    from recurjobs import CancellationToken, Cron, RecurringJob

    class Nightly(RecurringJob):
        def run(self, token: CancellationToken) -> None:
            pass

    # A fire time about a day away, different minutes so the re-checks do not line up.
    now = datetime.now(UTC)
    crons = [
        Cron(f"{(now.minute + 30 + i) % 60} {(now.hour + 23) % 24} * * *") for i in range(jobs)
    ]
    return _idle([Nightly(c) for c in crons], idle)


def measure_period_jobs(jobs: int, idle: float) -> dict[str, Any]:
    from recurjobs import CancellationToken, RecurringJob

    class Daily(RecurringJob):
        def run(self, token: CancellationToken) -> None:
            pass

    day = timedelta(days=1)
    return _idle([Daily(day, delay=day) for _ in range(jobs)], idle)


def run(quick: bool) -> list[Row]:
    reps = repetitions(quick)
    calls = 2000 if quick else 20000
    res = repeat(__name__, ["measure_next_after"], {"calls": calls}, reps)["measure_next_after"]
    rows = [
        Row(
            "Cron.next_after",
            f"{key}, median of {calls:,} instants",
            "µs",
            [r[key] for r in res],
            limit=20.0,
        )
        for key in res[0]
    ]
    idle = 5.0 if quick else 20.0
    both = repeat(
        __name__, ["measure_cron_jobs", "measure_period_jobs"], {"jobs": JOBS, "idle": idle}, reps
    )
    rows.append(
        Row(
            f"idle, {JOBS:,} Cron jobs vs {JOBS:,} period jobs, {idle:g} s window",
            "process CPU time in the window",
            "ms",
            [r["cpu"] for r in both["measure_cron_jobs"]],
            [r["cpu"] for r in both["measure_period_jobs"]],
            max_ratio=1.0,
            note="peer column: the same host with 1,000 period jobs, not APScheduler",
            scale=1e3,
        )
    )
    return rows
