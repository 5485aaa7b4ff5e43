"""A Flask app whose host runs a recurring job; two routes show its status and trigger it.

To run:  flask --app examples/flask_app.py run --debug
         curl localhost:5000/status ; curl -X POST localhost:5000/refresh
         flask --app examples/flask_app.py recurjobs status
"""

from datetime import timedelta

from flask import Flask

from recurjobs import CancellationToken, RecurringJob, TriggerableJob
from recurjobs.flask import RecurJobs


class RefreshRates(RecurringJob, TriggerableJob):
    """Refreshes exchange rates every 30 seconds (here: counts its runs)."""

    def __init__(self, app: Flask) -> None:
        super().__init__(timedelta(seconds=30), delay=timedelta(seconds=2))
        self.app = app

    def run(self, token: CancellationToken) -> None:
        with self.app.app_context():  # job threads have no app context of their own
            self.app.config["RATES_REFRESHED"] = self.app.config.get("RATES_REFRESHED", 0) + 1


recurjobs = RecurJobs(jobs=lambda app: [RefreshRates(app)])


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()  # e.g. FLASK_RECURJOBS_MAIN_DOM=false
    recurjobs.init_app(app)

    @app.get("/status")
    def status() -> dict[str, object]:
        jobs = RecurJobs.get_host().status()
        return {
            "refreshed": app.config.get("RATES_REFRESHED", 0),
            "jobs": [{"name": s.name, "runs": s.runs, "running": s.running} for s in jobs],
        }

    @app.post("/refresh")  # your own route: guard it with your app's own authorisation
    def refresh() -> tuple[str, int]:
        accepted = RecurJobs.get_host().trigger(RefreshRates)
        return ("refresh queued\n", 202) if accepted else ("jobs do not run here\n", 409)

    return app


app = create_app()
