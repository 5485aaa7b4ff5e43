"""`recurjobs pause|resume` and `flask recurjobs pause|resume`: exit codes, messages, the
status tables, a paused row's trigger, and an older table migrated by the command itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import inspect, make_url

from recurjobs import CancellationToken, DistributedJob, JobHost, RecurringJob
from recurjobs.cli import main
from recurjobs.flask import EXTENSION_KEY, RecurJobs
from recurjobs.sql import JobStore
from tests.dbs import TestDatabase
from tests.sql.test_pause_sql import columns, make_old_table


class Named(DistributedJob):
    """A distributed job whose name is given; it does nothing."""

    period = timedelta(hours=1)

    def execute(self, token: CancellationToken) -> None:
        pass


class Tick(RecurringJob):
    """A recurring job that does nothing."""

    def __init__(self) -> None:
        super().__init__(timedelta(minutes=5))

    def run(self, token: CancellationToken) -> None:
        pass


@pytest.fixture
def store(db: TestDatabase) -> Iterator[JobStore]:
    """A job store on every backend with the rows "cleanup" and "report"."""
    result = JobStore(db.url, table_prefix=db.table_prefix)
    result.create_schema()
    result.ensure([Named(name="cleanup"), Named(name="report")])
    yield result
    result.dispose()


def argv(command: str, db: TestDatabase, *rest: str) -> list[str]:
    return [command, "--database", db.url, "--table-prefix", db.table_prefix, *rest]


def test_pause_and_resume_set_the_row_and_say_so(
    store: JobStore, db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pause NAME` and `resume NAME` exit 0 with one line each and set the row."""
    assert 0 == main(argv("pause", db, "report"))
    paused = store.paused_names()
    assert 0 == main(argv("resume", db, "report"))
    out = capsys.readouterr().out.splitlines()
    assert ({"report"}, set()) == (paused, store.paused_names())
    assert [
        "paused report: no server claims it until `recurjobs resume report` "
        "(a run going on finishes)",
        "resumed report: it runs when it is next due",
    ] == out


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_unknown_name_is_one_line_and_exit_2(
    store: JobStore, db: TestDatabase, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """An unknown job is bad input, as for trigger: exit 2 with one line listing the known
    names; nothing changes."""
    assert 2 == main(argv(command, db, "nobody"))
    err = capsys.readouterr().err
    assert 1 == len(err.splitlines())
    assert "no distributed job named 'nobody'" in err
    assert "known: cleanup, report)" in err
    assert set() == store.paused_names()


def test_status_shows_paused_jobs(
    store: JobStore, db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status` shows "paused" as the next due time, and `status --json` a paused field."""
    store.set_paused("report", True)
    assert 0 == main(argv("status", db))
    table = capsys.readouterr().out.splitlines()
    assert 0 == main(argv("status", db, "--json"))
    payload = json.loads(capsys.readouterr().out)
    due = {line.split()[0]: line.rstrip().endswith("paused") for line in table[1:]}
    assert {"cleanup": False, "report": True} == due
    assert [("cleanup", False), ("report", True)] == [(r["name"], r["paused"]) for r in payload]


def test_trigger_of_a_paused_job_is_refused_with_exit_1(
    store: JobStore, db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trigger NAME` of a paused job exits 1, says it is paused, and leaves the row alone."""
    store.set_paused("report", True)
    assert 1 == main(argv("trigger", db, "report"))
    err = capsys.readouterr().err
    assert "recurjobs: error: report is paused: resume it first (recurjobs resume report)\n" == err
    assert [False, False] == [r.triggered for r in store.rows()]


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["trigger", "legacy"],
        ["pause", "legacy"],
        ["resume", "legacy"],
        ["prune", "--keep", "legacy"],
    ],
)
def test_commands_migrate_an_older_table(
    db: TestDatabase, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """On a table an older version made, each of `status`, `trigger`, `pause`, `resume` and
    `prune` adds the missing columns first and then works (exit 0); the old row is kept."""
    make_old_table(db)
    assert 0 == main(argv(command[0], db, *command[1:])), capsys.readouterr().err
    assert {"paused", "cron"} <= columns(db)
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        assert ["legacy"] == [r.name for r in store.rows()]
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pause"], "the following arguments are required: NAME"),
        (["pause", "x" * 201], "must be a job name of 1 to 200 characters"),
        (["resume", ""], "must be a job name of 1 to 200 characters"),
        (["pause", "--table-prefix", "bad prefix", "a"], "--table-prefix"),
        (["resume", "--database", "nosuch://x", "a"], "unsupported database"),
    ],
)
def test_bad_input_exits_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Bad input to pause/resume is one line naming the problem, exit code 2."""
    if "--database" not in args:
        args = [*args[:1], "--database", f"sqlite:///{tmp_path / 'x.db'}", *args[1:]]
    with pytest.raises(SystemExit) as exit_:
        code = main(args)
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert (2, 1) == (exit_.value.code, len(err.splitlines()))
    assert message in err


def test_missing_database_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SQLite URL whose file does not exist is bad input (exit 2), not a new empty file."""
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    assert 2 == main(["pause", "--database", url, "a"])
    assert "no SQLite database file" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()


# ------------------------------------------------------------------------------- flask
@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps a test creates; their hosts are stopped afterwards."""
    made: list[Flask] = []
    yield made
    for app in made:
        host = app.extensions.get(EXTENSION_KEY)
        if isinstance(host, JobHost):
            host.stop()


def flask_app(url: str | None, apps: list[Flask]) -> Flask:
    app = Flask("test_app")
    app.config.update(
        {"RECURJOBS_MAIN_DOM": False, "RECURJOBS_AUTOSTART": False, "RECURJOBS_DATABASE_URL": url}
    )
    apps.append(app)
    RecurJobs(app, jobs=[Named(name="report"), Tick()] if url else [Tick()])
    return app


def test_flask_pause_and_resume(tmp_path: Path, apps: list[Flask]) -> None:
    """`flask recurjobs pause|resume NAME` set a distributed job's row and say so."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = JobStore(url)
    try:
        store.create_schema()
        store.ensure([Named(name="report")])
        runner = flask_app(url, apps).test_cli_runner()
        paused = runner.invoke(args=["recurjobs", "pause", "report"])
        names = store.paused_names()
        resumed = runner.invoke(args=["recurjobs", "resume", "report"])
        assert (0, 0) == (paused.exit_code, resumed.exit_code)
        assert ({"report"}, set()) == (names, store.paused_names())
        assert (
            "paused report: no server claims it until `flask recurjobs resume report`\n",
            "resumed report: it runs when it is next due\n",
        ) == (paused.output, resumed.output)
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("name", "database", "code", "message"),
    [
        ("Tick", True, 2, "Tick is a recurring job"),
        ("nobody", True, 2, "no distributed job named 'nobody'"),
        ("report", False, 2, "RECURJOBS_DATABASE_URL is unset"),
    ],
)
def test_flask_pause_refusals(
    tmp_path: Path, apps: list[Flask], name: str, database: bool, code: int, message: str
) -> None:
    """A recurring job, an unknown name or no database: a one-line refusal with its code."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = JobStore(url)
    try:
        store.create_schema()
        store.ensure([Named(name="report")])
        result = flask_app(url if database else None, apps).test_cli_runner().invoke(
            args=["recurjobs", "pause", name]
        )
    finally:
        store.dispose()
    assert code == result.exit_code
    assert message in result.output


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_unknown_name_without_a_table_creates_none(
    db: TestDatabase, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """On a database without the jobs table (or, for SQLite, without the file), pausing or
    resuming any name exits 2 (bad input: most likely a wrong --table-prefix or URL) with one
    line saying what is missing, and creates nothing."""
    assert 2 == main(argv(command, db, "nobody"))
    err = capsys.readouterr().err
    assert 1 == len(err.splitlines()), err
    missing = "no SQLite database file" if db.backend == "sqlite" else "no table"
    assert err.startswith(f"recurjobs: error: {missing}"), err
    if db.backend == "sqlite":  # no file made (opening the store below would make one)
        assert False is Path(str(make_url(db.url).database)).exists()
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        assert False is inspect(store.engine).has_table(store.jobs.name)
    finally:
        store.dispose()
