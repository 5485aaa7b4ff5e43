"""One host of the fault-injection soak: a JobHost running distributed jobs through a proxy.

Usage: ``python tests/sql/fault_worker.py CONFIG_JSON`` (the JSON itself, not a file), with
the repository root on PYTHONPATH. Config keys: ``url`` (already pointing at the proxy),
``prefix``, ``jobs`` (``[[name, period, run_min, run_max], ...]``: a run lasts a random time
between ``run_min`` and ``run_max`` seconds), ``poll``, ``max_execution_time``,
``max_concurrent_jobs``, ``log`` (the shared log file), ``slot``, ``lifetime``, ``stop_timeout``.

Every line goes to the shared log with one ``os.write`` on an ``O_APPEND`` descriptor, so the
lines of concurrent processes never interleave. Times are ``time.time()`` (one clock for every
process on the machine). Lines, fields separated by single spaces::

    up T PID SLOT                   the host started
    start-failed T PID REASON...    host.start() raised (retried after 1 s)
    start JOB T_START PID           a run began (execute() entered)
    end JOB T_START T_END PID HOW   it ended: executed | cancelled (its token was cancelled)
    lost JOB T PID                  DistributedJobLeaseLost
    death T PID THREAD ERROR...     an exception escaped a thread (threading.excepthook)
    error T PID MESSAGE...          a record of level ERROR or worse on the recurjobs logger
    stopping T PID                  SIGTERM (or lifetime, or parent gone): host.stop() called
    stopped T PID SECONDS RESULT    host.stop(stop_timeout) returned RESULT after SECONDS
    hung T PID                      host.stop() had not returned after stop_timeout + 10 s

The worker exits by itself after ``lifetime`` seconds or when its parent process is gone, and
exits hard (status 3) when ``stop()`` does not return in time, so it can never linger.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import threading
import time
from datetime import timedelta
from typing import Any

from recurjobs import (
    CancellationToken,
    DistributedJob,
    DistributedJobLeaseLost,
    DistributedJobSettings,
    JobHost,
)

_HUNG_EXIT = 3


class Log:
    """Appends one whole line per call to the shared log (O_APPEND, a single write)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.pid = os.getpid()

    def __call__(self, *fields: object) -> None:
        text = " ".join(str(f) for f in fields).replace("\n", " ")
        os.write(self._fd, (text[:1000] + "\n").encode("utf-8", "replace"))


class SoakJob(DistributedJob):
    """Runs for a random time (or until its token is cancelled), logging start and end."""

    def __init__(self, log: Log, name: str, period: float, run_min: float, run_max: float):
        super().__init__(name=name, period=timedelta(seconds=period))
        self.log = log
        self.run_min = run_min
        self.run_max = run_max
        self.rng = random.Random()

    def execute(self, token: CancellationToken) -> None:
        start = time.time()
        self.log("start", self.name, f"{start:.6f}", self.log.pid)
        cancelled = token.wait(self.rng.uniform(self.run_min, self.run_max))
        end = time.time()
        how = "cancelled" if cancelled else "executed"
        self.log("end", self.name, f"{start:.6f}", f"{end:.6f}", self.log.pid, how)


class _ErrorRecords(logging.Handler):
    def __init__(self, log: Log) -> None:
        super().__init__(logging.ERROR)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage().splitlines()[0][:300] if record.msg else "-"
        except Exception:
            message = str(record.msg)[:300]
        self.log("error", f"{time.time():.6f}", self.log.pid, message)


class _LateClaims(logging.Handler):
    """Records each claim the poller refused to run because its acknowledgement came too late
    (a held COMMIT): which rows a lockhold held, for the soak's lock-stall check."""

    def __init__(self, log: Log) -> None:
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("the claim of %s") and record.args:
            name = record.args[0] if isinstance(record.args, tuple) else "?"
            self.log("late", name, f"{time.time():.6f}", self.log.pid)


def _start_host(config: dict[str, Any], log: Log, stop: threading.Event) -> JobHost | None:
    """Start the host, retrying every second while start() raises (None: told to stop)."""
    settings = DistributedJobSettings(
        poll_period=timedelta(seconds=config["poll"]),
        delay=timedelta(0),
        max_execution_time=timedelta(seconds=config["max_execution_time"]),
        max_concurrent_jobs=config["max_concurrent_jobs"],
        table_prefix=config["prefix"],
    )
    while not stop.is_set():
        jobs = [
            SoakJob(log, name, period, run_min, run_max)
            for name, period, run_min, run_max in config["jobs"]
        ]
        history = bool(config.get("history", False))
        host = JobHost(jobs, database=config["url"], distributed=settings, history=history)
        host.subscribe(
            DistributedJobLeaseLost,
            lambda n: log("lost", getattr(n.job, "name", "?"), f"{time.time():.6f}", log.pid),
        )
        try:
            host.start()
        except Exception as exc:  # e.g. the database is unreachable right now
            log("start-failed", f"{time.time():.6f}", log.pid, f"{type(exc).__name__}: {exc}")
            stop.wait(1.0)
            continue
        return host
    return None


def main(raw: str) -> int:
    config: dict[str, Any] = json.loads(raw)
    log = Log(config["log"])
    threading.excepthook = lambda args: log(
        "death",
        f"{time.time():.6f}",
        log.pid,
        args.thread.name if args.thread is not None else "?",
        f"{args.exc_type.__name__}: {args.exc_value}",
    )
    logging.basicConfig(  # warnings go to the worker's output file, for diagnosis
        level=logging.WARNING,
        format="%(created).3f %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("recurjobs").addHandler(_ErrorRecords(log))
    logging.getLogger("recurjobs").addHandler(_LateClaims(log))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    parent = os.getppid()
    born = time.monotonic()
    lifetime = float(config["lifetime"])

    def parent_watch() -> None:  # ends the worker when the harness is gone or time is up
        while not stop.wait(0.5):
            if os.getppid() != parent or time.monotonic() - born > lifetime:
                stop.set()

    threading.Thread(target=parent_watch, name="parent-watch", daemon=True).start()
    host = _start_host(config, log, stop)
    if host is None:
        return 0
    log("up", f"{time.time():.6f}", log.pid, config["slot"])
    stop.wait()
    timeout = float(config["stop_timeout"])
    log("stopping", f"{time.time():.6f}", log.pid)

    def hung() -> None:
        log("hung", f"{time.time():.6f}", log.pid)
        os._exit(_HUNG_EXIT)

    guard = threading.Timer(timeout + 10.0, hung)
    guard.daemon = True
    guard.start()
    began = time.monotonic()
    result = host.stop(timeout)
    took = time.monotonic() - began
    guard.cancel()
    log("stopped", f"{time.time():.6f}", log.pid, f"{took:.3f}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
