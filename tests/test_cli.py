"""The `recurjobs` command line: parsing, the database commands, `run` and its signals."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

import recurjobs
from recurjobs import CancellationToken, DistributedJob, JobHost
from recurjobs.cli import CommandError, format_duration, load_host, main, parse_duration
from recurjobs.sql import JobStore
from tests.apps.procs import child_env, lines, python, script, wait_until
from tests.dbs import TestDatabase

# How long a `python -m recurjobs` child may take: over 30 s was seen on a busy machine.
CHILD_SECONDS = 50.0


class Named(DistributedJob):
    """A distributed job whose name is given; it does nothing."""

    period = timedelta(hours=1)

    def execute(self, token: CancellationToken) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    """A SQLite job store with the rows "cleanup" and "report"."""
    result = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    result.create_schema()
    result.ensure([Named(name="cleanup"), Named(name="report")])
    yield result
    result.dispose()


def url_of(store: JobStore) -> str:
    """The store's URL as a user would type it."""
    return store.engine.url.render_as_string(hide_password=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("1h30m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("250ms", timedelta(milliseconds=250)),
        ("2w", timedelta(weeks=2)),
        ("90", timedelta(seconds=90)),
        (" 1.5H ", timedelta(minutes=90)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    """Durations are a number with a unit (w, d, h, m, s, ms), several in a row, or seconds."""
    assert expected == parse_duration(text)


@pytest.mark.parametrize("text", ["", "7x", "d7", "-5s", "0", "0s", "1h 30m", "soon"])
def test_parse_duration_rejects(text: str) -> None:
    """Anything else, zero and negative durations included, is a ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=1, seconds=5), "1d5s"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(milliseconds=1500), "1.5s"),
        (timedelta(0), "0s"),
        (recurjobs.INFINITE, "never"),
        (None, "-"),
    ],
)
def test_format_duration(value: timedelta | None, expected: str) -> None:
    """Durations print short: units run together, INFINITE as "never"."""
    assert expected == format_duration(value)


def test_status_table_and_json(store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    """`status` prints one line per row under a header; `--json` prints the rows as objects."""
    assert 0 == main(["status", "--database", url_of(store)])
    table = capsys.readouterr().out.splitlines()
    assert ["NAME", "cleanup", "report"] == [line.split()[0] for line in table]
    assert ["NAME", "PERIOD", "LAST", "RUN", "(UTC)", "RUNNING"] == table[0].split()[:6]
    assert 0 == main(["status", "--database", url_of(store), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [("cleanup", 3600.0, False, None), ("report", 3600.0, False, None)] == [
        (r["name"], r["period"], r["running"], r["owner"]) for r in rows
    ]


def test_database_from_environment(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --database the URL comes from RECURJOBS_DATABASE_URL."""
    monkeypatch.setenv("RECURJOBS_DATABASE_URL", url_of(store))
    assert 0 == main(["status", "--json"])
    assert 2 == len(json.loads(capsys.readouterr().out))


def test_trigger_marks_the_row_due(store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    """`trigger NAME` marks only that row due now."""
    assert 0 == main(["trigger", "--database", url_of(store), "report"])
    assert "triggered report: the next server to poll runs it\n" == capsys.readouterr().out
    assert [("cleanup", False), ("report", True)] == [(r.name, r.triggered) for r in store.rows()]


def test_prune_keep(store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    """`prune --keep NAME` deletes every other row that is not running."""
    assert 0 == main(["prune", "--database", url_of(store), "--keep", "report"])
    assert "pruned 1 row(s): cleanup\n" == capsys.readouterr().out
    assert ["report"] == [r.name for r in store.rows()]


def test_prune_older_than(store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    """`prune --older-than 7d` deletes rows whose last run is more than a week old."""
    week = int(timedelta(days=8) / timedelta(milliseconds=1))
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(store.jobs)
            .where(store.jobs.c.name == "cleanup")
            .values(last_run_ms=store.jobs.c.last_run_ms - week)
        )
    assert 0 == main(["prune", "--database", url_of(store), "--older-than", "7d"])
    assert "pruned 1 row(s): cleanup\n" == capsys.readouterr().out
    assert 0 == main(["prune", "--database", url_of(store), "--older-than", "7d"])
    assert "nothing to prune\n" == capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status"], "--database URL is required"),
        (["prune", "--database", "sqlite://"], "prune needs --keep"),
        (["prune", "--database", "sqlite://", "--older-than", "7x"], "positive duration"),
        (["status", "--database", "not a url"], "not a database URL"),
        (["status", "--database", "nosuchdb://x/y"], "unsupported database"),
        (["status", "--database", "sqlite:////nonexistent/jobs.db"], "no SQLite database file"),
        (["trigger", "--database", "sqlite://", "x"], "no table recurjobs_jobs"),
        (["run", "no-colon"], "expected MODULE:ATTR"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    """Bad input prints one line on stderr naming the problem and exits with 2."""
    monkeypatch.delenv("RECURJOBS_DATABASE_URL", raising=False)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors exit
        code = int(str(exc.code))
    err = capsys.readouterr().err
    assert (2, 1) == (code, len(err.splitlines()))
    assert message in err


def test_unknown_job_name_is_bad_input(store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    """Triggering a name without a row exits with 2, in one line naming the rows there are."""
    assert 2 == main(["trigger", "--database", url_of(store), "nobody"])
    expected = (
        "recurjobs: error: no distributed job named 'nobody' in the database (its row appears "
        "once a host with that job has started; known: cleanup, report)\n"
    )
    assert expected == capsys.readouterr().err
    assert [False, False] == [r.triggered for r in store.rows()]


def test_password_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """A database that cannot be reached fails with 1; the message masks the password."""
    code = main(["status", "--database", "postgresql+psycopg://me:hunter2@127.0.0.1:1/jobs"])
    out, err = capsys.readouterr()
    assert 1 == code
    assert "hunter2" not in out + err
    assert "me:***@127.0.0.1:1/jobs" in err
    assert 1 == len(err.splitlines())


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.apps.nothing_here:host", "cannot import tests.apps.nothing_here"),
        ("tests.apps.cli_host:missing", "has no attribute missing"),
        ("tests.apps.cli_host:make_host()", "without calling it: tests.apps.cli_host:make_host"),
        ("tests.apps.cli_host:not_a_host", "is not a JobHost"),
        (":host", "expected MODULE:ATTR"),
    ],
)
def test_load_host_rejects(target: str, message: str) -> None:
    """A target that is no host (nor a factory of one) is bad input naming the problem."""
    with pytest.raises(CommandError, match=message) as info:
        load_host(target)
    assert True is info.value.bad_input


@pytest.mark.parametrize("target", ["tests.apps.cli_host:host", "tests.apps.cli_host:make_host"])
def test_load_host_accepts_a_host_or_a_factory(target: str) -> None:
    """MODULE:ATTR names a JobHost or a zero-argument callable that returns one."""
    assert isinstance(load_host(target), JobHost)


@pytest.mark.multiprocess
@pytest.mark.timeout(3 * CHILD_SECONDS)
@pytest.mark.parametrize(
    ("target", "sig"),
    [
        ("tests.apps.cli_host:host", signal.SIGTERM),
        ("tests.apps.cli_host:make_host", signal.SIGINT),
    ],
)
def test_run_until_signal_then_stop(tmp_path: Path, target: str, sig: signal.Signals) -> None:
    """`recurjobs run` runs the host until SIGINT/SIGTERM, then stops it and exits with 0."""
    out = tmp_path / "events.txt"
    proc = subprocess.Popen(
        [python(), "-m", "recurjobs", "run", target],
        env=child_env(tmp_path, RECURJOBS_TEST_OUT=str(out)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: len(lines(out)) >= 3, CHILD_SECONDS, "three runs")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=CHILD_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = lines(out)
    assert 0 == proc.returncode
    assert f"closed {proc.pid}" == events[-1]
    assert {f"run {proc.pid}"} == set(events[:-1])
    assert "recurjobs: stopped" == err.decode().splitlines()[-1]


@pytest.mark.multiprocess
@pytest.mark.timeout(3 * CHILD_SECONDS)
def test_console_script_and_module_agree(tmp_path: Path) -> None:
    """The `recurjobs` script and `python -m recurjobs` print the same version line."""
    expected = f"recurjobs {recurjobs.__version__}\n"
    env = child_env(tmp_path)
    for command in ([script("recurjobs")], [python(), "-m", "recurjobs"]):
        done = subprocess.run(
            [*command, "--version"], env=env, capture_output=True, text=True, timeout=CHILD_SECONDS
        )
        assert (0, expected) == (done.returncode, done.stdout)


# ------------------------------------------------------------ bad input never tracebacks
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://u:p@localhost:notaport/db", "port that is not a number"),
        ("postgresql+psycopg://u:p@[::1/db", "port that is not a number"),
        ("postgresql+psycopg://u:p@localhost:99999/db", "port 99999, expected 1 to 65535"),
        ("mysql+pymysql://u:p@localhost:0/db", "port 0, expected 1 to 65535"),
        ("oracle://u:p@localhost/db", "unsupported database 'oracle'"),
        ("postgres://u:p@localhost/db", "write postgresql://"),
        ("postgresql+nosuchdriver://u:p@localhost/db", "unknown driver"),
        ("not a url", "not a database URL"),
    ],
)
@pytest.mark.parametrize("command", [["status"], ["trigger", "x"], ["prune", "--keep", "x"]])
def test_bad_urls_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], command: list[str], url: str, message: str
) -> None:
    """A URL that cannot name a usable database is one line, exit 2, and never the password."""
    code = main([command[0], "--database", url, *command[1:]])
    err = capsys.readouterr().err
    assert (2, 1) == (code, len(err.splitlines()))
    assert message in err
    assert ":p@" not in err


@pytest.mark.multiprocess
@pytest.mark.timeout(2 * CHILD_SECONDS)
def test_non_numeric_port_from_the_shell(tmp_path: Path) -> None:
    """The issue's command, run as a user would: one line on stderr, exit 2, no traceback."""
    url = "postgresql+psycopg://u:p@localhost:notaport/db"
    done = subprocess.run(
        [python(), "-m", "recurjobs", "status", "--database", url],
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=CHILD_SECONDS,
    )
    expected = (
        "recurjobs: error: --database has a port that is not a number: "
        "'postgresql+psycopg://u:***@localhost:notaport/db'\n"
    )
    assert (2, "", expected) == (done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize("argv", [["--older-than", "-5m"], ["--older-than=-5m"]])
def test_negative_older_than_is_named(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """`prune --older-than -5m` says the duration must be positive, instead of "expected one
    argument"."""
    with pytest.raises(SystemExit) as info:
        main(["prune", "--database", "sqlite://", *argv])
    expected = (
        "recurjobs prune: error: --older-than must be a positive duration such as 7d, 12h, 30m, "
        "45s or 1h30m, got '-5m' (see recurjobs prune --help)\n"
    )
    assert (2, expected) == (info.value.code, capsys.readouterr().err)


def test_negative_stop_timeout_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """`run --stop-timeout -1` names the option and the value."""
    with pytest.raises(SystemExit) as info:
        main(["run", "tests.apps.cli_host:host", "--stop-timeout", "-1.5"])
    err = capsys.readouterr().err
    assert 2 == info.value.code
    assert "--stop-timeout must be a number of seconds >= 0, got '-1.5'" in err


def test_failing_target_module_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A target module that raises on import is reported in one line (error and place), exit 1."""
    assert 1 == main(["run", "tests.apps.cli_broken:host"])
    expected = (
        "recurjobs: error: cannot import tests.apps.cli_broken: RuntimeError: the app's settings "
        "are missing (cli_broken.py:5)\n"
    )
    assert expected == capsys.readouterr().err


def test_unexpected_failure_is_one_line_exit_1(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure nobody foresaw (here a store method that raises) is one line and exit 1."""

    def broken(self: JobStore) -> list[object]:
        raise KeyError("surprise")

    monkeypatch.setattr(JobStore, "rows", broken)
    assert 1 == main(["status", "--database", url_of(store)])
    err = capsys.readouterr().err
    assert 1 == len(err.splitlines())
    assert err.startswith("recurjobs: error: unexpected KeyError: 'surprise' (test_cli.py:")


@pytest.mark.multiprocess
@pytest.mark.timeout(3 * CHILD_SECONDS)
@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_run_log_level_shows_recurjobs_info_lines(tmp_path: Path, level: str) -> None:
    """`run --log-level` shows recurjobs' INFO lines (the lock taken, one line per finished
    run) even when the app's module configured logging (dictConfig disables existing loggers,
    root at WARNING)."""
    out = tmp_path / "events.txt"
    target = "tests.apps.cli_logging_host:host"
    proc = subprocess.Popen(
        [python(), "-m", "recurjobs", "run", "--log-level", level, target],
        env=child_env(tmp_path, RECURJOBS_TEST_OUT=str(out)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(lines(out)) >= 3, CHILD_SECONDS, "three runs")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=CHILD_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acquired = [line for line in err.splitlines() if "acquired main instance lock" in line]
    finished = [line for line in err.splitlines() if re.search(r"Beat executed in \d", line)]
    assert 0 == proc.returncode
    assert 1 == len(acquired), err
    assert len(finished) >= 3, err  # one INFO line per finished run


def test_trigger_unknown_name_on_every_backend(
    db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trigger NAME` without a row is one line and exit 2 on every backend; rows stay as
    they were."""
    jobs = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        jobs.create_schema()
        jobs.ensure([Named(name="cleanup")])
        argv = ["trigger", "--database", db.url, "--table-prefix", db.table_prefix, "nobody"]
        assert 2 == main(argv)
        err = capsys.readouterr().err
        assert (1, True) == (len(err.splitlines()), "known: cleanup)" in err)
        assert [("cleanup", False)] == [(r.name, r.triggered) for r in jobs.rows()]
    finally:
        jobs.dispose()


def test_unusable_database_is_one_line_exit_1(
    db: TestDatabase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database that refuses us (a wrong password; for SQLite a directory as the file) is
    one line and exit 1, without the password."""
    if db.backend == "sqlite":
        url = f"sqlite:///{tmp_path}"
    else:
        url = sa.make_url(db.url).set(password="not-the-password-42").render_as_string(False)
    began = time.monotonic()
    assert 1 == main(["status", "--database", url])
    took = time.monotonic() - began
    err = capsys.readouterr().err
    assert (1, False) == (len(err.splitlines()), "not-the-password-42" in err), err
    assert err.startswith("recurjobs: error: cannot reach ")
    assert took < 10.0  # within the connect timeout (10 s); a refusal is not retried


@pytest.mark.parametrize(
    "scheme", ["postgresql+psycopg", "mysql+pymysql"], ids=["postgresql", "mariadb"]
)
def test_a_closed_port_is_one_line_exit_1_at_once(
    capsys: pytest.CaptureFixture[str], scheme: str
) -> None:
    """A server port that refuses the connection (nothing listens there) is one line and exit
    1, without the password, well within the connect timeout."""
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"{scheme}://u:not-the-password-42@127.0.0.1:{port}/db"
    began = time.monotonic()
    code = main(["status", "--database", url])
    took = time.monotonic() - began
    err = capsys.readouterr().err
    assert (1, 1, False) == (code, len(err.splitlines()), "not-the-password-42" in err), err
    assert err.startswith("recurjobs: error: cannot reach ")
    assert took < 5.0  # at once: a refused connection is not waited on


def test_status_reads_an_sqlite_uri(store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    """An SQLite URI (file:...?mode=ro&uri=true), which SQLAlchemy and the dashboard read, is
    not refused as a missing file."""
    path = store.engine.url.database
    assert 0 == main(["status", "--database", f"sqlite:///file:{path}?mode=ro&uri=true", "--json"])
    assert ["cleanup", "report"] == sorted(r["name"] for r in json.loads(capsys.readouterr().out))


# A child that runs the command as installed without the dashboard extra (no Flask, no
# waitress): `pip install recurjobs` alone.
WITHOUT_DASHBOARD_EXTRA = """
import sys

for name in ("flask", "waitress"):
    sys.modules[name] = None  # importing it raises ImportError, as when it is not installed
from recurjobs.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.multiprocess
@pytest.mark.timeout(4 * CHILD_SECONDS)
def test_the_command_works_without_the_dashboard_extra(tmp_path: Path) -> None:
    """Without Flask and waitress every command but `dashboard` works, and `dashboard` is one
    line naming the extra (exit 1), never an import traceback."""
    jobs = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    jobs.create_schema()
    jobs.ensure([Named(name="cleanup")])
    jobs.dispose()
    url = f"sqlite:///{tmp_path / 'jobs.db'}"

    def run(*argv: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [python(), "-c", WITHOUT_DASHBOARD_EXTRA, *argv],
            env=child_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=CHILD_SECONDS,
        )
        return done.returncode, done.stdout, done.stderr

    code, out, err = run("status", "--database", url)
    assert (0, "") == (code, err)
    assert "cleanup" in out
    code, out, err = run("trigger", "--database", url, "cleanup")
    assert (0, "") == (code, err)
    assert (0, "no runs recorded\n", "") == run("history", "--database", url)
    code, out, err = run("dashboard", "--database", url)
    assert (1, "") == (code, out)
    assert err == (
        "recurjobs: error: the dashboard needs Flask and waitress: "
        "pip install 'recurjobs[dashboard]'\n"
    )


@pytest.mark.parametrize("command", ["status", "dashboard"])
def test_a_missing_driver_is_one_line_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A URL whose driver is not installed: exit 1, one line naming the driver and how to
    install it, said once (the dashboard's line repeated itself), the password masked."""
    monkeypatch.setitem(sys.modules, "pymysql", None)  # importing it raises ImportError
    url = "mysql+pymysql://u:secret@127.0.0.1:3306/db"
    assert 1 == main([command, "--database", url])
    err = capsys.readouterr().err
    assert err == (
        "recurjobs: error: cannot use the database mysql+pymysql://u:***@127.0.0.1:3306/db: "
        "its driver 'pymysql' is not installed: pip install \"recurjobs[mysql]\" (PyMySQL)\n"
    ), err
