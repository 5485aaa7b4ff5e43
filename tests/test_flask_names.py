"""`flask recurjobs trigger|pause|resume NAME` when several registered jobs share the name:
refused with the candidates listed, instead of acting on whichever was registered last."""

from __future__ import annotations

import html
import re
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


def _allow(_request: object) -> bool:
    return True


@pytest.mark.parametrize("action", ["trigger", "pause", "resume"])
@pytest.mark.parametrize("registered", ["recurring and distributed", "two instances"])
def test_a_dashboard_action_on_a_name_several_jobs_share_is_refused(
    tmp_path: Path, apps: list[Flask], action: str, registered: str
) -> None:
    """The mounted dashboard's buttons act on a name too: when several registered jobs have
    it, the action is a 409 page naming them, and neither the row nor a job is changed (not
    the first job of that name paused, or the row triggered, while the page says it worked)."""
    pytest.importorskip("recurjobs.dashboard")
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = JobStore(url)
    store.create_schema()
    store.ensure([Report()])
    if action == "resume":
        store.set_paused("report", True)
    app = make_app(
        RECURJOBS_AUTOSTART=False,
        RECURJOBS_DATABASE_URL=url,
        RECURJOBS_DASHBOARD_PREFIX="/jobs",
        RECURJOBS_DASHBOARD_ALLOW_ACTIONS=True,
        RECURJOBS_DASHBOARD_AUTHORIZE=_allow,
        SECRET_KEY="a secret of the app, long enough",
    )
    apps.append(app)
    if registered == "two instances":
        jobs: list[object] = [Tick(), Tick()]
        name = "Tick"
    else:
        jobs = [ReportTick(), Report()]
        name = "report"
    ext = RecurJobs(app, jobs=jobs)
    host = RecurJobs.get_host(app)
    if action == "resume":
        assert all(host.pause(job) for job in host.jobs if isinstance(job, Tick))
    before = [s.paused for s in host.status() if s.kind == "recurring"]
    client = app.test_client()
    page = client.get("/jobs/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    answer = client.post(
        "/jobs/action", data={"action": action, "name": name, "csrf_token": token.group(1)}
    )
    text = answer.get_data(as_text=True)
    assert 409 == answer.status_code, text
    assert f"2 registered jobs are named {name!r}" in html.unescape(text)
    after = [s.paused for s in host.status() if s.kind == "recurring"]
    row = store.rows()[0]
    assert (before, False, action == "resume") == (after, row.triggered, row.paused)
    ext.stop(app)
    store.dispose()
