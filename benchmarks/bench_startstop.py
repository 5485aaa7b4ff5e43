"""Start plus stop: wall time to bring N idle jobs up and shut them down again.

recurjobs: the N job objects are built first (untimed: they are the application's objects);
timed are ``JobHost(jobs)`` (registration), ``host.start()`` (one thread per job) and
``host.stop()`` (cancel, wake and join every thread). ``stop()`` must return True.
APScheduler: timed are ``BackgroundScheduler()``, N ``add_job(..., "interval")``, ``start()``
and ``shutdown(wait=True)``. Both with a 1 h period, so no job runs.
The registration, start and stop phases of recurjobs are reported separately as well.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from _common import Row, repeat, repetitions

ORDER = 50
HOUR = 3600.0


def measure_recurjobs(jobs: int, *, detail: bool = False, collect: bool = True) -> dict[str, Any]:
    """``detail`` (``micro_paths.py startstop``): also the starting thread's CPU in ``start()``,
    the garbage collector's time in ``start()`` (``gc.callbacks``) and the objects it tracks
    per started job (counted without a collection, outside the timings). ``collect=False``:
    the collector is switched off during ``start()``, an experiment (see docs/performance.md).
    """
    import gc

    from recurjobs import CancellationToken, JobHost, RecurringJob

    class Idle(RecurringJob):
        def run(self, token: CancellationToken) -> None:
            pass

    hour = timedelta(seconds=HOUR)
    items = [Idle(hour, delay=hour) for _ in range(jobs)]
    collecting = [0.0, 0.0]  # when the running collection began; the total so far

    def timed(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            collecting[0] = time.perf_counter()
        else:
            collecting[1] += time.perf_counter() - collecting[0]

    began = time.perf_counter()
    host = JobHost(items)
    register = time.perf_counter() - began
    out: dict[str, Any] = {}
    if detail:
        tracked = len(gc.get_objects())
        gc.callbacks.append(timed)
    if not collect:
        gc.disable()
    began, cpu = time.perf_counter(), time.thread_time()
    host.start()
    start, cpu = time.perf_counter() - began, time.thread_time() - cpu
    if not collect:
        gc.enable()
    if detail:
        gc.callbacks.remove(timed)
        out["start_cpu"], out["start_gc"] = cpu, collecting[1]
        out["objects_per_job"] = (len(gc.get_objects()) - tracked) / jobs
    began = time.perf_counter()
    if not host.stop():
        raise RuntimeError("stop() reported threads that did not end")
    stop = time.perf_counter() - began
    total = register + start + stop
    return {"total": total, "register": register, "start": start, "stop": stop, **out}


def measure_apscheduler(jobs: int) -> dict[str, Any]:
    from datetime import UTC

    from apscheduler.schedulers.background import BackgroundScheduler

    def idle_job() -> None:
        pass

    t0 = time.perf_counter()
    scheduler = BackgroundScheduler(timezone=UTC)
    for _ in range(jobs):
        scheduler.add_job(idle_job, "interval", seconds=HOUR)
    t1 = time.perf_counter()
    scheduler.start()
    t2 = time.perf_counter()
    scheduler.shutdown(wait=True)
    t3 = time.perf_counter()
    return {"total": t3 - t0, "register": t1 - t0, "start": t2 - t1, "stop": t3 - t2}


def measure_bare_threads(jobs: int) -> dict[str, Any]:
    """The floor of one thread per job: start N plain threads that wait on an Event, set the
    events, join the threads. No library code at all."""
    import threading

    events = [threading.Event() for _ in range(jobs)]
    t1 = time.perf_counter()
    threads = [threading.Thread(target=e.wait, daemon=True) for e in events]
    for t in threads:
        t.start()
    t2 = time.perf_counter()
    for e in events:
        e.set()
    for t in threads:
        t.join()
    t3 = time.perf_counter()
    return {"total": t3 - t1, "register": 0.0, "start": t2 - t1, "stop": t3 - t2}


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    reps = repetitions(quick)
    for jobs, limit in ((1000, 0.5), (10_000, 3.0)):
        funcs = ["measure_recurjobs", "measure_apscheduler", "measure_bare_threads"]
        res = repeat(__name__, funcs, {"jobs": jobs}, reps)
        ours, peer = res["measure_recurjobs"], res["measure_apscheduler"]
        bare = res["measure_bare_threads"]

        def col(rs: list[dict[str, Any]], key: str) -> list[float]:
            return [r[key] for r in rs]

        name = f"start + stop, {jobs:,} jobs"
        rows.append(
            Row(
                name,
                "register + start + stop",
                "s",
                col(ours, "total"),
                col(peer, "total"),
                limit=limit,
            )
        )
        for phase in ("register", "start", "stop"):
            rows.append(
                Row(
                    name,
                    f"{phase} phase",
                    "s",
                    col(ours, phase),
                    col(peer, phase),
                    note="informational",
                )
            )
        rows.append(
            Row(
                name,
                "start + stop of bare threads, no library",
                "s",
                col(bare, "total"),
                note="floor of thread-per-job",
            )
        )
        rows.append(
            Row(
                name,
                "start phase of bare threads (each parks at once)",
                "s",
                col(bare, "start"),
                note="informational",
            )
        )
        # What the library adds to one thread per job, in the same repetition. Informational:
        # the targets are the absolute limits above (docs/decisions.md); bare threads that do
        # nothing but park are the floor, not a bar a library doing its work can be under.
        rows.append(
            Row(
                name,
                "recurjobs total / bare threads total, same repetition",
                "x",
                [a / b for a, b in zip(col(ours, "total"), col(bare, "total"), strict=True)],
                note="informational",
            )
        )
    return rows
