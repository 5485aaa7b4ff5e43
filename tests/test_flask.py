"""The Flask extension: config, app factories, where the host starts, and the CLI group."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import click
import pytest
from flask import Flask
from flask.cli import FlaskGroup, run_command

from recurjobs import (
    CancellationToken,
    DistributedJob,
    JobHost,
    MainDom,
    RecurringJob,
    ServerRole,
    TriggerableJob,
)
from recurjobs.flask import (
    CONFIG_DEFAULTS,
    EXTENSION_KEY,
    RecurJobs,
    launch_context,
    log_to_gunicorn,
)
from recurjobs.sql import JobStore
from recurjobs.testing import ManualClock
from tests.apps.procs import child_env, free_port, lines, python, script, stop_group, wait_until


class Tick(RecurringJob, TriggerableJob):
    """A recurring job that does nothing, every five minutes."""

    def __init__(self) -> None:
        super().__init__(timedelta(minutes=5))

    def run(self, token: CancellationToken) -> None:
        pass


class Report(DistributedJob):
    """A distributed job named "report" that does nothing, hourly."""

    name = "report"
    period = timedelta(hours=1)

    def execute(self, token: CancellationToken) -> None:
        pass


def make_app(**config: object) -> Flask:
    """A bare app whose config holds ``config`` (main instance lock off unless given)."""
    app = Flask("test_app")
    app.config.update({"RECURJOBS_MAIN_DOM": False, **config})
    return app


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps a test creates; their hosts are stopped afterwards."""
    made: list[Flask] = []
    yield made
    for app in made:
        host = app.extensions.get(EXTENSION_KEY)
        if isinstance(host, JobHost):
            host.stop()


def test_init_app_stores_an_unstarted_host_with_defaults(apps: list[Flask]) -> None:
    """init_app puts a JobHost in app.extensions and fills in every missing config key."""
    app = make_app(RECURJOBS_AUTOSTART=False)
    apps.append(app)
    job = Tick()
    RecurJobs(app, jobs=[job])
    host = app.extensions[EXTENSION_KEY]
    assert isinstance(host, JobHost)
    assert (job,) == host.jobs
    assert False is host.running
    assert set(CONFIG_DEFAULTS) <= set(app.config)
    assert timedelta(seconds=5) == app.config["RECURJOBS_POLL_PERIOD"]


def test_main_dom_is_on_by_default(apps: list[Flask]) -> None:
    """Without RECURJOBS_MAIN_DOM the host checks an automatic main instance lock."""
    app = Flask("test_app")
    app.config["RECURJOBS_AUTOSTART"] = False
    apps.append(app)
    RecurJobs(app)
    assert isinstance(RecurJobs.get_host(app).gates.main_dom, MainDom)


def test_main_dom_false_and_directory(tmp_path: Path, apps: list[Flask]) -> None:
    """RECURJOBS_MAIN_DOM=False turns the check off; a directory places the lock file."""
    off = make_app(RECURJOBS_AUTOSTART=False, RECURJOBS_MAIN_DOM="false")
    keyed = make_app(
        RECURJOBS_AUTOSTART=False,
        RECURJOBS_MAIN_DOM="my-app",
        RECURJOBS_MAIN_DOM_DIRECTORY=str(tmp_path),
    )
    apps.extend([off, keyed])
    ext = RecurJobs()
    ext.init_app(off)
    ext.init_app(keyed)
    assert None is RecurJobs.get_host(off).gates.main_dom
    lock = RecurJobs.get_host(keyed).gates.main_dom
    assert lock is not None
    assert str(tmp_path) == os.path.dirname(lock.path)


def test_app_factory_gets_its_own_host_and_jobs(apps: list[Flask]) -> None:
    """One extension object serves several apps; a jobs callable is asked once per app."""
    asked: list[str] = []

    def jobs(app: Flask) -> list[RecurringJob]:
        asked.append(app.name)
        return [Tick()]

    ext = RecurJobs(jobs=jobs)
    first, second = Flask("first"), Flask("second")
    for app in (first, second):
        app.config.update(RECURJOBS_AUTOSTART=False, RECURJOBS_MAIN_DOM=False)
        ext.init_app(app)
        apps.append(app)
    assert ["first", "second"] == asked
    assert RecurJobs.get_host(first) is not RecurJobs.get_host(second)
    assert RecurJobs.get_host(first).jobs[0] is not RecurJobs.get_host(second).jobs[0]


