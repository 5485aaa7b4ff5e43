"""A host process for the dashboard's browser tests: ``python -m tests.apps.dashboard_host``.

Environment: ``DASH_DATABASE`` (URL), ``DASH_PREFIX`` (table prefix), ``DASH_SIDE`` ("a" or
"b": which jobs) and ``DASH_OUT`` (a file; every run appends ``run <job> <pid>``). Prints
``ready`` once started and runs until SIGTERM. Records history.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import timedelta

from recurjobs import CancellationToken, DistributedJob, DistributedJobSettings, JobHost

XSS_NAME = "<img src=x onerror=alert(1)>"


def record(name: str) -> None:
    """Append ``run <name> <pid>`` to the output file."""
    with open(os.environ["DASH_OUT"], "a") as out:
        out.write(f"run {name} {os.getpid()}\n")


class Recorded(DistributedJob):
    """Records each run; raises when ``fail`` is set."""

    def __init__(self, name: str, period: timedelta, *, fail: bool = False) -> None:
        super().__init__(name=name, period=period)
        self.fail = fail

    def execute(self, token: CancellationToken) -> None:
        record(self.name)
        if self.fail:
            raise RuntimeError("boom: the <b>report</b> server said no")


def jobs(side: str) -> list[DistributedJob]:
    """Side a: a report that runs only when triggered and a job that always fails; side b: a
    job that runs every second and one with a hostile name."""
    if side == "a":
        return [
            Recorded("alpha-report", timedelta(hours=1)),
            Recorded("alpha-fail", timedelta(seconds=1), fail=True),
        ]
    return [Recorded("beta-tick", timedelta(seconds=1)), Recorded(XSS_NAME, timedelta(hours=1))]


def main() -> int:
    """Start the host, say ``ready``, run until SIGTERM."""
    settings = DistributedJobSettings(
        poll_period=timedelta(milliseconds=200),
        delay=timedelta(0),
        max_execution_time=timedelta(seconds=30),
        table_prefix=os.environ["DASH_PREFIX"],
    )
    extra: dict[str, object] = {}
    extra["history"] = True
    host = JobHost(
        jobs(os.environ["DASH_SIDE"]),
        database=os.environ["DASH_DATABASE"],
        distributed=settings,
        main_dom=False,
        elect_server_role=True,
        **extra,  # type: ignore[arg-type]
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    host.start()
    print("ready", flush=True)
    stop.wait()
    host.stop(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
