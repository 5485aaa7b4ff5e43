"""``recurjobs dashboard``: serve the dashboard with waitress.

Read-only unless ``--allow-actions``. With actions on a loopback address the people who can
reach that port may act (a tunnel, or a proxy that authenticates, is the gate); on any other
address ``--authorize MODULE:FUNCTION`` is required, the function taking the Flask request
and returning True for people allowed to trigger, pause and resume.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from recurjobs._clistore import (
    CommandError,
    check_database_url,
    driver_missing,
    mask_url_text,
    missing_sqlite_file,
    split_target,
)

__all__ = ["add_command", "is_loopback", "parse_bind"]

DEFAULT_BIND = "127.0.0.1:8080"


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) -> (host, port); ValueError naming ``--bind``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--bind must be HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--bind has a port that is not a number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"--bind has port {port}, expected 1 to 65535: {text!r}")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (only this machine can connect)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind_arg(text: str) -> tuple[str, int]:
    try:
        return parse_bind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be HOST:PORT with a port from 1 to 65535, such as 127.0.0.1:8080, got {text!r}"
        ) from None


def add_command(sub: Any, database_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``dashboard`` to the ``recurjobs`` subcommands."""
    parser = sub.add_parser("dashboard", help="serve the web dashboard (waitress)")
    database_options(parser)
    parser.add_argument(
        "--bind",
        type=_bind_arg,
        default=parse_bind(DEFAULT_BIND),
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_BIND})",
    )
    parser.add_argument(
        "--allow-actions",
        action="store_true",
        help="show trigger/pause/resume buttons (needs --authorize unless bound to loopback)",
    )
    parser.add_argument(
        "--authorize",
        default=None,
        metavar="MODULE:FUNCTION",
        help="function(request) -> bool deciding who may use the actions",
    )
    parser.add_argument("--threads", type=int, default=8, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _load(target: str) -> Callable[[Any], bool]:
    import importlib

    module_name, attr = split_target(target, "--authorize must be MODULE:FUNCTION")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise CommandError(f"--authorize {target}: {exc}", bad_input=True) from None
    if not callable(obj):
        raise CommandError(f"--authorize {target} is not callable", bad_input=True)
    return obj  # type: ignore[no-any-return]


def _check_reachable(url: str, source: str = "--database") -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from recurjobs.sql._urls import make_engine

    parsed = check_database_url(url, source)
    if missing_sqlite_file(parsed):
        raise CommandError(f"no SQLite database file at {mask_url_text(url)}", bad_input=True)
    try:
        engine = make_engine(url)  # a bounded connect timeout: a silent host fails, not hangs
    except ImportError as exc:
        raise CommandError(driver_missing(exc, mask_url_text(url))) from None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        detail = first[0] if first else type(exc).__name__
        if parsed.password:
            detail = detail.replace(str(parsed.password), "***")
        raise CommandError(f"cannot reach {mask_url_text(url)}: {detail}") from None
    finally:
        engine.dispose()


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; exit code 0, or 2 for a refused configuration."""
    host, port = args.bind
    if args.authorize is not None and not args.allow_actions:
        raise CommandError("--authorize only matters with --allow-actions", bad_input=True)
    authorize: Callable[[Any], bool] | None = None
    if args.allow_actions:
        if args.authorize is not None:
            authorize = _load(args.authorize)
        elif is_loopback(host):
            authorize = _everyone
        else:
            raise CommandError(
                f"--allow-actions on {host} (not a loopback address) needs --authorize "
                "MODULE:FUNCTION, a function taking the request and returning True for people "
                "allowed to trigger, pause and resume; or bind 127.0.0.1 behind a proxy that "
                "authenticates (see docs/dashboard.md)",
                bad_input=True,
            )
    try:
        _check_reachable(args.database, getattr(args, "database_source", "--database"))
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc), bad_input=True) from None
    try:
        import flask  # noqa: F401  # the dashboard extra: Flask and waitress
        from waitress import create_server
    except ImportError:
        raise CommandError(
            "the dashboard needs Flask and waitress: pip install 'recurjobs[dashboard]'"
        ) from None
    from recurjobs.dashboard import create_app

    app = create_app(
        args.database,
        table_prefix=args.table_prefix,
        allow_actions=args.allow_actions,
        authorize=authorize,
    )
    try:
        server = create_server(app, host=host, port=port, threads=max(1, args.threads), ident="")
    except (OSError, ValueError) as exc:  # the port is taken, the address is not this host's
        raise CommandError(f"cannot listen on {host}:{port}: {exc}") from None
    shown = f"[{host}]" if ":" in host else host

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.close()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    mode = "actions enabled" if args.allow_actions else "read-only"
    print(
        f"recurjobs: dashboard of {mask_url_text(args.database)} on http://{shown}:{port}/ "
        f"({mode}); stop with Ctrl+C or SIGTERM",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run()
    except (OSError, ValueError):
        pass  # closed by the signal handler while waiting
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("recurjobs: dashboard stopped", file=sys.stderr, flush=True)
    return 0


def _everyone(request: Any) -> bool:
    """The hook for a loopback-only dashboard: whoever reaches the port may act."""
    return True
