"""One host of the multi-process tests: a JobHost running distributed jobs that log every run.

Usage: ``python tests/sql/mp_worker.py CONFIG.json`` with the repository root on PYTHONPATH.
The config names the database URL, table prefix, settings, jobs, run time, clock skew and the
output file. Every line written there is one JSON event; times ``t``, ``start`` and ``end``
are ``time.monotonic()``, which is one system-wide clock for every process on the machine (and
which time-machine does not move), so the test can compare events across processes.

Events: ``started`` (with ``wall_offset``: this process's wall clock minus the real one, to
show a skew took effect, and ``zone``: the abbreviation of its local time zone, to show a
``TZ`` took effect), ``claimed``, ``start``/``end`` of each execution (``start`` also carries
``wall``, the real wall-clock time, to match runs with calendar fire times; ``end`` says
whether the token was cancelled), ``lease-lost``, ``thread-exception`` (anything escaping any
thread, via ``threading.excepthook``), ``stopping`` and ``stopped``. A job spec with ``cron``
(and optionally ``tz``) runs on that calendar instead of ``period``. The worker exits by itself
after ``seconds``, on SIGTERM, or after ``lifetime`` s (default 120) at most, so it can never
linger.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from recurjobs import (
    CancellationToken,
    Cron,
    DistributedJob,
    DistributedJobClaimed,
    DistributedJobLeaseLost,
    DistributedJobSettings,
    JobHost,
)

_LIFETIME_SECONDS = 120.0


class Recorder:
    """Appends JSON events to the output file, one per line, flushed at once."""

    def __init__(self, path: str, host: str) -> None:
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._lock = threading.Lock()
        self.host = host

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "host": self.host, "pid": os.getpid(), **fields})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


class RecordingJob(DistributedJob):
    """Runs for ``duration`` seconds (or until its token is cancelled), logging start and end."""

    def __init__(
        self, record: Recorder, *, duration: float, real_base: float, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.record = record
        self.duration = duration
        self.real_base = real_base

    def execute(self, token: CancellationToken) -> None:
        start = time.monotonic()
        self.record("start", job=self.name, start=start, wall=self.real_base + start)
        cancelled = token.wait(self.duration)
        self.record("end", job=self.name, start=start, end=time.monotonic(), cancelled=cancelled)
        token.raise_if_cancelled()


def _stacks() -> dict[str, str]:
    """Thread name -> its current stack, for every recurjobs thread still alive."""
    frames = sys._current_frames()
    return {
        t.name: "".join(traceback.format_stack(frames[t.ident]))
        for t in threading.enumerate()
        if t.name.startswith("recurjobs") and t.ident in frames
    }


def main(config_path: str) -> int:
    with open(config_path, encoding="utf-8") as f:
        config: dict[str, Any] = json.load(f)
    record = Recorder(config["out"], config["host"])
    threading.excepthook = lambda args: record(
        "thread-exception",
        thread=args.thread.name if args.thread is not None else None,
        error=repr(args.exc_value),
    )
    # The real wall clock, read before any skew, carried forward on the monotonic clock.
    real_base = time.time() - time.monotonic()
    zone = time.strftime("%Z")  # the process's local zone, read before any skew
    skew = float(config.get("skew_minutes", 0))
    if skew:
        import time_machine

        time_machine.travel(datetime.now(UTC) + timedelta(minutes=skew), tick=True).start()
    jobs = [
        RecordingJob(
            record,
            name=spec["name"],
            period=(
                Cron(spec["cron"], tz=spec.get("tz", "UTC"))
                if "cron" in spec
                else timedelta(seconds=spec["period"])
            ),
            align_to_clock=spec.get("aligned", False),
            duration=spec["duration"],
            real_base=real_base,
        )
        for spec in config["jobs"]
    ]
    settings = DistributedJobSettings(
        poll_period=timedelta(seconds=config["poll"]),
        delay=timedelta(seconds=config.get("delay", 0)),
        max_execution_time=timedelta(seconds=config["max_execution_time"]),
        max_concurrent_jobs=config.get("max_concurrent_jobs", 1),
        table_prefix=config["prefix"],
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    host = JobHost(jobs, database=config["url"], distributed=settings)
    host.subscribe(
        DistributedJobClaimed,
        lambda n: record("claimed", job=n.job.name, claim_id=n.claim_id, t=time.monotonic()),
    )
    host.subscribe(
        DistributedJobLeaseLost,
        lambda n: record("lease-lost", job=n.job.name, claim_id=n.claim_id, t=time.monotonic()),
    )
    host.start()
    record(
        "started",
        t=time.monotonic(),
        wall_offset=time.time() - time.monotonic() - real_base,
        zone=zone,
    )
    stop.wait(min(float(config["seconds"]), float(config.get("lifetime", _LIFETIME_SECONDS))))
    record("stopping", t=time.monotonic())
    stop_timeout = float(config.get("stop_timeout", 10))
    # Still here long after stop() should have returned: print every thread's stack to the log
    # (stderr), to show where it hangs.
    faulthandler.dump_traceback_later(stop_timeout + 10, exit=False)
    ended = host.stop(stop_timeout)
    stopped_at = time.monotonic()
    alive = sorted(t.name for t in threading.enumerate() if t.name.startswith("recurjobs"))
    stacks = {} if ended else _stacks()  # where a stop that did not end is stuck, for diagnosis
    record("stopped", t=stopped_at, ended=ended, alive=alive, stacks=stacks)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
