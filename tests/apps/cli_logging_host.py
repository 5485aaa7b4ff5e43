"""A `recurjobs run` target whose module configures logging the way many apps do.

``logging.config.dictConfig`` disables every logger that exists already (recurjobs' own loggers
among them) and sets the root level to WARNING. The host holds a main instance lock, whose
acquisition recurjobs logs at INFO.
"""

from __future__ import annotations

import logging.config
import os
from datetime import timedelta

from recurjobs import CancellationToken, JobHost, RecurringJob

logging.config.dictConfig(
    {
        "version": 1,
        "handlers": {"err": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
        "root": {"level": "WARNING", "handlers": ["err"]},
    }
)


class Beat(RecurringJob):
    """Appends ``run <pid>`` to $RECURJOBS_TEST_OUT every 50 ms."""

    def __init__(self) -> None:
        super().__init__(timedelta(milliseconds=50), delay=timedelta(0))

    def run(self, token: CancellationToken) -> None:
        with open(os.environ["RECURJOBS_TEST_OUT"], "a") as out:
            out.write(f"run {os.getpid()}\n")


host = JobHost([Beat()], main_dom="recurjobs-cli-logging-test")