def test_autostart_starts_outside_the_flask_command(apps: list[Flask]) -> None:
    """Imported by a WSGI server (no click context) the host starts in init_app."""
    clock = ManualClock()
    app = make_app()
    apps.append(app)
    RecurJobs(app, jobs=[Tick()], clock=clock)
    assert True is RecurJobs.get_host(app).running
    clock.wait_for_waiters(1)


def test_start_and_stop_by_hand(apps: list[Flask]) -> None:
    """With RECURJOBS_AUTOSTART=False, start() and stop() drive the app's host."""
    app = make_app(RECURJOBS_AUTOSTART="0")
    apps.append(app)
    ext = RecurJobs(app, jobs=[Tick()], clock=ManualClock())
    with app.app_context():
        assert ext.start() is RecurJobs.get_host()
        assert True is RecurJobs.get_host().running
        assert True is ext.stop()
        assert False is RecurJobs.get_host().running


def test_distributed_settings_come_from_config(tmp_path: Path, apps: list[Flask]) -> None:
    """RECURJOBS_* keys accept timedeltas, seconds and duration strings."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    app = make_app(
        RECURJOBS_AUTOSTART=False,
        RECURJOBS_DATABASE_URL=url,
        RECURJOBS_POLL_PERIOD=2,
        RECURJOBS_DELAY="1m30s",
        RECURJOBS_MAX_EXECUTION_TIME=timedelta(minutes=7),
        RECURJOBS_MAX_CONCURRENT_JOBS="3",
        RECURJOBS_TABLE_PREFIX="app_",
        RECURJOBS_SERVER_ROLE="subscriber",
    )
    apps.append(app)
    RecurJobs(app, jobs=[Report()])
    host = RecurJobs.get_host(app)
    expected = (timedelta(seconds=2), timedelta(seconds=90), timedelta(minutes=7), 3, "app_")
    settings = host.settings
    actual = (
        settings.poll_period,
        settings.delay,
        settings.max_execution_time,
        settings.max_concurrent_jobs,
        settings.table_prefix,
    )
    assert expected == actual
    assert url == host.database
    assert ServerRole.SUBSCRIBER == host.server_role


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RECURJOBS_POLL_PERIOD", "soon"),
        ("RECURJOBS_SERVER_ROLE", "boss"),
        ("RECURJOBS_AUTOSTART", "maybe"),
        ("RECURJOBS_MAIN_DOM", 3),
        ("RECURJOBS_MAX_CONCURRENT_JOBS", 1.5),
        ("RECURJOBS_DATABASE_URL", 42),
    ],
)
def test_bad_config_names_the_key(key: str, value: object) -> None:
    """A config value of the wrong kind is a ValueError naming the key, raised by init_app."""
    app = make_app(**{key: value})
    with pytest.raises(ValueError, match=key):
        RecurJobs(app)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AUTOSTART": "0", "MAIN_DOM": "1"}, (False, True)),
        ({"AUTOSTART": "1", "MAIN_DOM": "0"}, (True, False)),
        ({"AUTOSTART": "false", "MAIN_DOM": "true"}, (False, True)),
    ],
)
def test_flags_from_prefixed_env(
    monkeypatch: pytest.MonkeyPatch,
    apps: list[Flask],
    env: dict[str, str],
    expected: tuple[bool, bool],
) -> None:
    """FLASK_RECURJOBS_AUTOSTART=0 and MAIN_DOM=1 (ints after from_prefixed_env) are flags."""
    for key, value in env.items():
        monkeypatch.setenv(f"FLASK_RECURJOBS_{key}", value)
    app = Flask("env_app")
    app.config.from_prefixed_env()
    apps.append(app)
    RecurJobs(app, jobs=[Tick()])
    host = RecurJobs.get_host(app)
    assert expected == (host.running, host.gates.main_dom is not None)


def test_numbers_from_prefixed_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, apps: list[Flask]
) -> None:
    """Durations and counts from FLASK_RECURJOBS_* arrive as numbers and are used as such."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    for key, value in {
        "AUTOSTART": "false",
        "MAIN_DOM": "false",
        "DATABASE_URL": url,
        "POLL_PERIOD": "2.5",
        "DELAY": "0",
        "MAX_EXECUTION_TIME": "1m30s",
        "MAX_CONCURRENT_JOBS": "3",
    }.items():
        monkeypatch.setenv(f"FLASK_RECURJOBS_{key}", value)
    app = Flask("env_app")
    app.config.from_prefixed_env()
    apps.append(app)
    RecurJobs(app, jobs=[Report()])
    settings = RecurJobs.get_host(app).settings
    expected = (timedelta(seconds=2.5), timedelta(0), timedelta(seconds=90), 3)
    actual = (
        settings.poll_period,
        settings.delay,
        settings.max_execution_time,
        settings.max_concurrent_jobs,
    )
    assert expected == actual


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("POLL_PERIOD", "-5", "RECURJOBS_POLL_PERIOD: poll_period must not be negative, got"),
        ("POLL_PERIOD", "NaN", "RECURJOBS_POLL_PERIOD must be a timedelta"),
        ("DELAY", "Infinity", "RECURJOBS_DELAY must be a timedelta"),
        ("MAX_CONCURRENT_JOBS", "0", "RECURJOBS_MAX_CONCURRENT_JOBS: max_concurrent_jobs must"),
        ("MAIN_DOM", "2", "RECURJOBS_MAIN_DOM must be True, False"),
        ("AUTOSTART", "2", "RECURJOBS_AUTOSTART must be a bool"),
    ],
)
def test_bad_numbers_from_prefixed_env(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, message: str
) -> None:
    """A number from the environment that does not fit is a ValueError naming the key."""
    monkeypatch.setenv(f"FLASK_RECURJOBS_{key}", value)
    app = Flask("env_app")
    app.config.from_prefixed_env()
    app.config.setdefault("RECURJOBS_MAIN_DOM", False)
    with pytest.raises(ValueError) as info:
        RecurJobs(app)
    assert message in str(info.value)


