"""Micro-measurements behind the per-run figures in CHANGELOG.md and docs/performance.md.

Not part of ``run_all.py`` (no target, no peer): it answers "what does one run cost the
library", which the herd benchmarks cannot show through their noise.

* ``loop``: a zero-period recurring job run 50,000 times back to back on one thread; wall time
  per run (the loop's own work around an empty ``run()``).
* ``recorder``: what a run's thread does to record a run in the history (two wall-clock
  stamps, the guarded call, the record, the queue), 200,000 times; time per run.
* ``threads``: 200 jobs x 100 ms for 10 s with history on or off (``--database URL``, default
  ``RECURJOBS_TEST_POSTGRES_URL``); CPU per thread kind from ``/proc/self/task/*/schedstat``
  (Linux), as a percentage of one core.

Usage::

    .venv/bin/python benchmarks/micro_paths.py loop
    .venv/bin/python benchmarks/micro_paths.py recorder
    .venv/bin/python benchmarks/micro_paths.py threads --history on
"""

from __future__ import annotations

import argparse
import collections
import os
import secrets
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
    """Microseconds per run for recording it, as the loop's ``_record`` does."""
    from recurjobs._clock import SystemClock, wall_ms
    from recurjobs._guard import call_hook
    from recurjobs._historyrec import HistoryQueue, Recorder

    stamp = wall_ms(SystemClock())
    sink = Recorder(record_ignored=False, skip=lambda _job: False, name=lambda _job: "job")
    sink.queue = HistoryQueue(RECORDS + 1)
    job = object()

    def one() -> None:
        started = stamp()
        call_hook(str, sink.recurring, job, False, started, stamp(), "executed", None)

    return timeit.timeit(one, number=RECORDS) / RECORDS * 1e6


def threads(history: bool, database: str) -> dict[str, float]:
    """Percent of a core per thread kind over 10 s of 200 jobs x 100 ms."""
    import sqlalchemy as sa

    from recurjobs import CancellationToken, DistributedJobSettings, JobHost, RecurringJob

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
    host = JobHost([Idle() for _ in range(200)], database=database, distributed=settings,
                   history=history)  # fmt: skip
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
    parser.add_argument("what", choices=["loop", "recorder", "threads"])
    parser.add_argument("--history", choices=["on", "off"], default="on")
    parser.add_argument("--database", default=os.environ.get("RECURJOBS_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if args.what == "loop":
        print(f"loop: {loop():.2f} us per run (zero period, back to back, {RUNS:,} runs)")
    elif args.what == "recorder":
        print(f"recorder: {recorder():.2f} us per recorded run ({RECORDS:,} runs)")
    else:
        if not args.database:
            parser.error("threads needs --database URL (or RECURJOBS_TEST_POSTGRES_URL)")
        for kind, share in threads(args.history == "on", args.database).items():
            print(f"{kind:30s} {share:6.2f} % of a core (history {args.history})")


if __name__ == "__main__":
    main()
