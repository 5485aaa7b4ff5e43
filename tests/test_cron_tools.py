"""Calendar schedules in the tools: status tables, JSON, the database table and Flask's list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from flask import Flask

from recurjobs import CancellationToken, Cron, JobHost, RecurringJob
from recurjobs._clitext import database_table, status_table, to_json
from recurjobs.flask import RecurJobs
from recurjobs.testing import ManualClock


class Nightly(RecurringJob):
    def __init__(self) -> None:
        super().__init__(Cron("30 2 * * *", tz="Europe/Amsterdam"))

    def run(self, token: CancellationToken) -> None:
        pass


def test_status_table_and_json_show_expression_and_zone() -> None:
    """status() of a Cron job prints and serialises as "expression (zone)" with its next run."""
    clock = ManualClock(datetime(2026, 6, 1, 12, tzinfo=UTC))
    with JobHost([Nightly()], clock=clock) as host:
        clock.wait_for_waiters(1)
        records = host.status()
    table = status_table(records).splitlines()
    payload = to_json(records[0])
    assert (
        "30 2 * * * (Europe/Amsterdam)",
        "30 2 * * * (Europe/Amsterdam)",
        "2026-06-02T00:30:00+00:00",
    ) == (
        _column(table, "PERIOD"),
        payload["period"],
        payload["next_run"],
    )


def _column(table: list[str], header: str) -> str:
    start = table[0].index(header)
    end = table[0].index("NEXT RUN")
    return table[1][start:end].strip()


def test_database_table_shows_a_cron_row_by_its_calendar() -> None:
    """A row whose cron column holds a calendar shows it instead of the nominal period."""
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    row = SimpleNamespace(
        name="digest",
        period=timedelta(days=1),
        cron=Cron("0 9 * * 1-5", tz="America/New_York"),
        last_run=now,
        running=False,
        stale=False,
        owner=None,
        triggered=False,
        next_due=now + timedelta(hours=1),
        database_now=now,
    )
    line = database_table([row]).splitlines()[1]
    assert (
        "digest  0 9 * * 1-5 (America/New_York)"
        == line[: len("digest  0 9 * * 1-5 (America/New_York)")]
    )


@pytest.fixture
def app() -> Iterator[Flask]:
    made = Flask("cron_tools")
    made.config.update({"RECURJOBS_MAIN_DOM": False, "RECURJOBS_AUTOSTART": False})
    yield made
    host = made.extensions.get("recurjobs")
    if isinstance(host, JobHost):
        host.stop()


def test_flask_list_shows_the_calendar_and_no_delay(app: Flask) -> None:
    """`flask recurjobs list` shows a Cron job's expression and zone, and its zero delay."""
    RecurJobs(app, jobs=[Nightly()])
    out = app.test_cli_runner().invoke(args=["recurjobs", "list"])
    assert (0, True, True) == (
        out.exit_code,
        "30 2 * * * (Europe/Amsterdam)" in out.output,
        " 0s " in out.output.splitlines()[1],
    )
