"""Trigger latency: from asking for a run to the run's first line.

recurjobs: one ``TriggerableJob`` with ``period=INFINITE`` and ``delay=INFINITE`` (it only runs
when triggered). The main thread stamps ``time.monotonic()``, calls ``host.trigger(Job)`` and
waits until the run has stamped its own start and signalled; then it sleeps 2 ms so the job's
thread is parked in its wait again (the measured path is "wake a sleeping job"), and repeats.
APScheduler: one interval job whose next run is ten years away; a trigger is
``job.modify(next_run_time=now)``, which stores the change and wakes the scheduler thread, which
submits the job to its thread pool. 50 untimed warm-up triggers precede the timed ones.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from _common import Row, percentile, repeat, repetitions

ORDER = 40
WARM_UP = 50
PAUSE = 0.002


def _stats(lat: list[float]) -> dict[str, Any]:
    return {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat)}


def measure_recurjobs(triggers: int) -> dict[str, Any]:
    from recurjobs import INFINITE, CancellationToken, JobHost, RecurringJob, TriggerableJob

    ran = threading.Event()
    started = [0.0]

    class OnDemand(RecurringJob, TriggerableJob):
        def run(self, token: CancellationToken) -> None:
            started[0] = time.monotonic()
            ran.set()

    host = JobHost([OnDemand(INFINITE, delay=INFINITE)]).start()
    lat: list[float] = []
    try:
        for i in range(WARM_UP + triggers):
            ran.clear()
            time.sleep(PAUSE)
            t0 = time.monotonic()
            if not host.trigger(OnDemand):
                raise RuntimeError("trigger refused")
            if not ran.wait(5.0):
                raise RuntimeError("triggered run did not start within 5 s")
            if i >= WARM_UP:
                lat.append(started[0] - t0)
    finally:
        host.stop()
    return _stats(lat)


def measure_apscheduler(triggers: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    from apscheduler.schedulers.background import BackgroundScheduler

    ran = threading.Event()
    started = [0.0]

    def on_demand() -> None:
        started[0] = time.monotonic()
        ran.set()

    scheduler = BackgroundScheduler(timezone=UTC)
    job = scheduler.add_job(on_demand, "interval", days=3650)
    scheduler.start()
    lat: list[float] = []
    try:
        for i in range(WARM_UP + triggers):
            ran.clear()
            time.sleep(PAUSE)
            t0 = time.monotonic()
            job.modify(next_run_time=datetime.now(UTC))
            if not ran.wait(5.0):
                raise RuntimeError("triggered run did not start within 5 s")
            if i >= WARM_UP:
                lat.append(started[0] - t0)
    finally:
        scheduler.shutdown(wait=True)
    return _stats(lat)


def run(quick: bool) -> list[Row]:
    triggers = 200 if quick else 1000
    res = repeat(
        __name__,
        ["measure_recurjobs", "measure_apscheduler"],
        {"triggers": triggers},
        repetitions(quick),
    )
    ours, peer = res["measure_recurjobs"], res["measure_apscheduler"]
    name = f"trigger latency, {triggers:,} triggers"

    def col(rs: list[dict[str, Any]], key: str) -> list[float]:
        return [r[key] for r in rs]

    return [
        Row(name, "p50", "ms", col(ours, "p50"), col(peer, "p50"), limit=0.0003, scale=1e3),
        Row(name, "p99", "ms", col(ours, "p99"), col(peer, "p99"), limit=0.002, scale=1e3),
        Row(name, "max", "ms", col(ours, "max"), col(peer, "max"), scale=1e3),
    ]
