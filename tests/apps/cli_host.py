"""Targets for `recurjobs run` tests: a host, a factory, and things that are neither.

The job appends ``run <pid>`` to $RECURJOBS_TEST_OUT every 50 ms, and ``closed <pid>`` when
the host stops it.
"""

from __future__ import annotations

import os
from datetime import timedelta

from recurjobs import CancellationToken, JobHost, RecurringJob


def record(event: str) -> None:
    """Append ``<event> <pid>`` to the record file."""
    with open(os.environ["RECURJOBS_TEST_OUT"], "a") as out:
        out.write(f"{event} {os.getpid()}\n")


class Beat(RecurringJob):
    """Records every run and its own close."""

    def __init__(self) -> None:
        super().__init__(timedelta(milliseconds=50), delay=timedelta(0))

    def run(self, token: CancellationToken) -> None:
        record("run")

    def close(self) -> None:
        record("closed")
        super().close()


def make_host() -> JobHost:
    """A zero-argument factory of a host."""
    return JobHost([Beat()])


host = JobHost([Beat()])
not_a_host = 42
