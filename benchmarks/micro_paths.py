"""Micro-measurements behind the per-run figures in CHANGELOG.md and docs/performance.md.

Not part of ``run_all.py`` (no target, no peer): it answers "what does one run cost the
library", which the herd benchmarks cannot show through their noise.

* ``loop``: a zero-period recurring job run 50,000 times back to back on one thread; wall time
  per run (the loop's own work around an empty ``run()``).
* ``recorder``: what a run's thread does to record a run in the history (two wall-clock
  stamps, the guarded call, the record, the queue), 200,000 times; time per run.
* ``writer``: the history writer's CPU per record (``time.thread_time()``) writing 20 batches of
  2,000 recurring runs into PostgreSQL (``--database URL``, default
  ``RECURJOBS_TEST_POSTGRES_URL``), as it does once a second at 2,000 runs/s. ``--gap S``
  pauses S seconds between two batches (the writer's own pace is 1 s): on a virtual machine a
  batch written after an idle spell costs several times the CPU of one written right after
  another (cold caches, a vCPU woken from idle).
* ``herd``: 200 jobs x 100 ms all due at the same instant for 5 s (``bench_lateness``'s own
  functions), recurjobs and bare threads alternating, each repetition a fresh process; p99
  lateness, their ratio per repetition and CPU per run (``--reps``, default 7): over the
  whole process, and in the steady state (all threads, seconds 3 to 5, from
  ``/proc/self/task/*/schedstat``; Linux).
* ``startstop``: ``bench_startstop``'s 10,000 idle jobs (``--jobs N``) registered, started and
  stopped, a fresh process per repetition (``--reps``, default 7); the phases, the starting
  thread's CPU, the time the cyclic garbage collector took during ``start()`` (from
  ``gc.callbacks``) and how many objects it tracks per started job. Run it alternately in two
  checkouts (``PYTHONPATH=<other checkout>``) to compare two commits; ``--no-gc`` switches the
  collector off during ``start()`` (an experiment: recurjobs does not do that).
* ``threads``: 200 jobs x 100 ms for 10 s with history on or off (``--database URL``, default
  ``RECURJOBS_TEST_POSTGRES_URL``); CPU per thread kind from ``/proc/self/task/*/schedstat``
  (Linux), as a percentage of one core. Two variants take the history apart:
  ``--history discard`` records every run but the writer throws each batch away instead of
  writing it (what recording costs the job threads without the writes), and
  ``--history off --distributed`` adds one hourly distributed job without history (the
  poller, heartbeat and database side that history brings, without any recording).

Usage::

    .venv/bin/python benchmarks/micro_paths.py loop
    .venv/bin/python benchmarks/micro_paths.py recorder
    .venv/bin/python benchmarks/micro_paths.py writer
    .venv/bin/python benchmarks/micro_paths.py writer --gap 0.3
    .venv/bin/python benchmarks/micro_paths.py herd
    .venv/bin/python benchmarks/micro_paths.py startstop
    .venv/bin/python benchmarks/micro_paths.py threads --history on
    .venv/bin/python benchmarks/micro_paths.py threads --history discard
    .venv/bin/python benchmarks/micro_paths.py threads --history off --distributed
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
import timeit
from datetime import timedelta

RUNS = 50_000
RECORDS = 200_000


def loop() -> float:
    """Microseconds per run of a zero-period job, back to back."""
    from recurjobs import CancellationToken, JobHost, RecurringJob

    done = threading.Event()

    class Zero(RecurringJob):
        def __init__(self) -> None:
            super().__init__(timedelta(0), delay=timedelta(0))
            self.count = 0

        def run(self, token: CancellationToken) -> None:
            self.count += 1
            if self.count == RUNS:
                done.set()

    host = JobHost([Zero()])
    began = time.perf_counter()
    host.start()
    done.wait()
    elapsed = time.perf_counter() - began
    host.stop()
    return elapsed / RUNS * 1e6


def recorder() -> float:
    """Microseconds per run for recording it, as the loop's ``_run_once`` does."""
    from recurjobs._clock import SystemClock, wall_seconds
    from recurjobs._guard import call_hook
    from recurjobs._historyrec import HistoryQueue, Recorder

    stamp = wall_seconds(SystemClock())
    sink = Recorder(record_ignored=False, skip=lambda _job: False, name=lambda _job: "job")
    sink.queue = HistoryQueue(RECORDS + 1)
    job = object()

    def one() -> None:
        started = stamp() * 1000.0
        call_hook(str, sink.recurring, job, False, started, stamp() * 1000.0, "executed", None)

    return timeit.timeit(one, number=RECORDS) / RECORDS * 1e6


