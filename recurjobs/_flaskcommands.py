"""What the ``flask recurjobs`` commands do, given the app's host and config.

:mod:`recurjobs.flask` declares the commands (names, options, help) and looks up the current
app; the bodies are here, so they need no flask: they take the host and the config mapping,
print with ``click.echo`` and fail with click's errors (a usage error exits 2, any other 1),
one line, never a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import click

from recurjobs._clistore import CommandError, pause_row, read_rows, trigger_row
from recurjobs._clitext import (
    database_table,
    format_duration,
    format_schedule,
    format_table,
    history_table,
    status_table,
    to_json,
)
from recurjobs._host import JobHost
from recurjobs._jobs import job_name, one_named
from recurjobs._jobview import JobView

__all__ = [
    "database_rows",
    "forward_to_main_instance",
    "list_jobs",
    "rows_json",
    "set_paused",
    "show_history",
    "show_status",
    "trigger_job",
]


def list_jobs(host: JobHost) -> None:
    """Print the jobs registered with ``host`` as a table."""
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


def show_status(host: JobHost, config: Mapping[str, Any], as_json: bool) -> None:
    """Print the host's view of every job and, with a database, the distributed jobs table."""
    records = host.status()
    database = config.get("RECURJOBS_DATABASE_URL")
    prefix = host.settings.table_prefix
    rows = database_rows(database, prefix) if database else None
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


def database_rows(database: str, prefix: str) -> list[Any]:
    """The distributed jobs table's rows; a failure is one line (a usage error if bad input)."""
    try:
        return read_rows(database, prefix, source="RECURJOBS_DATABASE_URL")
    except CommandError as exc:
        if exc.bad_input:
            raise click.UsageError(str(exc)) from None
        raise click.ClickException(str(exc)) from None


def trigger_job(host: JobHost, config: Mapping[str, Any], name: str) -> None:
    """Trigger the job ``name``: a recurring one through the main instance, a distributed one
    through the database."""
    job = _registered(host, name, "trigger")
    if job is not None and not callable(getattr(job, "execute", None)):
        forward_to_main_instance(host, name, job)
        return
    database = config.get("RECURJOBS_DATABASE_URL")
    if not database:
        raise click.UsageError(f"no job named {name!r} and RECURJOBS_DATABASE_URL is unset")
    try:
        trigger_row(database, host.settings.table_prefix, name)
    except CommandError as exc:
        if exc.bad_input:
            raise click.UsageError(str(exc)) from None
        raise click.ClickException(str(exc)) from None
    click.echo(f"triggered {name}: the next server to poll runs it")


def set_paused(host: JobHost, config: Mapping[str, Any], name: str, paused: bool) -> None:
    """Pause or resume a job: a distributed job's row, or a recurring job in the process that
    runs it (the machine's main instance, asked over its socket)."""
    job = _registered(host, name, "pause" if paused else "resume")
    if job is not None and not callable(getattr(job, "execute", None)):
        _pause_in_main_instance(host, name, job, paused)
        return
    database = config.get("RECURJOBS_DATABASE_URL")
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
    if paused:
        click.echo(f"paused {name}: no server claims it until `flask recurjobs resume {name}`")
    else:
        click.echo(f"resumed {name}: it runs when it is next due")


def _registered(host: JobHost, name: str, action: str) -> object | None:
    """The one registered job named ``name`` (None: none is, so the name is a distributed
    job's row); a usage error (exit 2) listing them when several are."""
    try:
        return one_named(host.jobs, name, action)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def show_history(
    host: JobHost, config: Mapping[str, Any], job: str | None, limit: int, as_json: bool
) -> None:
    """Print the latest runs from the run history table (every server's), newest first."""
    from sqlalchemy.exc import SQLAlchemyError

    if not config.get("RECURJOBS_DATABASE_URL"):
        raise click.UsageError("the run history needs RECURJOBS_DATABASE_URL")
    try:
        # Reading never creates the app's SQLite file (its host does, at start): no file, no runs.
        records = [] if _missing_sqlite(config) else host.history(job, limit=limit)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    except SQLAlchemyError as exc:  # the database: one line, never a traceback
        raise click.ClickException(f"cannot read the run history: {exc}".splitlines()[0]) from None
    if as_json:
        click.echo(json.dumps([to_json(r) for r in records], indent=2))
    else:
        click.echo(history_table(records))


def _missing_sqlite(config: Mapping[str, Any]) -> bool:
    """Whether ``RECURJOBS_DATABASE_URL`` is a URL naming an SQLite file that does not exist."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    from recurjobs._clistore import missing_sqlite_file

    url = config.get("RECURJOBS_DATABASE_URL")
    if not isinstance(url, str):
        return False  # an Engine: the app made it, and reading through it is the app's call
    try:
        return missing_sqlite_file(make_url(url))
    except (ArgumentError, ValueError):
        return False  # host.history() names the bad URL


def _pause_in_main_instance(host: JobHost, name: str, job: object, paused: bool) -> None:
    """A recurring job is paused in the process that runs it: ask the main instance."""
    from recurjobs._forward import send_job_action

    verb = "pause" if paused else "resume"
    main_dom = host.gates.main_dom
    if main_dom is None:
        raise click.UsageError(
            f"{name} is a recurring job and RECURJOBS_MAIN_DOM is off: it is paused in the "
            "process that runs it; call JobHost.pause() there"
        )
    reply = send_job_action(main_dom, job, host.jobs, verb)
    if not reply.accepted:
        raise click.ClickException(f"{name} was not {verb}d: {reply.reason}")
    click.echo(f"{verb}d {name} in the main instance (pid {reply.pid})")


def forward_to_main_instance(host: JobHost, name: str, job: object) -> None:
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
