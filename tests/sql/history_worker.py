"""A host with run history whose one distributed job blocks until the process is killed.

Usage: ``python tests/sql/history_worker.py URL PREFIX NAME`` (repository root on PYTHONPATH).
Prints ``running`` once the job's run has begun; exits by itself after 60 s at most.
"""

from __future__ import annotations

import sys
import threading
from datetime import timedelta

from recurjobs import CancellationToken, DistributedJob, DistributedJobSettings, JobHost


class Blocking(DistributedJob):
    """Says it runs, then blocks (ignoring its token) until the process ends."""

    def execute(self, token: CancellationToken) -> None:
        print("running", flush=True)
        threading.Event().wait(60)


def main(url: str, prefix: str, name: str) -> int:
    settings = DistributedJobSettings(
        poll_period=timedelta(seconds=0.2),
        delay=timedelta(0),
        max_execution_time=timedelta(seconds=1),
        table_prefix=prefix,
        max_concurrent_jobs=2,
    )
    job = Blocking(name=name, period=timedelta(seconds=1))
    host = JobHost([job], database=url, distributed=settings, history=True)
    host.start()
    threading.Event().wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