def writer(database: str, gap: float = 0.0) -> float:
    """Microseconds of the writer thread's CPU per record, in batches of 2,000, ``gap``
    seconds apart (only the writes are timed)."""
    import sqlalchemy as sa

    from recurjobs._historyrec import HistoryQueue, Record
    from recurjobs.sql import JobStore
    from recurjobs.sql._history import HistoryTables
    from recurjobs.sql._historywriter import BATCH, HistoryWriter

    prefix = f"m{secrets.token_hex(3)}_"
    tables = HistoryTables(prefix)
    store = JobStore(database, table_prefix=prefix)
    tables.metadata.create_all(store.engine)
    writer = HistoryWriter(queue=HistoryQueue(BATCH), store=store, tables=tables, host="bench")
    now = time.time() * 1000.0

    def batch() -> list[Record]:
        return [
            (f"job{i % 200}", "schedule", now + i, now + i + 3.3, "executed")
            for i in range(BATCH)
        ]  # fmt: skip

    try:
        writer._write(batch())  # connect and warm up first
        batches = [batch() for _ in range(20)]
        used = 0.0
        for records in batches:
            if gap:
                time.sleep(gap)
            began = time.thread_time()
            writer._write(records)
            used += time.thread_time() - began
    finally:
        store.dispose()
        engine = sa.create_engine(database)
        tables.metadata.drop_all(engine)
        engine.dispose()
    return used / (20 * BATCH) * 1e6


def _threads_cpu_ns() -> int:
    """CPU time of all this process's threads so far, in ns (Linux; 0 elsewhere)."""
    total = 0
    for task in glob.glob("/proc/self/task/*/schedstat"):
        try:
            with open(task) as f:
                total += int(f.read().split()[0])
        except OSError:  # the thread ended meanwhile
            continue
    return total


def herd_one(kind: str) -> dict[str, float]:
    """One repetition of the herd in this process: p99 lateness (s), CPU per run (us) over the
    whole process, and CPU per run in the steady state (us): seconds 3 to 5 after the start,
    past the threads' start-up and the first runs, without the import of the library."""
    import bench_lateness

    steady: list[int] = []

    def sample() -> None:
        time.sleep(3.0)
        steady.append(_threads_cpu_ns())
        time.sleep(2.0)
        steady.append(_threads_cpu_ns())

    threading.Thread(target=sample, daemon=True).start()
    began = time.process_time()
    if kind == "bare":
        result = bench_lateness.measure_bare_threads(200, 0.1, 5.0, 1.0)
    else:
        result = bench_lateness.measure_recurjobs(200, 0.1, 5.0, 1.0, aligned=True)
    return {
        "p99": result["p99"],
        "cpu_us": (time.process_time() - began) / 10_000 * 1e6,
        # 200 jobs x 20 periods in the two seconds sampled
        "steady_us": (steady[1] - steady[0]) / 4_000 / 1e3 if len(steady) == 2 else math.nan,
    }


