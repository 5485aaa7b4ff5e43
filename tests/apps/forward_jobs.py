"""A triggerable job for the trigger-forwarding tests, importable under one name everywhere.

Its run appends ``run <pid>`` to the file it was given and ``close()`` appends ``closed <pid>``,
so a test reads which process ran it and how often. It never runs by itself (period and delay
are INFINITE): every run in the file is a trigger's.
"""

from __future__ import annotations

import os

from recurjobs import INFINITE, CancellationToken, RecurringJob, TriggerableJob


def record(path: str, event: str) -> None:
    """Append ``<event> <pid>`` as one line (O_APPEND keeps concurrent lines whole)."""
    with open(path, "a") as out:
        out.write(f"{event} {os.getpid()}\n")


class Append(RecurringJob, TriggerableJob):
    """Runs only when triggered; records each run."""

    def __init__(self, out: str) -> None:
        super().__init__(INFINITE, delay=INFINITE)
        self.out = out

    def run(self, token: CancellationToken) -> None:
        record(self.out, "run")

    def close(self) -> None:
        record(self.out, "closed")
        super().close()


class Other(RecurringJob, TriggerableJob):
    """A second triggerable job class that records nothing."""

    def __init__(self) -> None:
        super().__init__(INFINITE, delay=INFINITE)

    def run(self, token: CancellationToken) -> None:
        pass
