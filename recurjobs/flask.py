"""The Flask extension: one :class:`recurjobs.JobHost` per app, configured from ``RECURJOBS_*``.

::

    jobs = RecurJobs(jobs=lambda app: [CleanUp(timedelta(minutes=5))])

    def create_app() -> Flask:
        app = Flask(__name__)
        app.config.from_prefixed_env()      # e.g. FLASK_RECURJOBS_DATABASE_URL=...
        jobs.init_app(app)                  # the host is in app.extensions["recurjobs"]
        return app

Where the host starts (``RECURJOBS_AUTOSTART``, default True) is decided once, in
``init_app``:

- under ``flask run`` with the reloader on, only in the child process that serves
  (``WERKZEUG_RUN_MAIN == "true"``); the watcher process loads the app too but never starts it;
- under any other ``flask`` command (``flask shell``, ``flask recurjobs status``, a migration),
  never: a command is not a server;
- everywhere else (gunicorn and uWSGI workers, a script, a test), at once.

Under gunicorn, whose error log is not the root logger's, the ``recurjobs`` loggers write to
gunicorn's error log (``RECURJOBS_LOG_TO_GUNICORN``, default True) unless logging was set up
for them already.

No HTTP endpoint is added unless ``RECURJOBS_DASHBOARD_PREFIX`` is set (say ``"/recurjobs"``):
then the dashboard (:mod:`recurjobs.dashboard`, extra ``dashboard``) is mounted there as a
blueprint of the app, showing this host's recurring jobs too. It is read-only unless
``RECURJOBS_DASHBOARD_ALLOW_ACTIONS`` is true and ``RECURJOBS_DASHBOARD_AUTHORIZE`` (a callable
taking the request) returns True; the app's own login (``before_request``) guards it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, FlaskGroup, run_command
from flask.helpers import get_debug_flag

from recurjobs._clock import Clock
from recurjobs._host import JobHost
from recurjobs._jobs import job_name
from recurjobs._jobview import JobView
from recurjobs._maindom import MainDom
from recurjobs._roles import ServerRole
from recurjobs._settings import DistributedJobSettings
from recurjobs.cli import (
    check_database_url,
    database_table,
    format_duration,
    format_schedule,
    format_table,
    parse_duration,
    status_table,
    to_json,
)

__all__ = ["CONFIG_DEFAULTS", "EXTENSION_KEY", "RecurJobs", "recurjobs_cli"]

logger = logging.getLogger("recurjobs.flask")

EXTENSION_KEY = "recurjobs"
"""Where ``init_app`` stores the app's host: ``app.extensions["recurjobs"]``."""

_SETTINGS = DistributedJobSettings()

