"""Memory: resident set size added per registered, idle job.

RSS is read (``/proc/self/statm``) after imports and warm-up, then N = 1,000 jobs are created,
registered and started (first run an hour away) and, once every thread is parked, RSS is read
again: (after - before) / N. Only touched pages count, so a thread's 8 MiB default stack costs
what the thread actually wrote to it, plus its guard page's page-table and kernel bookkeeping
(which RSS does not show). The same is done for APScheduler's 1,000 interval jobs.

Two extra recurjobs variants show where the bytes go: the job objects alone (no host), and
the host started with ``threading.stack_size(64 KiB)`` in force.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from _common import Row, repeat, repetitions, rss_bytes, settle, vms_bytes

ORDER = 30
JOBS = 1000
HOUR = 3600.0


def _threads() -> int:
    return threading.active_count()


def _warm_up() -> tuple[int, int]:
    # A first thread, a first datetime, a first Event wait: one-off costs stay out of "before".
    t = threading.Thread(target=lambda: threading.Event().wait(0.01))
    t.start()
    t.join()
    settle(0.2)
    return rss_bytes(), vms_bytes()


def measure_recurjobs(jobs: int, stack_kib: int = 0, objects_only: bool = False) -> dict[str, Any]:
    from recurjobs import CancellationToken, JobHost, RecurringJob

    class Idle(RecurringJob):
        def run(self, token: CancellationToken) -> None:
            pass

    if stack_kib:
        threading.stack_size(stack_kib * 1024)
    hour = timedelta(seconds=HOUR)
    warm = JobHost([Idle(hour, delay=hour)]).start()  # imports and first-use costs
    warm.stop()
    before, vms_before = _warm_up()
    items = [Idle(hour, delay=hour) for _ in range(jobs)]
    host = None
    if not objects_only:
        host = JobHost(items).start()
    settle(1.0)
    after, vms_after = rss_bytes(), vms_bytes()
    threads = _threads()
    if host is not None:
        host.stop()
    return {
        "per_job": (after - before) / jobs,
        "threads": threads,
        "vms_per_job": (vms_after - vms_before) / jobs,
    }


def measure_apscheduler(jobs: int) -> dict[str, Any]:
    from datetime import UTC

    from apscheduler.schedulers.background import BackgroundScheduler

    def idle_job() -> None:
        pass

    warm = BackgroundScheduler(timezone=UTC)
    warm.add_job(idle_job, "interval", seconds=HOUR)
    warm.start()
    warm.shutdown()
    before, vms_before = _warm_up()
    scheduler = BackgroundScheduler(timezone=UTC)
    for _ in range(jobs):
        scheduler.add_job(idle_job, "interval", seconds=HOUR)
    scheduler.start()
    settle(1.0)
    after, vms_after = rss_bytes(), vms_bytes()
    threads = _threads()
    scheduler.shutdown(wait=True)
    time.sleep(0)
    return {
        "per_job": (after - before) / jobs,
        "threads": threads,
        "vms_per_job": (vms_after - vms_before) / jobs,
    }


def run(quick: bool) -> list[Row]:
    reps = repetitions(quick)
    kwargs = {"jobs": JOBS}
    res = repeat(__name__, ["measure_recurjobs", "measure_apscheduler"], kwargs, reps)
    objects = repeat(__name__, ["measure_recurjobs"], {**kwargs, "objects_only": True}, reps)
    small = repeat(__name__, ["measure_recurjobs"], {**kwargs, "stack_kib": 64}, reps)

    def per_job(rs: list[dict[str, Any]], key: str = "per_job") -> list[float]:
        return [r[key] / 1024 for r in rs]

    name = f"memory, {JOBS:,} idle jobs"
    threads = res["measure_recurjobs"][0]["threads"], res["measure_apscheduler"][0]["threads"]
    return [
        Row(
            name,
            "RSS per job",
            "KiB",
            per_job(res["measure_recurjobs"]),
            per_job(res["measure_apscheduler"]),
            limit=40.0,
            note=f"threads {threads[0]} vs {threads[1]}",
        ),
        Row(
            name,
            "virtual memory (address space) per job",
            "KiB",
            per_job(res["measure_recurjobs"], "vms_per_job"),
            per_job(res["measure_apscheduler"], "vms_per_job"),
            note="informational",
        ),
        Row(
            name,
            "RSS per job, job objects only (no host)",
            "KiB",
            per_job(objects["measure_recurjobs"]),
            note="informational",
        ),
        Row(
            name,
            "RSS per job with threading.stack_size(64 KiB)",
            "KiB",
            per_job(small["measure_recurjobs"]),
            note="informational",
        ),
    ]
