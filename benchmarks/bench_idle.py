"""Idle cost: CPU time a process spends while 1,000 registered jobs wait for their 1 h period.

The jobs are started (first run an hour away), the process settles for a second, then the
process-wide CPU time (``time.process_time()``: user + system of every thread) is read before
and after a 10 s idle window in which the main thread only sleeps. Everything the scheduler
does in the background while nothing is due shows up here: timer wake-ups, polling, GC.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from _common import Row, repeat, repetitions, settle

ORDER = 20
JOBS = 1000
HOUR = 3600.0


def _idle_window(seconds: float) -> dict[str, Any]:
    settle(1.0)
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu1, wall1 = time.process_time(), time.monotonic()
    return {"cpu": cpu1 - cpu0, "wall": wall1 - wall0}


def measure_recurjobs(jobs: int, idle: float) -> dict[str, Any]:
    from recurjobs import CancellationToken, JobHost, RecurringJob

    class Idle(RecurringJob):
        def run(self, token: CancellationToken) -> None:
            pass

    hour = timedelta(seconds=HOUR)
    host = JobHost([Idle(hour, delay=hour) for _ in range(jobs)]).start()
    try:
        return _idle_window(idle)
    finally:
        host.stop()


def measure_apscheduler(jobs: int, idle: float) -> dict[str, Any]:
    from datetime import UTC

    from apscheduler.schedulers.background import BackgroundScheduler

    def idle_job() -> None:
        pass

    scheduler = BackgroundScheduler(timezone=UTC)
    for _ in range(jobs):
        scheduler.add_job(idle_job, "interval", seconds=HOUR)
    scheduler.start()
    try:
        return _idle_window(idle)
    finally:
        scheduler.shutdown(wait=True)


def run(quick: bool) -> list[Row]:
    idle = 2.0 if quick else 10.0
    res = repeat(
        __name__,
        ["measure_recurjobs", "measure_apscheduler"],
        {"jobs": JOBS, "idle": idle},
        repetitions(quick),
    )
    ours = [r["cpu"] for r in res["measure_recurjobs"]]
    peer = [r["cpu"] for r in res["measure_apscheduler"]]
    name = f"idle, {JOBS:,} jobs x 1 h period, {idle:g} s window"
    return [Row(name, "process CPU time in the window", "ms", ours, peer, limit=0.020, scale=1e3)]
