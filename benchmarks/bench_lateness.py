"""Lateness: how long after its planned moment each run actually starts.

200 jobs, 100 ms period, a 10 s window after a 1 s warm-up delay. Each run stamps its own start
first thing in the job function; lateness is that stamp minus the moment the library had
planned for that run:

* recurjobs plans on ``time.monotonic()``. A job's first run is planned ``delay`` after its
  own runner started (the host publishes ``JobStarting`` immediately before), then every
  ``period`` after the previous *planned* start. The ``JobStarting`` handler stamps
  ``time.monotonic()``, so plan_k = stamp + delay + k * period (the stamp precedes the
  library's own reading by a few microseconds, so lateness is overstated by that much).
  A second figure measures against the single moment ``host.start()`` was called.
* APScheduler plans on wall-clock datetimes and hands each run's planned moment to
  ``EVENT_JOB_EXECUTED`` listeners as ``scheduled_run_time``; the job returns its own
  ``time.time()`` stamp, which the event carries as ``retval``, so every pair is exact.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import Row, median, percentile, repeat, repetitions

ORDER = 10
JOBS = 200
PERIOD = 0.1
DELAY = 1.0


def _summary(late: list[float], expected: int) -> dict[str, Any]:
    return {
        "p50": percentile(late, 50),
        "p99": percentile(late, 99),
        "max": max(late) if late else float("nan"),
        "runs": len(late),
        "expected": expected,
    }


def measure_recurjobs(
    jobs: int, period: float, duration: float, delay: float, aligned: bool = False
) -> dict[str, Any]:
    from recurjobs import CancellationToken, JobHost, JobStarting, RecurringJob

    first_run = time.monotonic() + 3600.0  # the common first run when aligned (set below)

    class Probe(RecurringJob):
        def __init__(self) -> None:
            super().__init__(timedelta(seconds=period), delay=timedelta(seconds=delay))
            self.starts: list[float] = []

        def run(self, token: CancellationToken) -> None:
            self.starts.append(time.monotonic())

    class AlignedProbe(Probe):
        # SPEC 2 lets a subclass compute `delay` in a property. The runner reads it right
        # after its own clock reading, so every job's first run lands on `first_run`
        # (to the microsecond), as if all 200 had been planned from one moment.
        @property
        def delay(self) -> timedelta:
            return timedelta(seconds=first_run - time.monotonic())

        @delay.setter
        def delay(self, value: timedelta) -> None:
            pass

    probes = [(AlignedProbe if aligned else Probe)() for _ in range(jobs)]
    host = JobHost(probes)
    bases: dict[int, float] = {}
    host.subscribe(JobStarting, lambda n: bases.__setitem__(id(n.job), time.monotonic()))
    t_host = time.monotonic()
    first_run = t_host + delay
    host.start()
    window_end = t_host + delay + duration
    time.sleep(max(0.0, window_end - time.monotonic()) + period)
    host.stop()

    late: list[float] = []
    late_host: list[float] = []
    expected = 0
    for probe in probes:
        first = first_run if aligned else bases[id(probe)] + delay
        planned = [first + k * period for k in range(int((window_end - first) / period) + 1)]
        expected += len(planned)
        for k, plan in enumerate(planned):
            if k >= len(probe.starts):
                break
            late.append(probe.starts[k] - plan)
            late_host.append(probe.starts[k] - (t_host + delay + k * period))
    out = _summary(late, expected)
    out["p99_host"] = percentile(late_host, 99)
    out["spread"] = 0.0 if aligned else max(bases.values()) - min(bases.values())
    return out


def measure_apscheduler(
    jobs: int, period: float, duration: float, delay: float, aligned: bool = False
) -> dict[str, Any]:
    from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers import interval

    # APScheduler 3 at run time (_common.APS3_DIR); mypy sees the bench extra's 4.x, whose
    # IntervalTrigger takes other arguments.
    IntervalTrigger: Any = interval.IntervalTrigger  # noqa: N806

    def probe() -> float:
        return time.time()

    pairs: list[tuple[float, float]] = []  # (scheduled, actual), wall clock
    lock = threading.Lock()

    def on_executed(event: JobExecutionEvent) -> None:
        with lock:
            pairs.append((event.scheduled_run_time.timestamp(), event.retval))

    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_listener(on_executed, EVENT_JOB_EXECUTED)
    t_wall = time.time()
    t_mono = time.monotonic()
    common = datetime.fromtimestamp(t_wall, UTC) + timedelta(seconds=delay)
    for _ in range(jobs):
        # Natural: like recurjobs, the first run is `delay` after the job was registered.
        start = common if aligned else datetime.now(UTC) + timedelta(seconds=delay)
        scheduler.add_job(probe, IntervalTrigger(seconds=period, start_date=start, timezone=UTC))
    scheduler.start()
    firsts = [job.trigger.start_date.timestamp() for job in scheduler.get_jobs()]
    window_end = t_wall + delay + duration
    time.sleep(max(0.0, t_mono + delay + duration - time.monotonic()) + period)
    scheduler.shutdown(wait=True)

    late = [actual - planned for planned, actual in pairs if planned <= window_end]
    expected = sum(int((window_end - first) / period) + 1 for first in firsts)
    out = _summary(late, expected)
    out["spread"] = max(firsts) - min(firsts)
    return out


def measure_bare_threads(
    jobs: int, period: float, duration: float, delay: float, aligned: bool = True
) -> dict[str, Any]:
    """The floor for one thread per job: plain threads that wait for a shared grid, no library.

    Each thread sleeps on its own ``Event`` until ``first + k * period`` and stamps the time,
    like a recurjobs job thread minus everything the library does around the wait.
    """
    first = time.monotonic() + delay
    window_end = first + duration
    ticks = int(duration / period) + 1
    late: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        wake = threading.Event()
        mine: list[float] = []
        for k in range(ticks):
            plan = first + k * period
            left = plan - time.monotonic()
            if left > 0:
                wake.wait(left)
            mine.append(time.monotonic() - plan)
        with lock:
            late.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(window_end - time.monotonic() + 30)
    return _summary(late, jobs * ticks)


def run(quick: bool) -> list[Row]:
    duration = 3.0 if quick else 10.0
    reps = repetitions(quick)
    funcs = ["measure_recurjobs", "measure_apscheduler"]
    rows: list[Row] = []
    for aligned in (False, True):
        kwargs = {
            "jobs": JOBS,
            "period": PERIOD,
            "duration": duration,
            "delay": DELAY,
            "aligned": aligned,
        }
        # All due at once, each repetition's p99 moves by a fifth either way on this machine
        # (seven pairs against bare threads ranged 0.83-1.34x on 2026-12-02), so the median
        # of three cannot tell 1.1x from 1.3x: that set runs seven times.
        times = max(reps, 7) if aligned and not quick else reps
        res = repeat(__name__, funcs + (["measure_bare_threads"] if aligned else []), kwargs, times)
        ours, peer = res["measure_recurjobs"], res["measure_apscheduler"]
        how = "all due at once" if aligned else "natural start"
        name = f"lateness, {JOBS} jobs x {int(PERIOD * 1000)} ms, {duration:g} s, {how}"

        def col(rs: list[dict[str, Any]], key: str) -> list[float]:
            return [r[key] for r in rs]

        spread = (
            f"first-run spread {median(col(ours, 'spread')) * 1e3:.1f} vs "
            f"{median(col(peer, 'spread')) * 1e3:.1f} ms"
        )
        rows += [
            Row(name, "p50", "ms", col(ours, "p50"), col(peer, "p50"), scale=1e3),
            Row(
                name,
                "p99",
                "ms",
                col(ours, "p99"),
                col(peer, "p99"),
                # All due at once, the floor is the GIL: its target is the row against the
                # bare threads below.
                limit=None if aligned else 0.002,
                max_ratio=None if aligned else 0.25,
                scale=1e3,
                note=spread,
            ),
            Row(name, "max", "ms", col(ours, "max"), col(peer, "max"), scale=1e3),
        ]
        if aligned:
            bare = res["measure_bare_threads"]
            rows.append(
                Row(
                    name,
                    "p99 of bare Python threads, no scheduler",
                    "ms",
                    col(bare, "p99"),
                    scale=1e3,
                    note="floor of thread-per-job",
                )
            )
            rows.append(
                Row(
                    name,
                    "p99 of recurjobs / p99 of the bare threads, same repetition",
                    "x",
                    [a / b for a, b in zip(col(ours, "p99"), col(bare, "p99"), strict=True)],
                    limit=1.2,
                )
            )
        else:
            rows.append(
                Row(
                    name,
                    "p99 against host.start() + delay + k*P",
                    "ms",
                    col(ours, "p99_host"),
                    scale=1e3,
                    note="informational",
                )
            )
        missed_ours = sum(r["expected"] - r["runs"] for r in ours)
        missed_peer = sum(r["expected"] - r["runs"] for r in peer)
        if missed_ours or missed_peer:
            rows.append(
                Row(
                    name,
                    "runs missing from the window, all reps",
                    "runs",
                    [float(missed_ours)],
                    [float(missed_peer)],
                )
            )
    return rows