def test_init_twice_is_an_error(apps: list[Flask]) -> None:
    """Initialising recurjobs twice on one app is a RuntimeError, not a second host."""
    app = make_app(RECURJOBS_AUTOSTART=False)
    apps.append(app)
    RecurJobs(app)
    with pytest.raises(RuntimeError, match="already initialised"):
        RecurJobs(app)


@pytest.mark.parametrize(
    ("reload", "debug", "run_main", "expected"),
    [
        (None, "1", None, "watcher"),
        (True, "0", None, "watcher"),
        (None, "1", "true", "serve"),
        (None, "0", None, "serve"),
        (False, "1", None, "serve"),
    ],
)
def test_launch_context_under_flask_run(
    monkeypatch: pytest.MonkeyPatch,
    reload: bool | None,
    debug: str,
    run_main: str | None,
    expected: str,
) -> None:
    """Under `flask run` only the reloader's watcher (reloader on, no WERKZEUG_RUN_MAIN) waits."""
    monkeypatch.setenv("FLASK_DEBUG", debug)
    if run_main is None:
        monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    else:
        monkeypatch.setenv("WERKZEUG_RUN_MAIN", run_main)
    with click.Context(run_command, info_name="run") as ctx:
        ctx.params["reload"] = reload
        assert expected == launch_context()


def test_launch_context_of_other_flask_commands() -> None:
    """Any other `flask` command is "cli"; no click context at all is "serve"."""
    assert "serve" == launch_context()
    with click.Context(FlaskGroup(), info_name="flask") as root:
        assert "cli" == launch_context()
        with click.Context(click.Command("shell"), parent=root, info_name="shell"):
            assert "cli" == launch_context()


def test_cli_list_and_status(apps: list[Flask]) -> None:
    """`flask recurjobs list` and `status --json` show the registered jobs."""
    app = make_app(RECURJOBS_AUTOSTART=False)
    apps.append(app)
    RecurJobs(app, jobs=[Tick()])
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["recurjobs", "list"])
    assert 0 == listed.exit_code
    assert ["NAME", "Tick"] == [line.split()[0] for line in listed.output.splitlines()]
    status = runner.invoke(args=["recurjobs", "status", "--json"])
    assert 0 == status.exit_code
    payload = json.loads(status.output)
    assert [("Tick", "recurring", 300.0, 0)] == [
        (r["name"], r["kind"], r["period"], r["runs"]) for r in payload["host"]
    ]
    assert None is payload["database"]


