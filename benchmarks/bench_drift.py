"""Drift: does a fast job stay on its original grid?

One job with a 10 ms period runs 1,000 times. Drift is the 1,000th run's start minus the plan
``first planned start + 999 * period``: a scheduler that planned each run from the previous
run's *actual* start would be late by 1,000 wake-up latencies here; a drift-free one only by
the last run's own wake-up latency.

recurjobs: first run 100 ms after the runner started (``JobStarting`` stamps the moment on
``time.monotonic()``); the job stamps ``time.monotonic()`` at entry. A run that starts more
than one period late is an overrun under SPEC 3 (one catch-up run, then the plan re-anchors),
so such runs are counted too. APScheduler: an interval trigger with ``start_date`` 100 ms ahead,
stamps on ``time.time()`` (its planning clock).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import Row, repeat, repetitions

ORDER = 60
PERIOD = 0.01
DELAY = 0.1


def measure_recurjobs(runs: int, period: float) -> dict[str, Any]:
    from recurjobs import CancellationToken, JobHost, JobStarting, RecurringJob

    starts: list[float] = []
    done = threading.Event()

    class Fast(RecurringJob):
        def run(self, token: CancellationToken) -> None:
            starts.append(time.monotonic())
            if len(starts) >= runs:
                done.set()

    host = JobHost([Fast(timedelta(seconds=period), delay=timedelta(seconds=DELAY))])
    base: list[float] = []
    host.subscribe(JobStarting, lambda n: base.append(time.monotonic()))
    host.start()
    finished = done.wait(runs * period * 3 + 10)
    host.stop()
    if not finished:
        raise RuntimeError(f"only {len(starts)} of {runs} runs in time")
    first = base[0] + DELAY
    late = [s - (first + k * period) for k, s in enumerate(starts[:runs])]
    return {"drift": late[runs - 1], "overruns": sum(1 for x in late if x > period)}


def measure_apscheduler(runs: int, period: float) -> dict[str, Any]:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers import interval

    # APScheduler 3 at run time (_common.APS3_DIR); mypy sees the bench extra's 4.x, whose
    # IntervalTrigger takes other arguments.
    IntervalTrigger: Any = interval.IntervalTrigger  # noqa: N806

    starts: list[float] = []
    done = threading.Event()

    def fast() -> None:
        starts.append(time.time())
        if len(starts) >= runs:
            done.set()

    scheduler = BackgroundScheduler(timezone=UTC)
    start = datetime.now(UTC) + timedelta(seconds=DELAY)
    scheduler.add_job(fast, IntervalTrigger(seconds=period, start_date=start, timezone=UTC))
    scheduler.start()
    finished = done.wait(runs * period * 3 + 10)
    scheduler.shutdown(wait=True)
    if not finished:
        raise RuntimeError(f"only {len(starts)} of {runs} runs in time")
    first = start.timestamp()
    late = [s - (first + k * period) for k, s in enumerate(starts[:runs])]
    return {"drift": late[runs - 1], "overruns": sum(1 for x in late if x > period)}


def run(quick: bool) -> list[Row]:
    runs = 300 if quick else 1000
    res = repeat(
        __name__,
        ["measure_recurjobs", "measure_apscheduler"],
        {"runs": runs, "period": PERIOD},
        repetitions(quick),
    )
    ours, peer = res["measure_recurjobs"], res["measure_apscheduler"]
    overruns = (sum(r["overruns"] for r in ours), sum(r["overruns"] for r in peer))
    name = f"drift, 1 job x {int(PERIOD * 1000)} ms, {runs:,} runs"
    return [
        Row(
            name,
            f"last run vs first plan + {runs - 1} x P",
            "ms",
            [r["drift"] for r in ours],
            [r["drift"] for r in peer],
            limit=0.005,
            scale=1e3,
            note=f"runs > 1 period late, all reps: {overruns[0]} vs {overruns[1]}",
        ),
    ]