CONFIG_DEFAULTS: dict[str, object] = {
    "RECURJOBS_AUTOSTART": True,
    "RECURJOBS_DASHBOARD_ALLOW_ACTIONS": False,
    "RECURJOBS_DASHBOARD_AUTHORIZE": None,
    "RECURJOBS_DASHBOARD_PREFIX": None,
    "RECURJOBS_DATABASE_URL": None,
    "RECURJOBS_DELAY": _SETTINGS.delay,
    "RECURJOBS_ELECT_SERVER_ROLE": False,
    "RECURJOBS_HISTORY": False,
    "RECURJOBS_LOG_TO_GUNICORN": True,
    "RECURJOBS_MAIN_DOM": True,
    "RECURJOBS_MAIN_DOM_DIRECTORY": None,
    "RECURJOBS_MAX_CONCURRENT_JOBS": _SETTINGS.max_concurrent_jobs,
    "RECURJOBS_MAX_EXECUTION_TIME": _SETTINGS.max_execution_time,
    "RECURJOBS_POLL_PERIOD": _SETTINGS.poll_period,
    "RECURJOBS_SERVER_ROLE": ServerRole.SINGLE,
    "RECURJOBS_TABLE_PREFIX": _SETTINGS.table_prefix,
}
"""Every ``RECURJOBS_*`` key ``init_app`` reads, with the value used when the key is unset."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# The DistributedJobSettings field each key sets.
_SETTINGS_KEYS = {
    "poll_period": "RECURJOBS_POLL_PERIOD",
    "delay": "RECURJOBS_DELAY",
    "max_execution_time": "RECURJOBS_MAX_EXECUTION_TIME",
    "max_concurrent_jobs": "RECURJOBS_MAX_CONCURRENT_JOBS",
    "table_prefix": "RECURJOBS_TABLE_PREFIX",
}

JobsSource = Iterable[object] | Callable[[Flask], Iterable[object]]


class RecurJobs:
    """Gives every Flask app it is initialised on its own :class:`recurjobs.JobHost`.

    ``jobs`` is an iterable of jobs, or a callable that takes the app and returns them: with
    app factories use the callable, so each app gets job objects of its own. ``runtime_ready``
    and ``clock`` are passed to every host; everything else comes from the app's config
    (:data:`CONFIG_DEFAULTS`).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        jobs: JobsSource = (),
        runtime_ready: Callable[[], bool] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(jobs, (str, bytes)) or not (callable(jobs) or isinstance(jobs, Iterable)):
            raise TypeError(f"jobs must be an iterable of jobs or a callable, got {jobs!r}")
        self._jobs = jobs if callable(jobs) else tuple(jobs)
        self._runtime_ready = runtime_ready
        self._clock = clock
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build the app's host from its config, add ``flask recurjobs`` and maybe start it."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"recurjobs is already initialised on the app {app.name!r}")
        for key, value in CONFIG_DEFAULTS.items():
            app.config.setdefault(key, value)
        autostart = _flag(app.config, "RECURJOBS_AUTOSTART")
        to_gunicorn = _flag(app.config, "RECURJOBS_LOG_TO_GUNICORN")
        host = self.create_host(app)
        if app.config["RECURJOBS_DASHBOARD_PREFIX"]:
            from recurjobs.dashboard._flask import mount

            mount(app, host, allow_actions=_flag(app.config, "RECURJOBS_DASHBOARD_ALLOW_ACTIONS"))
        app.extensions[EXTENSION_KEY] = host
        if recurjobs_cli.name not in app.cli.commands:
            app.cli.add_command(recurjobs_cli)
        if to_gunicorn:
            log_to_gunicorn()
        if not autostart:
            return
        where = launch_context()
        if where == "serve":
            host.start()
            logger.info(
                "recurjobs host of %s started with %d job(s) in process %d",
                app.name,
                len(host.jobs),
                os.getpid(),
            )
        else:
            logger.debug("recurjobs host of %s not started in the %s process", app.name, where)

    def create_host(self, app: Flask) -> JobHost:
        """A new, unstarted host for ``app`` from its jobs and ``RECURJOBS_*`` config."""
        config = app.config
        settings = _settings(config)
        database = config["RECURJOBS_DATABASE_URL"]
        if database is not None and not isinstance(database, str):
            database = _config_error("RECURJOBS_DATABASE_URL", database, "a URL string or None")
        if database:
            check_database_url(database, "RECURJOBS_DATABASE_URL")
        server_role = _server_role(config["RECURJOBS_SERVER_ROLE"])
        main_dom = _main_dom(config["RECURJOBS_MAIN_DOM"], config)
        elect = _flag(config, "RECURJOBS_ELECT_SERVER_ROLE")
        if elect and not database:
            _config_error(
                "RECURJOBS_ELECT_SERVER_ROLE", True, "False without RECURJOBS_DATABASE_URL"
            )
        history = _flag(config, "RECURJOBS_HISTORY")
        if history and not database:
            _config_error("RECURJOBS_HISTORY", True, "False without RECURJOBS_DATABASE_URL")
        jobs = self._jobs(app) if callable(self._jobs) else self._jobs
        return JobHost(
            jobs,
            clock=self._clock,
            server_role=server_role,
            runtime_ready=self._runtime_ready,
            main_dom=main_dom,
            database=database or None,
            distributed=settings,
            elect_server_role=elect,
            history=history,
        )

    @staticmethod
    def get_host(app: Flask | None = None) -> JobHost:
        """The host of ``app`` (default: the current app); RuntimeError if not initialised."""
        target: Any = app if app is not None else current_app
        host = target.extensions.get(EXTENSION_KEY)
        if not isinstance(host, JobHost):
            raise RuntimeError(f"recurjobs is not initialised on the app {target.name!r}")
        return host

    def start(self, app: Flask | None = None) -> JobHost:
        """Start the app's host now (with ``RECURJOBS_AUTOSTART = False``, or after a fork)."""
        return self.get_host(app).start()

    def stop(self, app: Flask | None = None, timeout: float = 30.0) -> bool:
        """Stop the app's host; see :meth:`recurjobs.JobHost.stop`."""
        return self.get_host(app).stop(timeout)


