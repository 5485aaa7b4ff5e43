"""Subprocess helper for tests/test_gates.py: a JobHost guarded by a MainDom key.

Usage: ``python tests/gate_worker.py DIRECTORY KEY``. The host runs one recurring job every
50 ms (ignored back-off 50 ms); each run prints ``ran <pid>`` once, when this process first
becomes the one that runs. Exits by itself after 60 s so it can never linger.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta

from recurjobs import CancellationToken, JobHost, MainDom, RecurringJob


class Beat(RecurringJob):
    """Says once that this process runs its recurring jobs."""

    said = False

    def run(self, token: CancellationToken) -> None:
        if not self.said:
            print(f"ran {os.getpid()}", flush=True)
            self.said = True


def main(directory: str, key: str) -> int:
    job = Beat(
        timedelta(milliseconds=50), delay=timedelta(0), ignored_delay=timedelta(milliseconds=50)
    )
    with JobHost([job], main_dom=MainDom(key, directory=directory)):
        time.sleep(60)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
