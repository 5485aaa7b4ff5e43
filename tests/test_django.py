"""The Django integration in this process: settings, system checks, where the host starts,
connections around runs, and ``manage.py recurjobs``. Real servers: test_django_servers.py."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings

from recurjobs import (
    CancellationToken,
    DistributedJob,
    JobExecuted,
    JobHost,
    MainDom,
    RecurringJob,
    ServerRole,
    TriggerableJob,
)
from recurjobs.sql import JobStore
from recurjobs.testing import ManualClock

_SQLITE = str(Path(tempfile.mkdtemp(prefix="recurjobs-django-")) / "django.sqlite3")

if not settings.configured:
    settings.configure(
        SECRET_KEY="test",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "recurjobs.django"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _SQLITE}},
        RECURJOBS={},
    )
    django.setup()

from django.core.checks import run_checks  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import override_settings  # noqa: E402

import recurjobs.django as integration  # noqa: E402
from recurjobs.django._databases import alias_url  # noqa: E402
from recurjobs.django._launch import decide  # noqa: E402

HERE = "tests.test_django"


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


class Query(RecurringJob):
    """Runs a query through Django's connection at once, then never again; keeps the wrapper."""

    def __init__(self) -> None:
        super().__init__(timedelta(days=1), delay=timedelta(0))
        self.used: Any = None

    def run(self, token: CancellationToken) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        self.used = connection


def two_ticks() -> list[object]:
    """A job factory returning two jobs."""
    return [Tick(), Tick()]


not_a_job = 42


@pytest.fixture(autouse=True)
def fresh_process_host() -> Iterator[None]:
    """Each test starts without a process host and leaves none behind."""
    integration._reset_for_tests()
    yield
    integration._reset_for_tests()


def problems(**recurjobs: object) -> list[tuple[str, str]]:
    """The system check errors for ``RECURJOBS = recurjobs``: (id, message) pairs."""
    with override_settings(RECURJOBS=recurjobs):
        return [(e.id, e.msg) for e in run_checks(tags=["recurjobs"])]


# --------------------------------------------------------------------------- settings
def test_jobs_by_dotted_path_class_instance_and_factory(tmp_path: Path) -> None:
    """JOBS entries: a class is instantiated, a factory's jobs are all added; main instance on."""
    with override_settings(RECURJOBS={"JOBS": [f"{HERE}.Tick", f"{HERE}.two_ticks", Tick()]}):
        host = integration.build_host()
    assert ([Tick] * 4, False) == ([type(j) for j in host.jobs], host.running)
    assert isinstance(host.gates.main_dom, MainDom)


def test_settings_reach_the_host(tmp_path: Path) -> None:
    """DATABASE alias, DISTRIBUTED fields, TABLE_PREFIX, SERVER_ROLE and timeouts are used."""
    recurjobs = {
        "JOBS": [f"{HERE}.Report"],
        "DATABASE": "default",
        "MAIN_DOM": False,
        "DISTRIBUTED": {"poll_period": "2s", "delay": 0, "max_concurrent_jobs": 2},
        "TABLE_PREFIX": "dj_",
        "SERVER_ROLE": "subscriber",
        "START_TIMEOUT": 3,
        "EXIT_TIMEOUT": 1.5,
    }
    with override_settings(RECURJOBS=recurjobs):
        host = integration.build_host()
    s = host.settings
    expected = (f"sqlite:///{_SQLITE}", timedelta(seconds=2), timedelta(0), 2, "dj_")
    assert expected == (
        host.database,
        s.poll_period,
        s.delay,
        s.max_concurrent_jobs,
        s.table_prefix,
    )
    assert (ServerRole.SUBSCRIBER, None, 3.0, 1.5) == (
        host.server_role,
        host.gates.main_dom,
        host.start_timeout,
        host.exit_timeout,
    )


