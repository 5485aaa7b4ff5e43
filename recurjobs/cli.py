"""The ``recurjobs`` command line (also ``python -m recurjobs``).

``demo``, ``run MODULE:ATTR``, ``status``, ``trigger NAME``, ``pause NAME``, ``resume NAME``
and ``prune``. Exit codes: 0 done, 1 the operation failed (database unreachable, a job thread
did not stop in time, the target's module raised, no row to pause or resume, a trigger of a
paused job), 2 bad input (usage, a URL, port, prefix, name or duration that does not parse,
an unknown job name). Every message is one line on standard error, never a traceback, and
database URLs are always shown with the password masked.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

# The option values' checks and the parser class are in _cliargs, the database commands'
# bodies in _clicommands; this module builds the parser, runs hosts and draws the one-line
# error boundary. The names below stay importable from here.
from recurjobs._cliargs import (
    PROG,
    Parser,
    duration_arg,
    join_dash_values,
    limit_arg,
    name_arg,
    positive_seconds,
    prefix_arg,
)
from recurjobs._clicommands import (
    cmd_history,
    cmd_pause,
    cmd_prune,
    cmd_resume,
    cmd_status,
    cmd_trigger,
)
from recurjobs._clistore import (
    CommandError,
    check_database_url,
    mask_url_text,
    pause_row,
    read_rows,
    split_target,
    trigger_row,
)
from recurjobs._clitext import (
    database_table,
    format_duration,
    format_schedule,
    format_table,
    parse_duration,
    status_table,
    to_json,
)
from recurjobs._host import JobHost

__all__ = [
    "CommandError",
    "check_database_url",
    "database_table",
    "format_duration",
    "format_schedule",
    "format_table",
    "load_host",
    "main",
    "mask_url_text",
    "parse_duration",
    "pause_row",
    "read_rows",
    "show_recurjobs_logs",
    "status_table",
    "to_json",
    "trigger_row",
]

DATABASE_ENV = "RECURJOBS_DATABASE_URL"

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def load_host(target: str) -> JobHost:
    """Resolve ``MODULE:ATTR`` to a JobHost (ATTR may be a zero-argument factory of one, or a
    Flask app initialised with ``recurjobs.flask.RecurJobs``)."""
    module_name, attr = split_target(target, "expected MODULE:ATTR")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise CommandError(f"cannot import {module_name}: {exc}", bad_input=True) from None
        raise CommandError(f"cannot import {module_name}: {_where(exc)}") from None
    except Exception as exc:  # the module itself failed: its error, in one line
        raise CommandError(f"cannot import {module_name}: {_where(exc)}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            hint = ""
            if attr.endswith(")"):
                hint = f" (name the factory without calling it: {module_name}:{attr.split('(')[0]})"
            raise CommandError(
                f"{module_name} has no attribute {attr}{hint}", bad_input=True
            ) from None
    host = _as_host(obj)
    if host is None and callable(obj):
        try:
            made = obj()
        except Exception as exc:
            raise CommandError(f"{target}() failed: {_where(exc)}") from None
        host = _as_host(made)
    if host is None:
        raise CommandError(
            f"{target} is not a JobHost nor a zero-argument callable returning one",
            bad_input=True,
        )
    return host


def _where(exc: BaseException) -> str:
    """``Type: message (file:line)`` of the innermost frame: an error in one line."""
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        return f"{text} ({os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno})"
    return text


def _as_host(obj: object) -> JobHost | None:
    if isinstance(obj, JobHost):
        return obj
    extensions = getattr(obj, "extensions", None)  # a Flask app with the extension
    if isinstance(extensions, dict) and isinstance(extensions.get("recurjobs"), JobHost):
        return extensions["recurjobs"]  # type: ignore[no-any-return]
    return None


def _cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format=_LOG_FORMAT)
    host = load_host(args.target)
    show_recurjobs_logs(args.log_level)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            host.start()
        except Exception as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise CommandError(f"cannot start {args.target}: {message}") from None
        _say(
            f"running {len(host.jobs)} job(s) from {args.target} in process {os.getpid()}; "
            "stop with Ctrl+C or SIGTERM"
        )
        while not stop.wait(1.0):
            pass

        def stopping(signum: int, frame: FrameType | None) -> None:
            # A second Ctrl+C while stopping: the stop is bounded already; say so, go on.
            _say(f"already stopping (at most {args.stop_timeout:g} s in all)")

        for sig in previous:
            signal.signal(sig, stopping)
        _say(f"stopping (waiting up to {args.stop_timeout:g} s for running jobs)")
        if host.stop(args.stop_timeout):
            _say("stopped")
            return 0
        _say(f"some jobs did not stop within {args.stop_timeout:g} s")
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def show_recurjobs_logs(level: str | int) -> None:
    """Make the ``recurjobs`` loggers log at ``level`` to standard error, whatever the app did.

    Importing the target may have configured logging: ``logging.config.dictConfig`` disables
    loggers that exist already (ours do) unless told otherwise, and a root level of WARNING hides
    our INFO lines. ``recurjobs run --log-level`` is an explicit request, so it wins for our
    loggers: they are enabled again, ``recurjobs`` gets the level, and a stderr handler when no
    handler would print its lines.
    """
    manager = logging.Logger.manager
    for name, item in list(manager.loggerDict.items()):
        if isinstance(item, logging.Logger) and (
            name == "recurjobs" or name.startswith("recurjobs.")
        ):
            item.disabled = False
    ours = logging.getLogger("recurjobs")
    ours.disabled = False
    ours.setLevel(level)
    if not ours.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        ours.addHandler(handler)


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _cmd_demo(args: argparse.Namespace) -> int:
    from recurjobs import _demo

    if args.worker is not None:
        return _demo.worker(args.worker, args.database, args.seconds)
    return _demo.main(seconds=args.seconds)


# ----------------------------------------------------------------------------- parser
def _history_parser(sub: Any, database_options: Any) -> None:
    history = sub.add_parser("history", help="show the latest runs from the run history")
    database_options(history)
    history.add_argument("--job", type=name_arg, default=None, metavar="NAME", help="one job")
    history.add_argument(
        "--limit", type=limit_arg, default=100, metavar="N", help="at most N runs (default 100)"
    )
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(func=cmd_history)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``recurjobs`` command."""
    from recurjobs import __version__

    parser = Parser(prog=PROG, description="Run, inspect and maintain recurjobs jobs.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    demo = sub.add_parser("demo", help="a 25-second tour: two processes share one database")
    demo.add_argument("--seconds", type=positive_seconds, default=None, help=argparse.SUPPRESS)
    demo.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    demo.add_argument("--database", default=None, help=argparse.SUPPRESS)
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="run a JobHost in the foreground until SIGINT/SIGTERM")
    run.add_argument(
        "target", metavar="MODULE:ATTR", help="a JobHost, or a zero-argument callable returning one"
    )
    run.add_argument(
        "--stop-timeout",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for running jobs at shutdown (default 30)",
    )
    levels = ["DEBUG", "INFO", "WARNING", "ERROR"]
    run.add_argument("--log-level", default="INFO", choices=levels, help="default INFO")
    run.set_defaults(func=_cmd_run)

    def database_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database",
            default=None,
            metavar="URL",
            help=f"SQLAlchemy URL (default: ${DATABASE_ENV})",
        )
        p.add_argument(
            "--table-prefix",
            type=prefix_arg,
            default="recurjobs_",
            metavar="PREFIX",
            help="table prefix (default recurjobs_)",
        )

    status = sub.add_parser("status", help="show the distributed jobs table")
    database_options(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)

    trigger = sub.add_parser("trigger", help="mark a distributed job due now")
    database_options(trigger)
    trigger.add_argument("name", metavar="NAME", type=name_arg)
    trigger.set_defaults(func=cmd_trigger)

    pause = sub.add_parser("pause", help="pause a distributed job on every server")
    database_options(pause)
    pause.add_argument("name", metavar="NAME", type=name_arg)
    pause.set_defaults(func=cmd_pause)

    resume = sub.add_parser("resume", help="resume a paused distributed job")
    database_options(resume)
    resume.add_argument("name", metavar="NAME", type=name_arg)
    resume.set_defaults(func=cmd_resume)

    prune = sub.add_parser("prune", help="delete rows of distributed jobs no longer deployed")
    database_options(prune)
    prune.add_argument(
        "--keep",
        nargs="+",
        action="extend",
        type=name_arg,
        metavar="NAME",
        help="delete every row except these names",
    )
    prune.add_argument(
        "--older-than",
        type=duration_arg,
        metavar="DURATION",
        help="delete rows idle for this long, e.g. 7d or 12h",
    )
    prune.set_defaults(func=cmd_prune)

    from recurjobs import _dashboard_cli as dashboard_cli

    dashboard_cli.add_command(sub, database_options)
    _history_parser(sub, database_options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``recurjobs`` and ``python -m recurjobs``; returns the exit code.

    Usage errors exit with 2 (argparse's own ones through ``SystemExit``); every other failure
    is one line on standard error and exit code 1 or 2, never a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(join_dash_values(sys.argv[1:] if argv is None else argv))
    if args.command in ("status", "trigger", "pause", "resume", "prune", "history", "dashboard"):
        args.database_source = "--database"
        if args.database is None:
            args.database = os.environ.get(DATABASE_ENV) or None
            args.database_source = f"${DATABASE_ENV}"
        if not args.database:
            parser.error(f"--database URL is required (or set ${DATABASE_ENV})")
    if args.command == "prune" and args.keep is None and args.older_than is None:
        parser.error("prune needs --keep NAME..., --older-than DURATION or both")
    try:
        return int(args.func(args))
    except CommandError as exc:
        _error(str(exc))
        return 2 if exc.bad_input else 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:  # a bug or an unforeseen failure: still one line
        _error(f"unexpected {_where(exc)}")
        return 1


def _error(message: str) -> None:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
