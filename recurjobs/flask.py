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

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, FlaskGroup, run_command
from flask.helpers import get_debug_flag

from recurjobs._clock import Clock
from recurjobs._flaskcommands import list_jobs, set_paused, show_history, show_status, trigger_job
from recurjobs._flaskconfig import (
    config_error,
    read_flag,
    read_main_dom,
    read_server_role,
    read_settings,
)
from recurjobs._guard import log_quietly
from recurjobs._host import JobHost
from recurjobs._roles import ServerRole
from recurjobs._settings import DistributedJobSettings
from recurjobs.cli import check_database_url

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
        autostart = read_flag(app.config, "RECURJOBS_AUTOSTART")
        to_gunicorn = read_flag(app.config, "RECURJOBS_LOG_TO_GUNICORN")
        host = self.create_host(app)
        if app.config["RECURJOBS_DASHBOARD_PREFIX"]:
            from recurjobs.dashboard._flask import mount

            mount(
                app, host, allow_actions=read_flag(app.config, "RECURJOBS_DASHBOARD_ALLOW_ACTIONS")
            )
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
            log_quietly(
                logging.INFO,
                "recurjobs host of %s started with %d job(s) in process %d",
                app.name,
                len(host.jobs),
                os.getpid(),
                on=logger,
            )
        else:
            log_quietly(
                logging.DEBUG,
                "recurjobs host of %s not started in the %s process",
                app.name,
                where,
                on=logger,
            )

    def create_host(self, app: Flask) -> JobHost:
        """A new, unstarted host for ``app`` from its jobs and ``RECURJOBS_*`` config."""
        config = app.config
        settings = read_settings(config)
        database = config["RECURJOBS_DATABASE_URL"]
        if database is not None and not isinstance(database, str):
            database = config_error("RECURJOBS_DATABASE_URL", database, "a URL string or None")
        if database:
            check_database_url(database, "RECURJOBS_DATABASE_URL")
        server_role = read_server_role(config["RECURJOBS_SERVER_ROLE"])
        main_dom = read_main_dom(config["RECURJOBS_MAIN_DOM"], config)
        elect = read_flag(config, "RECURJOBS_ELECT_SERVER_ROLE")
        if elect and not database:
            config_error(
                "RECURJOBS_ELECT_SERVER_ROLE", True, "False without RECURJOBS_DATABASE_URL"
            )
        history = read_flag(config, "RECURJOBS_HISTORY")
        if history and not database:
            config_error("RECURJOBS_HISTORY", True, "False without RECURJOBS_DATABASE_URL")
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


# ----------------------------------------------------------------- the flask CLI group
# The commands' bodies are in _flaskcommands (no flask there); each command here looks up the
# current app's host and config and hands them over.
recurjobs_cli = AppGroup("recurjobs", help="Inspect and trigger this app's background jobs.")


@recurjobs_cli.command("list")
def _list_command() -> None:
    """List the jobs registered with the app's host."""
    list_jobs(RecurJobs.get_host())


@recurjobs_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def _status_command(as_json: bool) -> None:
    """Show the host's view of every job and, with a database, the distributed jobs table.

    A command process does not run jobs, so its recurring jobs show no runs; the database
    table is the whole cluster's view.
    """
    show_status(RecurJobs.get_host(), current_app.config, as_json)


@recurjobs_cli.command("trigger")
@click.argument("name")
def _trigger_command(name: str) -> None:
    """Trigger the job NAME: a recurring job in the server's main instance, which must answer
    within 1 s, or a distributed job through the database (the next server to poll runs it)."""
    trigger_job(RecurJobs.get_host(), current_app.config, name)


@recurjobs_cli.command("pause")
@click.argument("name")
def _pause_command(name: str) -> None:
    """Pause the job NAME: a distributed job on every server (a run going on finishes), a
    recurring job in the main instance that runs it."""
    set_paused(RecurJobs.get_host(), current_app.config, name, True)


@recurjobs_cli.command("resume")
@click.argument("name")
def _resume_command(name: str) -> None:
    """Resume the paused job NAME (it runs when it is next due)."""
    set_paused(RecurJobs.get_host(), current_app.config, name, False)


@recurjobs_cli.command("history")
@click.option("--job", default=None, help="Only this job's runs (its name as status shows it).")
@click.option("--limit", default=100, type=click.IntRange(1, 10_000), help="At most N runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def _history_command(job: str | None, limit: int, as_json: bool) -> None:
    """Show the latest runs from the run history table (every server's), newest first."""
    show_history(RecurJobs.get_host(), current_app.config, job, limit, as_json)
