"""``python -m recurjobs demo``: a 25-second tour for newcomers (``make demo``).

Part 1 runs two recurring jobs in this process and triggers one of them. Part 2 starts two
worker processes (``python -m recurjobs demo --worker NAME``) that share one distributed job
through a temporary SQLite file; each worker reports every run's start and end, and the summary
counts double runs from those intervals.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from typing import Any, TextIO

from recurjobs import (
    CancellationToken,
    DistributedJob,
    DistributedJobSettings,
    JobHost,
    NextExecution,
    RecurringJob,
    TriggerableJob,
)

DEFAULT_SECONDS = 24.0
_print_lock = threading.Lock()


def say(text: str = "", out: TextIO | None = None) -> None:
    """Print a whole line at once (threads print too)."""
    with _print_lock:
        print(text, file=out or sys.stdout, flush=True)


class Clock:
    """Seconds since the demo started, for the timeline."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def line(self, who: str, text: str) -> None:
        say(f"  {time.monotonic() - self.t0:6.2f}s  {who:<14} {text}")


# ------------------------------------------------------------------------ part 1
class Heartbeat(RecurringJob):
    """Runs every ``period`` from the start."""

    def __init__(self, clock: Clock, period: float) -> None:
        super().__init__(timedelta(seconds=period), delay=timedelta(0))
        self.clock = clock
        self.runs = 0

    def run(self, token: CancellationToken) -> None:
        self.runs += 1
        self.clock.line("heartbeat", f"run {self.runs}")


class Report(RecurringJob, TriggerableJob):
    """A slower job that may also be run on demand."""

    def __init__(self, clock: Clock, period: float) -> None:
        super().__init__(timedelta(seconds=period), delay=timedelta(seconds=period))
        self.clock = clock
        self.runs = 0

    def run(self, token: CancellationToken) -> None:
        self.runs += 1
        self.clock.line("report", f"run {self.runs}")


def part_one(clock: Clock, scale: float, length: float) -> tuple[int, int]:
    """Two recurring jobs, one trigger with RESET; returns the run counts."""
    beat, report = Heartbeat(clock, 1.0 * scale), Report(clock, 3.0 * scale)
    say("Part 1: recurring jobs in this process")
    say(f"  heartbeat: RecurringJob, period {scale:g}s, delay 0 -> runs at once, then every period")
    say(f"  report:    RecurringJob + TriggerableJob, period {3 * scale:g}s, delay {3 * scale:g}s")
    say(f"  at {4.5 * scale:g}s the demo calls host.trigger(Report, NextExecution.RESET): report")
    say("  runs at once and its schedule restarts from that moment (one period later).")
    say()
    with JobHost([beat, report]) as host:
        time.sleep(4.5 * scale)
        accepted = host.trigger(Report, NextExecution.RESET)
        clock.line("(demo)", f"host.trigger(Report, NextExecution.RESET) -> {accepted}")
        time.sleep(0.2 * scale)
        status = {s.name: s for s in host.status()}["Report"]
        planned = status.next_run.timestamp() - time.time() if status.next_run else float("nan")
        clock.line("(demo)", f"host.status(): report's next automatic run in {planned:.1f}s")
        time.sleep(max(0.0, length - 4.7 * scale))
    return beat.runs, report.runs


# ------------------------------------------------------------------------ part 2
class Sweep(DistributedJob):
    """The shared job: sleeps a varying while, as real work does."""

    name = "demo-sweep"

    def __init__(self, period: float, worker: str) -> None:
        super().__init__(period=timedelta(seconds=period))
        self.length = period * 0.3
        self.worker = worker

    def execute(self, token: CancellationToken) -> None:
        start = time.time()
        token.wait(self.length * random.uniform(0.3, 1.7))
        say(json.dumps({"worker": self.worker, "start": start, "end": time.time()}))


