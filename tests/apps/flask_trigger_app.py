"""A Flask app for the gunicorn forwarding test: a route triggers a job that records its runs.

Serve it as ``gunicorn 'tests.apps.flask_trigger_app:create_app()'`` (there is no module-level
app, so each worker builds exactly one). ``POST /trigger?ticket=T`` writes the file
``$RECURJOBS_TEST_TICKETS/T``, calls ``host.trigger(TicketJob)`` and answers
``{"accepted": bool, "pid": int}``. Each run removes the ticket files it finds and appends
``run <pid> <ticket> ...`` to ``$RECURJOBS_TEST_OUT`` in one write.
"""

from __future__ import annotations

import os

from flask import Flask, request

from recurjobs import INFINITE, CancellationToken, RecurringJob, TriggerableJob
from recurjobs.flask import RecurJobs


class TicketJob(RecurringJob, TriggerableJob):
    """Runs only when triggered; takes the tickets present when it starts."""

    def __init__(self, out: str, tickets: str) -> None:
        super().__init__(INFINITE, delay=INFINITE)
        self.out = out
        self.tickets = tickets

    def run(self, token: CancellationToken) -> None:
        taken = sorted(os.listdir(self.tickets))
        for name in taken:
            os.unlink(os.path.join(self.tickets, name))
        with open(self.out, "a") as out:
            out.write(" ".join(["run", str(os.getpid()), *taken]) + "\n")


def create_app() -> Flask:
    """The app; the host's main instance lock is on (the extension's default)."""
    out, tickets = os.environ["RECURJOBS_TEST_OUT"], os.environ["RECURJOBS_TEST_TICKETS"]
    app = Flask(__name__)
    RecurJobs(app, jobs=lambda app: [TicketJob(out, tickets)])

    @app.post("/trigger")
    def trigger() -> dict[str, object]:
        ticket = request.args["ticket"]
        with open(os.path.join(tickets, ticket), "w"):
            pass
        accepted = RecurJobs.get_host().trigger(TicketJob)
        return {"accepted": accepted, "pid": os.getpid()}

    @app.get("/pid")
    def pid() -> str:
        return str(os.getpid())

    return app
