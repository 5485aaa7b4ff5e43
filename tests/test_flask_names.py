"""`flask recurjobs trigger|pause|resume NAME` when several registered jobs share the name:
refused with the candidates listed, instead of acting on whichever was registered last."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from recurjobs import CancellationToken, RecurringJob, TriggerableJob
from recurjobs.flask import RecurJobs
from recurjobs.sql import JobStore
from tests.test_flask import Report, Tick, apps, make_app

__all__ = ["apps"]  # the fixture, imported for the tests below


class ReportTick(RecurringJob, TriggerableJob):
    """A recurring job that shares the distributed Report's name."""

    name = "report"

    def __init__(self) -> None:
        super().__init__(Tick().period)

    def run(self, token: CancellationToken) -> None:
        pass


@pytest.mark.parametrize("command", ["trigger", "pause", "resume"])
@pytest.mark.parametrize("registered", ["recurring and distributed", "two instances"])
def test_a_name_several_jobs_share_is_refused(
    tmp_path: Path, apps: list[Flask], command: str, registered: str
) -> None:
    """Exit 2, both jobs named in the message, and the distributed row left as it was."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = JobStore(url)
    store.create_schema()
    store.ensure([Report()])
    app = make_app(RECURJOBS_AUTOSTART=False, RECURJOBS_DATABASE_URL=url)
    apps.append(app)
    if registered == "two instances":
        jobs: list[object] = [Tick(), Tick()]
        name, kinds = "Tick", ["recurring tests.test_flask.Tick"] * 2
    else:
        jobs = [ReportTick(), Report()]
        name = "report"
        kinds = [
            "recurring tests.test_flask_names.ReportTick",
            "distributed tests.test_flask.Report",
        ]
    RecurJobs(app, jobs=jobs)
    result = app.test_cli_runner().invoke(args=["recurjobs", command, name])
    assert 2 == result.exit_code, result.output
    assert f"2 registered jobs are named {name!r}" in result.output
    assert all(kind in result.output for kind in kinds), result.output
    assert [(False, False)] == [(row.triggered, row.paused) for row in store.rows()]
    store.dispose()