@pytest.mark.parametrize(
    ("entry", "url"),
    [
        (
            {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "shop",
                "USER": "u",
                "PASSWORD": "p@ss",
                "HOST": "db",
                "PORT": "5433",
                "OPTIONS": {"sslmode": "require", "pool": True},
            },
            "postgresql+psycopg://u:p%40ss@db:5433/shop?sslmode=require",
        ),
        (
            {
                "ENGINE": "django.db.backends.mysql",
                "NAME": "shop",
                "USER": "u",
                "HOST": "",
                "OPTIONS": {"charset": "utf8mb4", "init_command": "SET x=1"},
            },
            "mysql+pymysql://u@/shop?charset=utf8mb4",
        ),
        (
            {"ENGINE": "django.db.backends.sqlite3", "NAME": Path("/srv/db.sqlite3")},
            "sqlite:////srv/db.sqlite3",
        ),
        (
            {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": "file:/srv/db.sqlite3?mode=rwc&cache=private#x",
                "OPTIONS": {"uri": True},
            },
            "sqlite:///file%3A/srv/db.sqlite3?cache=private&mode=rwc&uri=true",
        ),
        (
            {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "app",
                "USER": "u",
                "HOST": "/var/run/postgresql",
            },
            "postgresql+psycopg://u@/app?host=%2Fvar%2Frun%2Fpostgresql",
        ),
        (
            {"ENGINE": "django.db.backends.mysql", "NAME": "app", "HOST": "/run/mysqld/m.sock"},
            "mysql+pymysql:///app?unix_socket=%2Frun%2Fmysqld%2Fm.sock",
        ),
    ],
    ids=["postgres", "mysql", "sqlite", "sqlite-uri", "postgres-socket", "mysql-socket"],
)
def test_database_alias_becomes_a_url(entry: dict[str, object], url: str) -> None:
    """A DATABASES alias turns into the URL of recurjobs' driver for the same server."""
    assert url == alias_url("default", {"default": entry}, "RECURJOBS['DATABASE']")


_URI_NAME_SCRIPT = """
import ctypes, json, os, sqlite3
# Upstream SQLite reads a file name as a URI only when asked (SQLITE_USE_URI=0); Debian's is
# built to read URIs always, which would hide a URL that does not ask. Turn that off.
try:
    lib = ctypes.CDLL("libsqlite3.so.0")
except OSError:  # no shared SQLite library of that name (not Linux)
    raise SystemExit(print(json.dumps(None)))
lib.sqlite3_shutdown()
lib.sqlite3_config(17, ctypes.c_int(0))  # SQLITE_CONFIG_URI
lib.sqlite3_initialize()
sqlite3.connect("file:probe?mode=rwc").close()
literal = os.path.exists("file:probe?mode=rwc")
os.remove("file:probe?mode=rwc" if literal else "probe")

import django
from django.conf import settings
settings.configure(
    SECRET_KEY="test",
    INSTALLED_APPS=["recurjobs.django"],
    DATABASES={"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "file:django.sqlite3?mode=rwc",
        "OPTIONS": {"uri": True},
    }},
    RECURJOBS={"DATABASE": "default", "MAIN_DOM": False},
)
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE made_by_django (x integer)")

import recurjobs.django
from recurjobs.sql import JobStore
store = JobStore(recurjobs.django.get_host().database)
store.create_schema()
from sqlalchemy import inspect
seen_by_recurjobs = inspect(store.engine).get_table_names()
store.dispose()
seen_by_django = connection.introspection.table_names()
files = sorted(f for f in os.listdir(".") if not f.endswith(("-wal", "-shm")))
print(json.dumps([literal, "made_by_django" in seen_by_recurjobs,
                  "recurjobs_jobs" in seen_by_django, files]))
"""