def test_cli_trigger_and_status_of_a_distributed_job(tmp_path: Path, apps: list[Flask]) -> None:
    """`flask recurjobs trigger NAME` marks the row due; `status` shows the database table."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = JobStore(url)
    store.create_schema()
    store.ensure([Report()])
    app = make_app(RECURJOBS_AUTOSTART=False, RECURJOBS_DATABASE_URL=url)
    apps.append(app)
    RecurJobs(app, jobs=[Report(), Tick()])
    runner = app.test_cli_runner()
    result = runner.invoke(args=["recurjobs", "trigger", "report"])
    assert (0, "triggered report: the next server to poll runs it\n") == (
        result.exit_code,
        result.output,
    )
    assert [True] == [row.triggered for row in store.rows()]
    status = runner.invoke(args=["recurjobs", "status"])
    assert 0 == status.exit_code
    assert "now (triggered)" in status.output
    store.dispose()


@pytest.mark.parametrize(
    ("name", "message"),
    [("Tick", "is a recurring job"), ("nobody", "RECURJOBS_DATABASE_URL is unset")],
)
def test_cli_trigger_refuses(apps: list[Flask], name: str, message: str) -> None:
    """Triggering a recurring job or an unknown name from a command is a usage error (2)."""
    app = make_app(RECURJOBS_AUTOSTART=False)
    apps.append(app)
    RecurJobs(app, jobs=[Tick()])
    result = app.test_cli_runner().invoke(args=["recurjobs", "trigger", name])
    assert 2 == result.exit_code
    assert message in result.output


def test_cli_without_a_jobs_table_names_no_option_flask_lacks(
    tmp_path: Path, apps: list[Flask]
) -> None:
    """`flask recurjobs trigger` on a database without the jobs table: a usage error that
    suspects the table prefix, without naming the standalone command's --table-prefix."""
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    app = make_app(RECURJOBS_AUTOSTART=False, RECURJOBS_DATABASE_URL=f"sqlite:///{path}")
    apps.append(app)
    RecurJobs(app, jobs=[Tick()])
    result = app.test_cli_runner().invoke(args=["recurjobs", "trigger", "report"])
    assert (2, True, False) == (
        result.exit_code,
        "a wrong table prefix" in result.output,
        "--table-prefix" in result.output,
    ), result.output


# ------------------------------------------------------------------ real servers


def _events(path: Path) -> dict[str, list[int]]:
    """``{"loaded": [pids], "run": [pids], "closed": [pids]}`` from the app's record file."""
    found: dict[str, list[int]] = {"loaded": [], "run": [], "closed": []}
    for line in lines(path):
        event, pid = line.split()
        found[event].append(int(pid))
    return found


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
@pytest.mark.parametrize("main_dom", ["false", "true"])
def test_flask_run_debug_runs_jobs_once(tmp_path: Path, main_dom: str) -> None:
    """`flask run --debug` loads the app twice but only the serving child runs the jobs."""
    out, port = tmp_path / "events.txt", free_port()
    env = child_env(tmp_path, RECURJOBS_TEST_OUT=str(out), RECURJOBS_TEST_MAIN_DOM=main_dom)
    # Nothing is watched for changes, so edits elsewhere in the tree cannot restart the child;
    # the reloader's two processes are there all the same.
    command = [python(), "-m", "flask", "--app", "tests.apps.flask_pid_app", "run", "--debug"]
    command += ["--exclude-patterns", "*"]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def served_pid() -> int | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/pid", timeout=2) as r:
                    return int(r.read())
            except OSError:
                return None

        child = wait_until(served_pid, 30, "the dev server to answer")
        wait_until(lambda: len(_events(out)["run"]) >= 5, 30, "five runs")
    finally:
        stop_group(proc)
    events = _events(out)
    assert [proc.pid, child] == events["loaded"]
    assert {child} == set(events["run"])


@pytest.mark.multiprocess
@pytest.mark.timeout(90)
def test_gunicorn_three_workers_one_runs_the_jobs(tmp_path: Path) -> None:
    """Under gunicorn with 3 workers the main instance lock lets exactly one worker run jobs."""
    out, port = tmp_path / "events.txt", free_port()
    env = child_env(tmp_path, RECURJOBS_TEST_OUT=str(out))
    log_path = tmp_path / "gunicorn.log"
    command = [script("gunicorn"), "-w", "3", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "10"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "tests.apps.flask_pid_app:app"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: len(set(_events(out)["loaded"])) == 3, 60, "three workers")
        runs_before = len(_events(out)["run"])
        wait_until(lambda: len(_events(out)["run"]) >= runs_before + 10, 30, "ten more runs")
    finally:
        stop_group(proc)
    events = _events(out)
    assert 3 == len(set(events["loaded"]))
    assert proc.pid not in events["loaded"]
    runners = set(events["run"])
    assert 1 == len(runners)
    assert runners <= set(events["loaded"])
    assert runners <= set(events["closed"])