def worker(name: str, database: str | None, seconds: float | None) -> int:
    """One worker process of part 2: a host with the Sweep job, for ``seconds``."""
    if database is None or seconds is None:
        say("recurjobs demo: error: --worker needs --database and --seconds", sys.stderr)
        return 2
    scale = float(os.environ.get("RECURJOBS_DEMO_SCALE", "1"))
    settings = DistributedJobSettings(
        poll_period=timedelta(seconds=0.1 * scale),
        delay=timedelta(0),
        max_execution_time=timedelta(seconds=5 * scale),
    )
    with JobHost([Sweep(1.0 * scale, name)], database=database, distributed=settings):
        say(json.dumps({"worker": name, "ready": os.getpid()}))
        time.sleep(seconds)
    return 0


def _relay(name: str, proc: subprocess.Popen[str], clock: Clock, runs: list[Any]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if "ready" in event:
            clock.line(f"worker {name}", f"host started in process {event['ready']}")
        else:
            runs.append(event)
            took = event["end"] - event["start"]
            clock.line(f"worker {name}", f"ran demo-sweep ({took:.2f}s)")
    proc.wait()
    clock.line(f"worker {name}", "host stopped, process exited")


def part_two(clock: Clock, scale: float, length: float, database: str) -> list[dict[str, Any]]:
    """Two worker processes share one distributed job; returns every recorded run."""
    say()
    say("Part 2: one distributed job, two processes, one database")
    say(f"  demo-sweep: DistributedJob, period {scale:g}s, runs last about {0.3 * scale:.2f}s")
    say("  workers A and B each run a JobHost on the same SQLite file. The job is due one period")
    say("  after its last run ended; whichever worker polls first then claims it with one guarded")
    say("  UPDATE, and the other finds it taken. Worker A leaves early; B carries on alone.")
    say()
    runs: list[dict[str, Any]] = []
    procs: dict[str, subprocess.Popen[str]] = {}
    relays: list[threading.Thread] = []
    command = [sys.executable, "-m", "recurjobs", "demo", "--database", database]
    try:
        for name, share in (("A", 0.6), ("B", 1.0)):
            argv = [*command, "--worker", name, "--seconds", f"{length * share:.3f}"]
            env = {**os.environ, "RECURJOBS_DEMO_SCALE": str(scale)}
            procs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
            relay = threading.Thread(target=_relay, args=(name, procs[name], clock, runs))
            relay.start()
            relays.append(relay)
        for proc in procs.values():
            proc.wait(timeout=length + 60)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for relay in relays:
            relay.join()
    return runs


def overlaps(runs: list[dict[str, Any]]) -> int:
    """How many runs started before an earlier-starting run had ended (double runs)."""
    ordered = sorted(runs, key=lambda r: float(r["start"]))
    count, latest_end = 0, float("-inf")
    for run in ordered:
        if float(run["start"]) < latest_end:
            count += 1
        latest_end = max(latest_end, float(run["end"]))
    return count


def main(*, seconds: float | None = None) -> int:
    """Run both parts and print the summary; ``seconds`` scales the whole demo."""
    total = DEFAULT_SECONDS if seconds is None else max(3.0, seconds)
    scale = total / DEFAULT_SECONDS
    say(f"recurjobs demo: about {total:.0f} seconds, nothing to set up.")
    say()
    clock = Clock()
    beats, reports = part_one(clock, scale, total * 0.4)
    with tempfile.TemporaryDirectory(prefix="recurjobs-demo-") as folder:
        database = f"sqlite:///{os.path.join(folder, 'demo.db')}"
        runs = part_two(clock, scale, total * 0.6, database)
    per_worker = {name: sum(1 for r in runs if r["worker"] == name) for name in ("A", "B")}
    doubles = overlaps(runs)
    say()
    say("Summary")
    say(f"  part 1: heartbeat ran {beats} times, report {reports} times (one of them triggered)")
    counts = f"worker A {per_worker['A']}, worker B {per_worker['B']}"
    say(f"  part 2: demo-sweep ran {len(runs)} times: {counts}")
    say(f"  double runs: {doubles} (runs that overlap another, from the {len(runs)} recorded")
    say("  start/end intervals of both processes)")
    say()
    say("Next: README.md for the quick start, docs/ for concepts and deployment.")
    return 0 if doubles == 0 and runs else 1
