"""A Flask app for subprocess tests: its job appends ``run <pid>`` to $RECURJOBS_TEST_OUT.

The module also records ``loaded <pid>`` when it is imported, so a test can tell the processes
that loaded the app from those that ran the job. ``RECURJOBS_TEST_MAIN_DOM`` (default "true")
sets ``RECURJOBS_MAIN_DOM``.
"""

from __future__ import annotations

import os
from datetime import timedelta

from flask import Flask

from recurjobs import CancellationToken, RecurringJob
from recurjobs.flask import RecurJobs

OUT = os.environ["RECURJOBS_TEST_OUT"]


def record(event: str) -> None:
    """Append ``<event> <pid>`` as one line (O_APPEND keeps concurrent lines whole)."""
    with open(OUT, "a") as out:
        out.write(f"{event} {os.getpid()}\n")


class PidJob(RecurringJob):
    """Every 100 ms, from the start: records which process ran it."""

    def __init__(self) -> None:
        super().__init__(timedelta(milliseconds=100), delay=timedelta(0))

    def run(self, token: CancellationToken) -> None:
        record("run")

    def close(self) -> None:
        record("closed")
        super().close()


def create_app() -> Flask:
    """The app, with one PidJob and a /pid route answering the serving process's pid."""
    record("loaded")
    app = Flask(__name__)
    app.config["RECURJOBS_MAIN_DOM"] = os.environ.get("RECURJOBS_TEST_MAIN_DOM", "true")
    RecurJobs(app, jobs=lambda app: [PidJob()])

    @app.get("/pid")
    def pid() -> str:
        return str(os.getpid())

    return app


app = create_app()