# ------------------------------------------------------------------------ logging
@pytest.fixture
def gunicorn_logger() -> Iterator[logging.Logger]:
    """`gunicorn.error` and `recurjobs` without handlers (put back afterwards); yields the first."""
    ours, gunicorn = logging.getLogger("recurjobs"), logging.getLogger("gunicorn.error")
    saved = (list(ours.handlers), ours.level, list(gunicorn.handlers))
    ours.handlers, gunicorn.handlers = [], []
    ours.setLevel(logging.NOTSET)
    try:
        yield gunicorn
    finally:
        ours.handlers, gunicorn.handlers = saved[0], saved[2]
        ours.setLevel(saved[1])


@contextlib.contextmanager
def no_root_handlers() -> Iterator[None]:
    """The root logger without handlers for a moment (pytest adds its own for every phase)."""
    root = logging.getLogger()
    removed = list(root.handlers)
    root.handlers = []
    try:
        yield
    finally:
        for handler in removed:
            root.addHandler(handler)


def test_log_to_gunicorn_attaches_its_handlers(gunicorn_logger: logging.Logger) -> None:
    """In a gunicorn process with no other logging set up, recurjobs logs to its error log at
    INFO."""
    handler = logging.StreamHandler()
    gunicorn_logger.addHandler(handler)
    ours = logging.getLogger("recurjobs")
    with no_root_handlers():
        assert True is log_to_gunicorn()
        assert ([handler], logging.INFO) == (ours.handlers, ours.level)
        assert False is log_to_gunicorn()  # once is enough
    assert [handler] == ours.handlers


@pytest.mark.parametrize("where", ["root", "recurjobs", "not gunicorn"])
def test_log_to_gunicorn_leaves_configured_logging_alone(
    gunicorn_logger: logging.Logger, where: str
) -> None:
    """With a handler on root or on `recurjobs`, or outside gunicorn, nothing is attached."""
    own = logging.NullHandler()
    if where != "not gunicorn":
        gunicorn_logger.addHandler(logging.StreamHandler())
    ours = logging.getLogger("recurjobs")
    with no_root_handlers():
        if where != "not gunicorn":
            logging.getLogger("" if where == "root" else "recurjobs").addHandler(own)
        attached = log_to_gunicorn()
        logging.getLogger().removeHandler(own)
    expected = [own] if where == "recurjobs" else []
    assert (False, expected) == (attached, ours.handlers)


@pytest.mark.parametrize(("setting", "expected"), [(True, 1), (False, 0), ("0", 0)])
def test_log_to_gunicorn_config_key(
    gunicorn_logger: logging.Logger, apps: list[Flask], setting: object, expected: int
) -> None:
    """`init_app` attaches gunicorn's handlers unless RECURJOBS_LOG_TO_GUNICORN is false."""
    gunicorn_logger.addHandler(logging.StreamHandler())
    app = make_app(RECURJOBS_AUTOSTART=False, RECURJOBS_LOG_TO_GUNICORN=setting)
    apps.append(app)
    with no_root_handlers():
        RecurJobs(app)
    assert expected == len(logging.getLogger("recurjobs").handlers)


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
def test_gunicorn_error_log_shows_recurjobs(tmp_path: Path) -> None:
    """Under gunicorn, recurjobs' INFO lines (host started, lock acquired, a finished run)
    reach its error log."""
    out, port = tmp_path / "events.txt", free_port()
    env = child_env(tmp_path, RECURJOBS_TEST_OUT=str(out))
    log_path = tmp_path / "error.log"
    command = [script("gunicorn"), "-w", "1", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5"]
    command += ["--error-logfile", str(log_path), "tests.apps.flask_pid_app:app"]
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: len(_events(out)["run"]) >= 2, 30, "two runs")
    finally:
        stop_group(proc)
    (worker,) = set(_events(out)["run"])
    text = log_path.read_text()
    started = f"[{worker}] [INFO] recurjobs host of tests.apps.flask_pid_app started with 1 job(s)"
    assert started in text
    assert f"[{worker}] [INFO] acquired main instance lock " in text
    assert f"[{worker}] [INFO] PidJob executed in " in text  # one line per finished run