def herd(reps: int) -> None:
    """Alternate bare threads and recurjobs, a fresh process each; print each pair, medians."""
    ratios: list[float] = []
    cpu: dict[str, list[float]] = {"bare": [], "recurjobs": []}
    steady: dict[str, list[float]] = {"bare": [], "recurjobs": []}
    for rep in range(1, reps + 1):
        pair: dict[str, dict[str, float]] = {}
        for kind in ("bare", "recurjobs"):
            out = subprocess.run(
                [sys.executable, __file__, "herd-one", kind],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            pair[kind] = json.loads(out)
            cpu[kind].append(pair[kind]["cpu_us"])
            steady[kind].append(pair[kind]["steady_us"])
        ratios.append(pair["recurjobs"]["p99"] / pair["bare"]["p99"])
        print(
            f"rep {rep}: p99 bare {pair['bare']['p99'] * 1e3:.2f} ms, recurjobs "
            f"{pair['recurjobs']['p99'] * 1e3:.2f} ms, ratio {ratios[-1]:.2f}; CPU per run "
            f"{pair['bare']['cpu_us']:.1f} vs {pair['recurjobs']['cpu_us']:.1f} us (steady "
            f"{pair['bare']['steady_us']:.1f} vs {pair['recurjobs']['steady_us']:.1f} us)"
        )
    print(
        f"median ratio {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}); "
        f"CPU per run {statistics.median(cpu['bare']):.1f} us bare, "
        f"{statistics.median(cpu['recurjobs']):.1f} us recurjobs; in the steady state "
        f"{statistics.median(steady['bare']):.1f} us bare, "
        f"{statistics.median(steady['recurjobs']):.1f} us recurjobs"
    )


def startstop_one(jobs: int, collect: bool) -> dict[str, float]:
    """``bench_startstop.measure_recurjobs`` with the details of ``start()``, in this process."""
    import bench_startstop

    return bench_startstop.measure_recurjobs(jobs, detail=True, collect=collect)


def startstop(reps: int, jobs: int, collect: bool) -> None:
    """``startstop_one`` in a fresh process per repetition; print each, then the medians."""
    results: list[dict[str, float]] = []
    off = [] if collect else ["--no-gc"]
    for rep in range(1, reps + 1):
        out = subprocess.run(
            [sys.executable, __file__, "startstop-one", "--jobs", str(jobs), *off],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(json.loads(out))
        r = results[-1]
        print(
            f"rep {rep}: total {r['total']:.2f} s (register {r['register']:.3f}, start "
            f"{r['start']:.2f}, stop {r['stop']:.2f}); start: {r['start_cpu']:.2f} s CPU of the "
            f"starting thread, {r['start_gc']:.3f} s garbage collection, "
            f"{r['objects_per_job']:.1f} tracked objects per job"
        )
    medians = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(
        f"median of {reps} ({jobs:,} jobs): total {medians['total']:.2f} s, start "
        f"{medians['start']:.2f} s, stop {medians['stop']:.2f} s, starting thread's CPU "
        f"{medians['start_cpu']:.2f} s, garbage collection {medians['start_gc']:.3f} s, "
        f"{medians['objects_per_job']:.1f} tracked objects per job"
    )


def threads(history: str, database: str, distributed: bool = False) -> dict[str, float]:
    """Percent of a core per thread kind over 10 s of 200 jobs x 100 ms; ``history`` is
    "on", "off" or "discard" (see the module docstring)."""
    import sqlalchemy as sa

    from recurjobs import (
        CancellationToken,
        DistributedJob,
        DistributedJobSettings,
        JobHost,
        RecurringJob,
    )

    if history == "discard":  # a measurement only: the writer takes each batch and drops it
        from recurjobs.sql import _historywriter

        _historywriter.HistoryWriter._write = lambda self, batch: None  # type: ignore[method-assign]

    class Hourly(DistributedJob):
        def __init__(self) -> None:
            super().__init__(name="micro-hourly", period=timedelta(hours=1))

        def execute(self, token: CancellationToken) -> None:
            pass

    class Idle(RecurringJob):
        def __init__(self) -> None:
            super().__init__(timedelta(seconds=0.1), delay=timedelta(seconds=1))

        def run(self, token: CancellationToken) -> None:
            pass

    def cpu(native_id: int | None) -> float:
        try:
            with open(f"/proc/self/task/{native_id}/schedstat") as f:
                return int(f.read().split()[0]) / 1e9
        except FileNotFoundError:
            return 0.0

    def snapshot() -> collections.defaultdict[str, float]:
        seen: collections.defaultdict[str, float] = collections.defaultdict(float)
        for t in threading.enumerate():
            kind = "job threads" if t.name.startswith("recurjobs:") else t.name
            seen[kind] += cpu(t.native_id)
        seen["whole process"] = time.process_time()
        return seen

    prefix = f"m{secrets.token_hex(3)}_"
    settings = DistributedJobSettings(table_prefix=prefix)
    jobs: list[object] = [Idle() for _ in range(200)]
    if distributed:
        jobs.append(Hourly())
    host = JobHost(jobs, database=database, distributed=settings, history=history != "off")
    host.start()
    time.sleep(1.5)
    first = snapshot()
    time.sleep(10)
    last = snapshot()
    host.stop()
    engine = sa.create_engine(database)
    metadata = sa.MetaData()
    metadata.reflect(engine, only=lambda name, _: name.startswith(prefix))
    metadata.drop_all(engine)
    engine.dispose()
    return {kind: 100 * (last[kind] - first.get(kind, 0.0)) / 10 for kind in sorted(last)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = [
        "loop",
        "recorder",
        "writer",
        "herd",
        "herd-one",
        "startstop",
        "startstop-one",
        "threads",
    ]
    parser.add_argument("what", choices=what)
    parser.add_argument("kind", nargs="?", choices=["bare", "recurjobs"], help="herd-one only")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--history", choices=["on", "off", "discard"], default="on")
    parser.add_argument("--distributed", action="store_true", help="threads: one hourly job")
    parser.add_argument("--jobs", type=int, default=10_000, help="startstop: how many jobs")
    parser.add_argument(
        "--no-gc", action="store_true", help="startstop: garbage collector off in start()"
    )
    parser.add_argument("--gap", type=float, default=0.0, help="writer: seconds between batches")
    parser.add_argument("--database", default=os.environ.get("RECURJOBS_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if args.what == "loop":
        print(f"loop: {loop():.2f} us per run (zero period, back to back, {RUNS:,} runs)")
    elif args.what == "recorder":
        print(f"recorder: {recorder():.2f} us per recorded run ({RECORDS:,} runs)")
    elif args.what == "writer":
        if not args.database:
            parser.error("writer needs --database URL (or RECURJOBS_TEST_POSTGRES_URL)")
        for _ in range(3):
            per_record = writer(args.database, args.gap)
            print(
                f"writer: {per_record:.2f} us of CPU per record (20 x 2,000 records, "
                f"{args.gap:g} s apart)"
            )
    elif args.what == "herd":
        herd(args.reps)
    elif args.what == "herd-one":
        print(json.dumps(herd_one(args.kind or "recurjobs")))
    elif args.what == "startstop":
        startstop(args.reps, args.jobs, not args.no_gc)
    elif args.what == "startstop-one":
        print(json.dumps(startstop_one(args.jobs, not args.no_gc)))
    else:
        if not args.database:
            parser.error("threads needs --database URL (or RECURJOBS_TEST_POSTGRES_URL)")
        label = f"history {args.history}" + (", distributed" if args.distributed else "")
        for kind, share in threads(args.history, args.database, args.distributed).items():
            print(f"{kind:30s} {share:6.2f} % of a core ({label})")


if __name__ == "__main__":
    main()