def launch_context() -> str:
    """Which process loads the app: ``"serve"``, ``"watcher"`` (reloader parent) or ``"cli"``.

    ``flask run`` loads the app in the reloader's watcher process as well as in the serving
    child; Werkzeug marks the child with ``WERKZEUG_RUN_MAIN=true``.
    """
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return "serve"
    if ctx.command is run_command:
        reload = ctx.params.get("reload")
        if reload is None:
            reload = get_debug_flag()
        if reload and os.environ.get("WERKZEUG_RUN_MAIN") != "true":
            return "watcher"
        return "serve"
    if isinstance(ctx.find_root().command, FlaskGroup):
        return "cli"
    return "serve"


# ------------------------------------------------------------------------ config values
def log_to_gunicorn() -> bool:
    """Send the ``recurjobs`` loggers' lines to gunicorn's error log; True when it did.

    Only in a gunicorn process (the ``gunicorn.error`` logger has handlers) and only when
    nobody set up logging that would show our lines: neither the ``recurjobs`` logger nor the
    root logger has a handler. Our logger then gets gunicorn's error-log handlers and the level
    INFO (unless a level was set on it), so operators see that jobs run.
    """
    gunicorn = logging.getLogger("gunicorn.error")
    ours = logging.getLogger("recurjobs")
    if not gunicorn.handlers or ours.handlers or logging.getLogger().handlers:
        return False
    for handler in gunicorn.handlers:
        ours.addHandler(handler)
    if ours.level == logging.NOTSET:
        ours.setLevel(logging.INFO)
    return True


def _config_error(key: str, value: object, expected: str) -> Any:
    raise ValueError(f"{key} must be {expected}, got {value!r}")