def test_a_sqlite_uri_name_reaches_the_same_file(tmp_path: Path) -> None:
    """DATABASES NAME "file:django.sqlite3?mode=rwc" (Django opens every SQLite name as a URI):
    recurjobs' engine on the alias opens the very file Django does, also with a SQLite that
    reads a file name as a URI only when asked (upstream's default), where a URL without
    ?uri=true would open a file literally named "file:django.sqlite3?mode=rwc"."""
    done = subprocess.run(
        [sys.executable, "-c", _URI_NAME_SCRIPT],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert 0 == done.returncode, done.stderr
    found = json.loads(done.stdout)
    if not (found and found[0]):
        pytest.skip("cannot make this SQLite read file names literally (needs libsqlite3.so.0)")
    _, django_table_seen, recurjobs_table_seen, files = found
    assert (True, True, ["django.sqlite3"]) == (django_table_seen, recurjobs_table_seen, files)


@pytest.mark.parametrize(
    ("recurjobs", "check_id", "message"),
    [
        ({"JOB": []}, "recurjobs.E001", "unknown key(s) 'JOB'"),
        ({"JOBS": "app.Job"}, "recurjobs.E002", "must be a list of dotted paths"),
        ({"JOBS": ["nowhere.Job"]}, "recurjobs.E002", "('nowhere.Job') cannot be imported"),
        ({"JOBS": [f"{HERE}.not_a_job"]}, "recurjobs.E002", "is 42: expected a job class"),
        ({"DATABASE": "other"}, "recurjobs.E003", "neither a URL nor a DATABASES alias"),
        ({"DATABASE": "oracle://x/y"}, "recurjobs.E003", "unsupported database 'oracle'"),
        ({"DATABASE": 5}, "recurjobs.E003", "must be a DATABASES alias or a URL, got 5"),
        ({"DATABASE": "sqlite://"}, "recurjobs.E003", "in-memory SQLite"),
        ({"DATABASE": "sqlite:///:memory:"}, "recurjobs.E003", "in-memory SQLite"),
        (
            {"DATABASE": "sqlite:///file:mem1?mode=memory&cache=shared&uri=true"},
            "recurjobs.E003",
            "in-memory SQLite",
        ),
        (
            {"MAIN_DOM_DIRECTORY": "/nonexistent/recurjobs"},
            "recurjobs.E004",
            "MAIN_DOM_DIRECTORY']: main_dom lock directory",
        ),
        ({"MAIN_DOM": 3}, "recurjobs.E004", "must be True, False or a lock key, got 3"),
        ({"MAIN_DOM_DIRECTORY": ""}, "recurjobs.E004", "must be a directory path"),
        ({"HISTORY": True}, "recurjobs.E005", "HISTORY"),
        ({"HISTORY": True, "DATABASE": None}, "recurjobs.E005", "needs RECURJOBS['DATABASE']"),
        ({"DISTRIBUTED": {"poll_period": "soon"}}, "recurjobs.E006", "['poll_period']"),
        ({"DISTRIBUTED": {"delay": -5}}, "recurjobs.E006", "must not be negative, got -5"),
        ({"DISTRIBUTED": {"poll": 1}}, "recurjobs.E006", "unknown key 'poll'"),
        ({"DISTRIBUTED": {"max_concurrent_jobs": 0}}, "recurjobs.E006", "at least 1"),
        ({"TABLE_PREFIX": "no spaces"}, "recurjobs.E006", "['table_prefix']"),
        ({"SERVER_ROLE": "boss"}, "recurjobs.E007", "must be a ServerRole"),
        ({"ELECT_SERVER_ROLE": True}, "recurjobs.E007", "has no DATABASE"),
        ({"AUTOSTART": "maybe"}, "recurjobs.E008", "['AUTOSTART'] must be True or False"),
        ({"EXIT_TIMEOUT": -1}, "recurjobs.E008", "['EXIT_TIMEOUT'] must be a number"),
        ({"JOBS": [f"{HERE}.Report"]}, "recurjobs.E009", "needs JobHost(database=...)"),
    ],
)
def test_every_bad_setting_is_a_check_error(
    recurjobs: dict[str, object], check_id: str, message: str
) -> None:
    """Each bad RECURJOBS value is a system check error with its id, naming key and value."""
    found = problems(**recurjobs)
    assert [check_id] == [i for i, _ in found]
    assert message in found[0][1]


def test_checks_report_every_problem_at_once() -> None:
    """Two bad keys give two errors in one check run; good settings give none."""
    assert ["recurjobs.E003", "recurjobs.E004"] == [
        i for i, _ in problems(DATABASE="nope", MAIN_DOM=2.5)
    ]
    assert [] == problems(JOBS=[f"{HERE}.Tick"], DATABASE="default")


def test_build_host_raises_improperly_configured() -> None:
    """Outside the checks, a bad setting is an ImproperlyConfigured naming id, key and value."""
    with (
        override_settings(RECURJOBS={"DATABASE": "nope"}),
        pytest.raises(
            ImproperlyConfigured, match=r"recurjobs\.E003: RECURJOBS\['DATABASE'\] is 'nope'"
        ),
    ):
        integration.build_host()


def test_recurjobs_must_be_a_dict() -> None:
    """RECURJOBS of the wrong type is E001."""
    with override_settings(RECURJOBS=["x"]):
        assert ["recurjobs.E001"] == [e.id for e in run_checks(tags=["recurjobs"])]


def test_history_settings_dict_reaches_the_host() -> None:
    """HISTORY as a dict becomes HistorySettings (durations as text accepted)."""
    from recurjobs import HistorySettings

    recurjobs = {"DATABASE": "default", "MAIN_DOM": False, "HISTORY": {"keep": "2d"}}
    with override_settings(RECURJOBS=recurjobs):
        config, found = integration._settings()
    assert ([], HistorySettings(keep=timedelta(days=2))) == (found, config.host_kwargs["history"])


# --------------------------------------------------------------------------- launch
@pytest.mark.parametrize(
    ("argv", "env", "in_tests", "expected"),
    [
        (None, {}, False, "serve"),  # gunicorn/uWSGI/mod_wsgi importing wsgi.py
        (None, {}, True, "test"),  # pytest-django
        (["manage.py", "runserver"], {}, False, "watcher"),
        (["manage.py", "runserver"], {"RUN_MAIN": "true"}, False, "serve"),
        (["manage.py", "runserver", "--noreload"], {}, False, "serve"),
        (["manage.py", "runserver", "0:8000", "--norel"], {}, False, "serve"),
        (["manage.py", "runserver", "--nostatic"], {}, False, "watcher"),
        (["manage.py", "migrate"], {"RUN_MAIN": "true"}, False, "command"),
        (["manage.py", "shell"], {}, False, "command"),
        (["manage.py", "test"], {}, False, "command"),
        (["manage.py", "collectstatic"], {}, False, "command"),
        (["manage.py", "recurjobs", "run"], {}, False, "command"),
        (["manage.py"], {}, False, "command"),
    ],
)
def test_launch_decision(
    argv: list[str] | None, env: dict[str, str], in_tests: bool, expected: str
) -> None:
    """Only runserver's serving child and servers without a command start the host."""
    assert expected == decide(argv, env, in_tests)


def test_launch_context_under_pytest() -> None:
    """This process (pytest, no management command) is a test process: nothing starts."""
    assert "test" == integration.launch_context()


# ---------------------------------------------------------------------- connections
@pytest.mark.parametrize(("close", "expected"), [(True, None), (False, "open")])
def test_connections_closed_after_a_run(close: bool, expected: str | None) -> None:
    """With CLOSE_CONNECTIONS (the default) the job thread's connection is closed after a run."""
    job = Query()
    seen: list[object] = []
    done = threading.Event()

    def after(n: JobExecuted) -> None:
        seen.append(None if job.used.connection is None else "open")
        done.set()

    recurjobs = {"JOBS": [lambda: job], "MAIN_DOM": False, "CLOSE_CONNECTIONS": close}
    with override_settings(RECURJOBS=recurjobs):
        host = integration.build_host(clock=ManualClock())
    host.subscribe(JobExecuted, after)
    with host:
        assert True is done.wait(10)
    assert [expected] == seen


# -------------------------------------------------------------------------- commands
def command(*args: str) -> str:
    """Run ``manage.py recurjobs ARGS`` in this process; its standard output."""
    out = io.StringIO()
    call_command("recurjobs", *args, stdout=out)
    return out.getvalue()


def test_status_shows_the_jobs() -> None:
    """`recurjobs status --json` lists the host's jobs; a command process runs none."""
    with override_settings(RECURJOBS={"JOBS": [f"{HERE}.Tick"], "MAIN_DOM": False}):
        payload = json.loads(command("status", "--json"))
        text = command("status")
    assert [("Tick", "recurring", 0)] == [
        (r["name"], r["kind"], r["runs"]) for r in payload["host"]
    ]
    assert None is payload["database"]
    assert "a command runs no jobs" in text


def test_status_before_any_table_exists(tmp_path: Path) -> None:
    """`recurjobs status` with a database that has no jobs table yet shows the jobs and says so."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with override_settings(RECURJOBS={"JOBS": [f"{HERE}.Tick"], "DATABASE": url}):
        text = command("status")
    assert (True, True) == ("Tick" in text, "no distributed jobs table yet" in text)


def test_trigger_a_distributed_job_through_the_database(tmp_path: Path) -> None:
    """`recurjobs trigger report` marks the row due; `status` then shows the table."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = JobStore(url)
    store.create_schema()
    store.ensure([Report()])
    recurjobs = {"JOBS": [f"{HERE}.Report"], "DATABASE": url, "MAIN_DOM": False}
    with override_settings(RECURJOBS=recurjobs):
        assert "triggered report: the next server to poll runs it\n" == command("trigger", "report")
        assert "now (triggered)" in command("status")
    assert [True] == [row.triggered for row in store.rows()]
    store.dispose()


def test_trigger_of_an_unknown_name_lists_the_rows_and_the_projects_jobs(tmp_path: Path) -> None:
    """A name that is neither a row nor one of the project's jobs: exit 2, and the message
    lists both, since a mistyped name may have meant a recurring job (which has no row)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = JobStore(url)
    store.create_schema()
    store.ensure([Report()])
    store.dispose()
    recurjobs = {"JOBS": [f"{HERE}.Report", f"{HERE}.Tick"], "DATABASE": url, "MAIN_DOM": False}
    with override_settings(RECURJOBS=recurjobs), pytest.raises(CommandError) as raised:
        command("trigger", "Tock")
    assert 2 == raised.value.returncode
    message = str(raised.value)
    assert "no distributed job named 'Tock' in the database" in message
    assert "known: report)" in message
    assert message.endswith("this project's jobs: Tick, report")


@pytest.mark.parametrize(
    ("recurjobs", "name", "message"),
    [
        ({"JOBS": [f"{HERE}.Tick"], "MAIN_DOM": False}, "Tick", "MAIN_DOM'] is False"),
        ({"JOBS": [f"{HERE}.Tick"], "MAIN_DOM": False}, "nobody", "has no DATABASE"),
    ],
)
def test_trigger_refuses(recurjobs: dict[str, object], name: str, message: str) -> None:
    """A recurring job without a main instance, or an unknown name, is a command error."""
    with override_settings(RECURJOBS=recurjobs), pytest.raises(CommandError, match=message):
        command("trigger", name)


def test_trigger_a_recurring_job_reaches_the_main_instance(tmp_path: Path) -> None:
    """`recurjobs trigger Tick` is forwarded to the running main instance, which runs it."""
    ran = threading.Event()
    key = f"django-test-{tmp_path.name}"
    main = JobHost([Tick()], main_dom=MainDom(key, directory=str(tmp_path)), clock=ManualClock())
    main.subscribe(JobExecuted, lambda n: ran.set())
    recurjobs = {
        "JOBS": [f"{HERE}.Tick"],
        "MAIN_DOM": key,
        "MAIN_DOM_DIRECTORY": str(tmp_path),
    }
    with main, override_settings(RECURJOBS=recurjobs):
        out = command("trigger", "Tick")
        assert True is ran.wait(10)
    assert "triggered Tick: the main instance (pid " in out


def test_trigger_without_a_main_instance_fails(tmp_path: Path) -> None:
    """With nobody holding the lock, the trigger is refused (exit 1), never silently dropped."""
    recurjobs = {"JOBS": [f"{HERE}.Tick"], "MAIN_DOM_DIRECTORY": str(tmp_path)}
    with (
        override_settings(RECURJOBS=recurjobs),
        pytest.raises(CommandError, match="Tick was not triggered: no main instance"),
    ):
        command("trigger", "Tick")


@pytest.mark.parametrize(("action", "verb"), [("trigger", "triggered"), ("pause", "paused")])
def test_a_main_instance_that_does_not_answer_fails_the_command_within_a_second(
    tmp_path: Path, action: str, verb: str
) -> None:
    """A main instance that takes the connection but never answers (hung, stopped): `trigger`
    and `pause` of a recurring job give up after the forwarding timeout of 1 s with that
    reason (exit 1) instead of waiting for it."""
    import socket
    import time

    recurjobs = {"JOBS": [f"{HERE}.Tick"], "MAIN_DOM_DIRECTORY": str(tmp_path)}
    with override_settings(RECURJOBS=recurjobs):
        main_dom = integration.build_host().gates.main_dom
        assert main_dom is not None and main_dom.socket_path is not None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(main_dom.socket_path)
            listener.listen()  # connections wait in the backlog; nothing ever answers
            began = time.monotonic()
            with pytest.raises(CommandError) as refused:
                command(action, "Tick")
            took = time.monotonic() - began
    expected = f"Tick was not {verb}: the main instance did not answer within 1 s"
    assert (expected, 1) == (str(refused.value)[: len(expected)], refused.value.returncode)
    assert 0.5 < took < 5  # the 1 s timeout, with room for a busy machine


def test_pause_a_recurring_job_pauses_it_in_the_main_instance(tmp_path: Path) -> None:
    """`recurjobs pause Tick` pauses the job where it runs (the main instance), and `resume`
    undoes it."""
    key = f"django-pause-{tmp_path.name}"
    main = JobHost([Tick()], main_dom=MainDom(key, directory=str(tmp_path)), clock=ManualClock())
    recurjobs = {"JOBS": [f"{HERE}.Tick"], "MAIN_DOM": key, "MAIN_DOM_DIRECTORY": str(tmp_path)}
    with main, override_settings(RECURJOBS=recurjobs):
        out = command("pause", "Tick")
        paused = main.status()[0].paused
        command("resume", "Tick")
        assert False is main.status()[0].paused
    assert (True, True) == ("paused Tick in the main instance (pid" in out, paused)


def test_pause_a_recurring_job_without_a_main_instance_lock_is_refused() -> None:
    """Without a main instance lock nothing can reach the process that runs the job: an
    error, not "paused"."""
    lockless = {"JOBS": [f"{HERE}.Tick"], "MAIN_DOM": False}
    with override_settings(RECURJOBS=lockless), pytest.raises(CommandError, match="MAIN_DOM"):
        command("pause", "Tick")


def test_pause_and_resume_a_distributed_job(tmp_path: Path) -> None:
    """`recurjobs pause report` then `resume report` set the row's state; unknown is an error."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    recurjobs = {"JOBS": [f"{HERE}.Report"], "DATABASE": url, "MAIN_DOM": False}
    with override_settings(RECURJOBS=recurjobs):
        assert ("paused report\n", "resumed report\n") == (
            command("pause", "report"),
            command("resume", "report"),
        )
        with pytest.raises(CommandError, match="no job named 'nobody'"):
            command("pause", "nobody")


class OtherTick(RecurringJob, TriggerableJob):
    """A second job class named Tick, as if from another module of the project."""

    __module__ = "shop.other"

    def __init__(self) -> None:
        super().__init__(timedelta(minutes=5))

    def run(self, token: CancellationToken) -> None:
        pass


OtherTick.__name__ = OtherTick.__qualname__ = "Tick"


class RecurringReport(RecurringJob, TriggerableJob):
    """A recurring job named "report", like the distributed Report."""

    name = "report"

    def __init__(self) -> None:
        super().__init__(timedelta(minutes=5))

    def run(self, token: CancellationToken) -> None:
        pass


@pytest.mark.parametrize("action", ["pause", "resume", "trigger"])
@pytest.mark.parametrize(
    ("recurring", "distributed", "name", "candidates"),
    [
        (
            [Tick, OtherTick],
            [],
            "Tick",
            "(recurring tests.test_django.Tick; recurring shop.other.Tick)",
        ),
        (
            [Tick, Tick],
            [],
            "Tick",
            "(recurring tests.test_django.Tick; recurring tests.test_django.Tick)",
        ),
        (
            [RecurringReport],
            [Report],
            "report",
            "(recurring tests.test_django.RecurringReport; distributed tests.test_django.Report)",
        ),
    ],
    ids=["two-classes", "two-instances", "recurring-and-distributed"],
)
def test_a_name_several_jobs_have_is_refused(
    tmp_path: Path,
    action: str,
    recurring: list[type],
    distributed: list[type],
    name: str,
    candidates: str,
) -> None:
    """`recurjobs pause|resume|trigger NAME` when several registered jobs have that name: a
    command error listing them (exit 2), and neither the running main instance's jobs nor the
    distributed job's row are touched; acting on one of them would be a guess."""
    key = f"django-ambiguous-{tmp_path.name}"
    main = JobHost(
        [kind() for kind in recurring],
        main_dom=MainDom(key, directory=str(tmp_path)),
        clock=ManualClock(),
    )
    if action == "resume":
        main.pause(name)
    database = tmp_path / "jobs.db"
    recurjobs = {
        "JOBS": [lambda: [kind() for kind in recurring + distributed]],
        "DATABASE": f"sqlite:///{database}",
        "MAIN_DOM": key,
        "MAIN_DOM_DIRECTORY": str(tmp_path),
    }
    with main, override_settings(RECURJOBS=recurjobs):
        with pytest.raises(CommandError) as refused:
            command(action, name)
        states = [(s.paused, s.runs) for s in main.status()]
    count = len(recurring + distributed)
    expected = f"{count} registered jobs are named {name!r} {candidates}: nothing was "
    assert (expected, 2) == (str(refused.value)[: len(expected)], refused.value.returncode)
    assert [(action == "resume", 0)] * len(recurring) == states
    assert False is database.exists()


def test_history_of_an_unused_database(tmp_path: Path) -> None:
    """`recurjobs history` on a database without runs says so; --json gives an empty list."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    recurjobs = {"JOBS": [f"{HERE}.Report"], "DATABASE": url, "MAIN_DOM": False, "HISTORY": True}
    with override_settings(RECURJOBS=recurjobs):
        assert ("no runs recorded\n", []) == (
            command("history"),
            json.loads(command("history", "--json")),
        )


class Every30s(RecurringJob):
    """Every 30 seconds after a 2-second delay (as RefreshRates in docs/django.md)."""

    def __init__(self) -> None:
        super().__init__(timedelta(seconds=30), delay=timedelta(seconds=2))

    def run(self, token: CancellationToken) -> None:
        pass


def test_docs_manual_clock_example() -> None:
    """The testing example of docs/django.md: build_host(clock=ManualClock()) runs on its time."""
    clock = ManualClock()
    with override_settings(RECURJOBS={"JOBS": [f"{HERE}.Every30s"]}):
        host = integration.build_host(clock=clock, main_dom=False)
    runs: list[JobExecuted] = []
    host.subscribe(JobExecuted, runs.append)
    with host:
        clock.wait_for_waiters(1)
        clock.advance(timedelta(seconds=2))
        clock.wait_for_waiters(1)
        clock.advance(timedelta(seconds=30))
        clock.wait_for_waiters(1)
    assert 2 == len(runs)


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: integration.build_host(clok=None), TypeError, "unknown JobHost keyword(s) clok"),
        (lambda: integration.build_host(clock="x"), TypeError, "clock must provide"),
        (lambda: integration.build_host(exit_timeout=-1), ValueError, "exit_timeout"),
        (lambda: integration.database_url(5), TypeError, "alias_or_url must be a str, got 5"),  # type: ignore[arg-type]
        (lambda: integration.database_url("nope"), ValueError, "alias_or_url is 'nope'"),
    ],
)
def test_bad_arguments_name_the_parameter(call: Any, error: type, message: str) -> None:
    """A bad argument to the module's functions is a TypeError/ValueError naming it."""
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_history_shows_a_recorded_run(tmp_path: Path) -> None:
    """A run recorded by a host with HISTORY on shows in `recurjobs history` and its JSON."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    job = Query()
    recurjobs = {"JOBS": [lambda: job], "DATABASE": url, "MAIN_DOM": False, "HISTORY": True}
    done = threading.Event()
    with override_settings(RECURJOBS=recurjobs):
        host = integration.build_host(clock=ManualClock())
        host.subscribe(JobExecuted, lambda n: done.set())
        with host:
            assert True is done.wait(10)
        records = json.loads(command("history", "--json"))
        text = command("history", "--job", "Query")
    assert [("Query", "recurring", "executed", "schedule")] == [
        (r["job"], r["kind"], r["outcome"], r["trigger"]) for r in records
    ]
    assert "Query" in text.splitlines()[1]
    # The same table and JSON as the standalone `recurjobs history` prints for that database.
    standalone = subprocess.run(
        [sys.executable, "-m", "recurjobs", "history", "--database", url, "--job", "Query"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert standalone.stdout.rstrip("\n") == text.rstrip("\n")
    as_json = subprocess.run(
        [sys.executable, "-m", "recurjobs", "history", "--database", url, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(as_json.stdout) == records


# -------------------------------------------------------------------------- dashboard
def _has_dashboard() -> bool:
    try:
        __import__("recurjobs.dashboard")
    except ImportError:
        return False
    return True


_DASHBOARD = pytest.mark.skipif(not _has_dashboard(), reason="needs the dashboard extra (flask)")


class _User:
    """A stand-in for request.user (no auth tables needed)."""

    def __init__(self, authenticated: bool, staff: bool) -> None:
        self.is_authenticated = authenticated
        self.is_active = True
        self.is_staff = staff


@pytest.fixture
def dashboard_settings(tmp_path: Path) -> Iterator[str]:
    """RECURJOBS with a SQLite database holding the row of Report; yields its URL."""
    from recurjobs.django import _dashboard

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = JobStore(url)
    store.create_schema()
    store.ensure([Report()])
    store.dispose()
    recurjobs = {"JOBS": [f"{HERE}.Report"], "DATABASE": url, "MAIN_DOM": False}
    _dashboard._app = None
    with override_settings(
        RECURJOBS=recurjobs,
        LOGIN_URL="/login/",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="recurjobs.django.urls",
    ):
        yield url
    _dashboard._app = None


@_DASHBOARD
@pytest.mark.parametrize(
    ("user", "status", "location"),
    [(_User(False, False), 302, "/login/?next=/jobs/"), (_User(True, False), 403, None)],
)
def test_dashboard_is_for_staff_only(
    dashboard_settings: str, user: _User, status: int, location: str | None
) -> None:
    """Anonymous users are sent to LOGIN_URL, logged-in non-staff users get 403; the dashboard
    app is never built, so never called."""
    from django.test import RequestFactory

    from recurjobs.django import _dashboard

    request = RequestFactory().get("/jobs/")
    request.user = user
    response = _dashboard.dashboard_view(request, rest="")
    assert (status, location) == (response.status_code, response.get("Location"))
    assert None is _dashboard._app


@_DASHBOARD
def test_dashboard_shows_the_jobs_to_staff(dashboard_settings: str) -> None:
    """A staff user gets the dashboard's jobs page, with links under the include's prefix; the
    URLconf recurjobs.django.urls routes every path to the view."""
    from django.test import RequestFactory
    from django.urls import resolve

    from recurjobs.django._dashboard import dashboard_view

    match = resolve("/job/report")
    assert (dashboard_view, {"rest": "job/report"}) == (match.func, match.kwargs)
    request = RequestFactory().get("/admin/jobs/")
    request.user = _User(True, True)
    response = dashboard_view(request, rest="")
    page = response.content.decode()
    assert (200, True, True) == (response.status_code, "report" in page, "/admin/jobs/" in page)


@_DASHBOARD
def test_dashboard_before_the_sqlite_file_exists_shows_empty_pages(tmp_path: Path) -> None:
    """Web workers with AUTOSTART off may serve the dashboard before the job process has made
    the SQLite file: the page says there is nothing yet (200), not a 500 on every request."""
    from django.test import RequestFactory

    from recurjobs.django import _dashboard

    url = f"sqlite:///{tmp_path / 'not-yet.db'}"
    recurjobs = {"JOBS": [f"{HERE}.Report"], "DATABASE": url, "MAIN_DOM": False}
    _dashboard._app = None
    try:
        with override_settings(
            RECURJOBS=recurjobs, ALLOWED_HOSTS=["testserver"], ROOT_URLCONF="recurjobs.django.urls"
        ):
            request = RequestFactory().get("/jobs/")
            request.user = _User(True, True)
            response = _dashboard.dashboard_view(request, rest="")
    finally:
        _dashboard._app = None
    assert 200 == response.status_code, response.content[:300]
