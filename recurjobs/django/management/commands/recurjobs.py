"""``manage.py recurjobs status|trigger|history|pause|resume|run``.

Every subcommand but ``run`` works on an unstarted host built from ``settings.RECURJOBS``: a
command process never runs jobs. ``run`` starts the host in the foreground (a dedicated jobs
process) and stops it on SIGINT or SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from recurjobs._clistore import CommandError as StoreError
from recurjobs._clistore import read_rows, trigger_row
from recurjobs._clitext import database_table, history_table, status_table, to_json
from recurjobs._host import JobHost, _is_distributed
from recurjobs._jobs import job_name, one_named

_NEEDS = "needs a recurjobs with run history and pause (JobHost.{}); this installation lacks it"


class Command(BaseCommand):  # type: ignore[misc]
    help = "Inspect, trigger, pause or run this project's recurjobs jobs."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        status = sub.add_parser("status", help="this host's jobs and the distributed jobs table")
        status.add_argument("--json", action="store_true", help="print JSON")
        trigger = sub.add_parser("trigger", help="run a job now (via the main instance)")
        trigger.add_argument("name")
        history = sub.add_parser("history", help="recent runs, newest first")
        history.add_argument("--job", default=None, help="only this job's runs")
        history.add_argument("--limit", type=int, default=20, help="at most this many runs")
        history.add_argument("--json", action="store_true", help="print JSON")
        for action in ("pause", "resume"):
            one = sub.add_parser(action, help=f"{action} a job")
            one.add_argument("name")
        run = sub.add_parser("run", help="run the jobs in the foreground until SIGINT/SIGTERM")
        run.add_argument(
            "--stop-timeout", type=float, default=30.0, help="seconds to wait for running jobs"
        )
        run.add_argument("--log-level", default="INFO", help="level of recurjobs' log lines")

    def handle(self, *args: Any, **options: Any) -> None:
        from recurjobs.django import get_host

        host = get_host()
        action = options["action"]
        getattr(self, f"_{action}")(host, options)

    # ----------------------------------------------------------------------- actions
    def _status(self, host: JobHost, options: dict[str, Any]) -> None:
        records = host.status()
        rows, note = None, ""
        if host.database:
            try:
                rows = read_rows(*self._database(host))
            except StoreError as exc:
                if not str(exc).startswith(("no table ", "no SQLite database file ")):
                    raise CommandError(str(exc), returncode=2 if exc.bad_input else 1) from None
                note = "no distributed jobs table yet: no host with distributed jobs has started"
        if options["json"]:
            payload = {
                "host": [to_json(r) for r in records],
                "database": None if rows is None else [to_json(r) for r in rows],
            }
            self.stdout.write(json.dumps(payload, indent=2))
            return
        if host.running:
            self.stdout.write(f"this process ({os.getpid()}) runs the host")
        else:
            self.stdout.write("a command runs no jobs: the recurring jobs below show no runs")
        self.stdout.write(status_table(records))
        if rows is not None:
            self.stdout.write("")
            self.stdout.write(database_table(rows))
        elif note:
            self.stdout.write("")
            self.stdout.write(note)

    def _trigger(self, host: JobHost, options: dict[str, Any]) -> None:
        name = options["name"]
        job = _registered(host, name, "trigger")
        if job is not None and not _is_distributed(job):
            self._forward(host, name, job)
            return
        if not host.database:
            raise CommandError(f"no job named {name!r} and RECURJOBS has no DATABASE", returncode=2)
        url, prefix = self._database(host)

        def trigger() -> None:
            try:
                trigger_row(url, prefix, name)
            except StoreError as exc:
                if not exc.unknown_name:
                    raise
                # The rows are the cluster's distributed jobs; a mistyped name may have meant
                # one of this project's recurring jobs, which have no row.
                known = ", ".join(job_name(j) for j in host.jobs) or "none"
                raise StoreError(f"{exc}; this project's jobs: {known}", bad_input=True) from None

        self._store(trigger)
        self.stdout.write(f"triggered {name}: the next server to poll runs it")

    def _forward(self, host: JobHost, name: str, job: object) -> None:
        from recurjobs._forward import send_trigger
        from recurjobs._jobs import TriggerableJob
        from recurjobs._schedule import NextExecution

        main_dom = host.gates.main_dom
        if main_dom is None:
            raise CommandError(
                f"{name} is a recurring job and RECURJOBS['MAIN_DOM'] is False: there is no "
                "main instance to hand it to; trigger it from your code with "
                "recurjobs.django.get_host().trigger()",
                returncode=2,
            )
        if not isinstance(job, TriggerableJob):
            raise CommandError(
                f"{name} cannot be triggered: it does not subclass TriggerableJob", returncode=2
            )
        reply = send_trigger(main_dom, job, host.jobs, NextExecution.NONE, None)
        if not reply.accepted:
            raise CommandError(f"{name} was not triggered: {reply.reason}")
        self.stdout.write(f"triggered {name}: the main instance (pid {reply.pid}) accepted it")

    def _history(self, host: JobHost, options: dict[str, Any]) -> None:
        if not callable(getattr(host, "history", None)):
            raise CommandError(_NEEDS.format("history"))
        if options["limit"] < 1:
            raise CommandError(f"--limit must be at least 1, got {options['limit']}", returncode=2)
        records = self._store(
            lambda: host.history(options["job"], limit=options["limit"]),
            host,
        )
        if options["json"]:
            self.stdout.write(json.dumps([to_json(r) for r in records], indent=2))
            return
        self.stdout.write(history_table(records))  # the columns of `recurjobs history`

    def _pause(self, host: JobHost, options: dict[str, Any]) -> None:
        self._set_paused(host, options["name"], "pause")

    def _resume(self, host: JobHost, options: dict[str, Any]) -> None:
        self._set_paused(host, options["name"], "resume")

    def _set_paused(self, host: JobHost, name: str, action: str) -> None:
        method = getattr(host, action, None)
        if not callable(method):
            raise CommandError(_NEEDS.format(action))
        job = _registered(host, name, action)
        if job is not None and not _is_distributed(job):
            self._pause_in_main_instance(host, name, job, action)
            return
        if not self._store(lambda: method(name), host):
            known = ", ".join(job_name(j) for j in host.jobs) or "none"
            raise CommandError(f"no job named {name!r} (jobs: {known})", returncode=2)
        self.stdout.write(f"{action}d {name}")

    def _pause_in_main_instance(self, host: JobHost, name: str, job: object, action: str) -> None:
        """A recurring job is paused in the process that runs it: this command's own host
        never runs, so the machine's main instance is asked (as for a trigger)."""
        from recurjobs._forward import send_job_action

        main_dom = host.gates.main_dom
        if main_dom is None:
            raise CommandError(
                f"{name} is a recurring job and RECURJOBS['MAIN_DOM'] is False: it is paused in "
                "the process that runs it; call recurjobs.django.get_host().pause() there",
                returncode=2,
            )
        reply = send_job_action(main_dom, job, host.jobs, action)
        if not reply.accepted:
            raise CommandError(f"{name} was not {action}d: {reply.reason}")
        self.stdout.write(f"{action}d {name} in the main instance (pid {reply.pid})")

    def _run(self, host: JobHost, options: dict[str, Any]) -> None:
        from recurjobs.cli import show_recurjobs_logs
        from recurjobs.django import start

        show_recurjobs_logs(str(options["log_level"]).upper())
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                start()
            except Exception as exc:
                raise CommandError(f"cannot start the recurjobs host: {exc}") from exc
            self.stderr.write(
                f"recurjobs: running {len(host.jobs)} job(s) in process {os.getpid()}; "
                "stop with Ctrl+C or SIGTERM"
            )
            while not stop.wait(1.0):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        timeout = options["stop_timeout"]
        self.stderr.write(f"recurjobs: stopping (waiting up to {timeout:g} s for running jobs)")
        if not host.stop(timeout):
            raise CommandError(f"some jobs did not stop within {timeout:g} s")
        self.stderr.write("recurjobs: stopped")

    # ----------------------------------------------------------------------- helpers
    @staticmethod
    def _database(host: JobHost) -> tuple[str, str]:
        return str(host.database), host.settings.table_prefix

    @staticmethod
    def _store(what: Any, host: JobHost | None = None) -> Any:
        """``what()``, database failures turned into one-line command errors."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return what()
        except StoreError as exc:
            raise CommandError(str(exc), returncode=2 if exc.bad_input else 1) from None
        except SQLAlchemyError as exc:
            from recurjobs.sql._urls import masked, scrub

            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            url = host.database if host is not None else None
            if isinstance(url, str):
                first = f"{masked(url)}: {scrub(first, url)}"
            raise CommandError(f"database error on {first}") from None


def _registered(host: JobHost, name: str, action: str) -> object | None:
    """The one registered job named ``name`` (None: none is, so the name is a distributed
    job's row); a command error (exit 2) listing them when several are."""
    try:
        return one_named(host.jobs, name, action)
    except ValueError as exc:
        raise CommandError(str(exc), returncode=2) from None