def _flag(config: Any, key: str) -> bool:
    value = config[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # from_prefixed_env() turns "0"/"1" into ints
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return bool(_config_error(key, value, "a bool, 0/1 or 'true'/'false'"))


def _duration(config: Any, key: str) -> timedelta:
    value = config[key]
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return timedelta(seconds=value)
        except OverflowError:
            pass
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except (ValueError, OverflowError):
            pass
    return _config_error(key, value, "a timedelta, seconds or a duration like '30s' or '5m'")  # type: ignore[no-any-return]


def _int(config: Any, key: str) -> int:
    value = config[key]
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(_config_error(key, value, "an int"))


def _settings(config: Any) -> DistributedJobSettings:
    """The poller settings; a bad value is a ValueError or TypeError naming its key."""
    values: dict[str, Any] = {
        "poll_period": _duration(config, "RECURJOBS_POLL_PERIOD"),
        "delay": _duration(config, "RECURJOBS_DELAY"),
        "max_execution_time": _duration(config, "RECURJOBS_MAX_EXECUTION_TIME"),
        "max_concurrent_jobs": _int(config, "RECURJOBS_MAX_CONCURRENT_JOBS"),
        "table_prefix": config["RECURJOBS_TABLE_PREFIX"],
    }
    defaults = DistributedJobSettings()
    for field, value in values.items():  # one at a time, so the error names the key
        try:
            dataclasses.replace(defaults, **{field: value})
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{_SETTINGS_KEYS[field]}: {exc}") from None
    return DistributedJobSettings(**values)


def _server_role(value: object) -> ServerRole | Callable[[], ServerRole]:
    if isinstance(value, ServerRole) or callable(value):
        return value
    if isinstance(value, str):
        for role in ServerRole:
            if value.strip().lower() in (role.value, role.name.lower()):
                return role
    names = ", ".join(r.name for r in ServerRole)
    return _config_error(  # type: ignore[no-any-return]
        "RECURJOBS_SERVER_ROLE", value, f"a ServerRole, one of {names}, or a callable"
    )


def _main_dom(value: object, config: Any) -> bool | str | MainDom:
    directory = config["RECURJOBS_MAIN_DOM_DIRECTORY"]
    if directory is not None and not (isinstance(directory, str) and directory):
        _config_error("RECURJOBS_MAIN_DOM_DIRECTORY", directory, "a directory path or None")
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        value = value.strip().lower() in _TRUE
    elif isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        value = bool(value)  # from_prefixed_env() turns "0"/"1" into ints
    if value is None or value is False:
        return False
    if value is True:
        return MainDom.automatic(directory) if directory else True
    if isinstance(value, str) and value:
        return MainDom(value, directory=directory) if directory else value
    if isinstance(value, MainDom):
        return value
    return _config_error(  # type: ignore[no-any-return]
        "RECURJOBS_MAIN_DOM", value, "True, False, a str key or a MainDom"
    )


# ----------------------------------------------------------------- the flask CLI group
recurjobs_cli = AppGroup("recurjobs", help="Inspect and trigger this app's background jobs.")


@recurjobs_cli.command("list")
def _list_command() -> None:
    """List the jobs registered with the app's host."""
    host = RecurJobs.get_host()
    rows: list[list[str]] = []
    for job in host.jobs:
        if callable(getattr(job, "execute", None)) and not callable(getattr(job, "run", None)):
            rows.append([job_name(job), "distributed", format_schedule(job.period), "-", "-"])  # type: ignore[attr-defined]
            continue
        roles = getattr(job, "server_roles", None)
        rows.append(
            [
                job_name(job),
                "recurring",
                format_schedule(getattr(job, "period")),  # noqa: B009
                format_duration(JobView(job).delay()),
                ",".join(sorted(r.name for r in roles)) if roles else "-",
            ]
        )
    if not rows:
        click.echo("no jobs registered")
        return
    click.echo(format_table(["NAME", "KIND", "PERIOD", "DELAY", "SERVER ROLES"], rows))


@recurjobs_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def _status_command(as_json: bool) -> None:
    """Show the host's view of every job and, with a database, the distributed jobs table.

    A command process does not run jobs, so its recurring jobs show no runs; the database
    table is the whole cluster's view.
    """
    host = RecurJobs.get_host()
    records = host.status()
    database = current_app.config.get("RECURJOBS_DATABASE_URL")
    prefix = host.settings.table_prefix
    rows = _database_rows(database, prefix) if database else None
    if as_json:
        payload = {"host": [to_json(r) for r in records], "database": rows_json(rows)}
        click.echo(json.dumps(payload, indent=2))
        return
    if host.running:
        click.echo(f"this process ({os.getpid()}) runs the host")
    else:
        click.echo("the host is not started in this command's process: no runs are shown here")
    click.echo(status_table(records))
    if rows is not None:
        click.echo("")
        click.echo(database_table(rows))


def rows_json(rows: list[Any] | None) -> list[dict[str, object]] | None:
    """The database rows as JSON-ready dicts (None stays None)."""
    return None if rows is None else [to_json(r) for r in rows]


def _database_rows(database: str, prefix: str) -> list[Any]:
    from recurjobs.cli import CommandError, read_rows

    try:
        return read_rows(database, prefix, source="RECURJOBS_DATABASE_URL")
    except CommandError as exc:
        if exc.bad_input:
            raise click.UsageError(str(exc)) from None
        raise click.ClickException(str(exc)) from None


@recurjobs_cli.command("trigger")
@click.argument("name")
def _trigger_command(name: str) -> None:
    """Trigger the job NAME: a recurring job in the server's main instance, which must answer
    within 1 s, or a distributed job through the database (the next server to poll runs it)."""
    from recurjobs.cli import CommandError, trigger_row

    host = RecurJobs.get_host()
    known = {job_name(j): j for j in host.jobs}
    job = known.get(name)
    if job is not None and not callable(getattr(job, "execute", None)):
        _forward_to_main_instance(host, name, job)
        return
    database = current_app.config.get("RECURJOBS_DATABASE_URL")
    if not database:
        raise click.UsageError(f"no job named {name!r} and RECURJOBS_DATABASE_URL is unset")
    try:
        trigger_row(database, host.settings.table_prefix, name)
    except CommandError as exc:
        if exc.bad_input:
            raise click.UsageError(str(exc)) from None
        raise click.ClickException(str(exc)) from None
    click.echo(f"triggered {name}: the next server to poll runs it")


@recurjobs_cli.command("pause")
@click.argument("name")
def _pause_command(name: str) -> None:
    """Pause the distributed job NAME on every server (a run going on finishes)."""
    _set_paused(name, True)
    click.echo(f"paused {name}: no server claims it until `flask recurjobs resume {name}`")


@recurjobs_cli.command("resume")
@click.argument("name")
def _resume_command(name: str) -> None:
    """Resume the paused distributed job NAME (it runs when it is next due)."""
    _set_paused(name, False)
    click.echo(f"resumed {name}: it runs when it is next due")


def _set_paused(name: str, paused: bool) -> None:
    """Pause or resume a distributed job's row. A recurring job is paused in the process that
    runs it (``JobHost.pause``); a command process cannot reach it, so it is refused."""
    from recurjobs.cli import CommandError, pause_row

    host = RecurJobs.get_host()
    job = {job_name(j): j for j in host.jobs}.get(name)
    if job is not None and not callable(getattr(job, "execute", None)):
        raise click.UsageError(
            f"{name} is a recurring job: it is paused in the process that runs it; call "
            "JobHost.pause() there (for example from a view)"
        )
    database = current_app.config.get("RECURJOBS_DATABASE_URL")
    if not database:
        raise click.UsageError(f"no job named {name!r} and RECURJOBS_DATABASE_URL is unset")
    try:
        pause_row(
            database, host.settings.table_prefix, name, paused, source="RECURJOBS_DATABASE_URL"
        )
    except CommandError as exc:
        if exc.bad_input:
            raise click.UsageError(str(exc)) from None
        raise click.ClickException(str(exc)) from None
@recurjobs_cli.command("history")
@click.option("--job", default=None, help="Only this job's runs (its name as status shows it).")
@click.option("--limit", default=100, type=click.IntRange(1, 10_000), help="At most N runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def _history_command(job: str | None, limit: int, as_json: bool) -> None:
    """Show the latest runs from the run history table (every server's), newest first."""
    from sqlalchemy.exc import SQLAlchemyError

    from recurjobs._clitext import history_table

    host = RecurJobs.get_host()
    if not current_app.config.get("RECURJOBS_DATABASE_URL"):
        raise click.UsageError("the run history needs RECURJOBS_DATABASE_URL")
    try:
        records = host.history(job, limit=limit)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    except SQLAlchemyError as exc:  # the database: one line, never a traceback
        raise click.ClickException(f"cannot read the run history: {exc}".splitlines()[0]) from None
    if as_json:
        click.echo(json.dumps([to_json(r) for r in records], indent=2))
    else:
        click.echo(history_table(records))


def _forward_to_main_instance(host: JobHost, name: str, job: object) -> None:
    """A command is never the main instance: hand the trigger to the server process that is."""
    from recurjobs._forward import send_trigger
    from recurjobs._jobs import TriggerableJob
    from recurjobs._schedule import NextExecution

    main_dom = host.gates.main_dom
    if main_dom is None:
        raise click.UsageError(
            f"{name} is a recurring job and RECURJOBS_MAIN_DOM is off: no main instance "
            "to forward it to; trigger it from your code with JobHost.trigger()"
        )
    if not isinstance(job, TriggerableJob):
        raise click.UsageError(f"{name} cannot be triggered: it does not subclass TriggerableJob")
    reply = send_trigger(main_dom, job, host.jobs, NextExecution.NONE, None)
    if not reply.accepted:
        raise click.ClickException(f"{name} was not triggered: {reply.reason}")
    click.echo(f"triggered {name}: the main instance (pid {reply.pid}) accepted it")
