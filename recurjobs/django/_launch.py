"""Which kind of process is loading Django: one that serves (and runs jobs) or not.

Django calls ``AppConfig.ready()`` in every process that loads the project: the server, but
also ``migrate``, ``shell``, ``collectstatic``, the test runner and the runserver autoreloader's
watcher. Only a serving process starts the host:

- ``manage.py runserver`` (and ``runserver_plus``): the child the autoreloader starts
  (``RUN_MAIN=true``), or the only process with ``--noreload``; never the watcher;
- a process that loads Django without a management command, such as a gunicorn, uWSGI,
  mod_wsgi or ASGI worker importing ``wsgi.py``/``asgi.py``, unless pytest is loaded;
- ``manage.py recurjobs run`` starts the host itself;
- every other management command (``migrate``, ``shell``, ``check``, ``test``,
  ``collectstatic``, ...) never does.

The management command is found on the call stack: ``ManagementUtility.execute`` is the
frame that calls ``django.setup()`` for ``manage.py`` and ``django-admin``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from types import FrameType

__all__ = ["SERVE_COMMANDS", "command_argv", "decide", "launch_context"]

SERVE_COMMANDS = frozenset({"runserver", "runserver_plus"})
"""Management commands that serve requests (and so run jobs, in the autoreloader's child)."""

SERVE, WATCHER, COMMAND, TEST = "serve", "watcher", "command", "test"


def command_argv() -> list[str] | None:
    """The ``argv`` of the management command loading Django, None outside one."""
    from django.core.management import ManagementUtility

    code = ManagementUtility.execute.__code__
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is code:
            argv = getattr(frame.f_locals.get("self"), "argv", None)
            return [str(a) for a in argv] if argv else []
        frame = frame.f_back
    return None


def decide(argv: Sequence[str] | None, environ: Mapping[str, str], in_tests: bool) -> str:
    """``"serve"``, ``"watcher"`` (runserver's autoreloader), ``"command"`` or ``"test"``."""
    if argv is None:
        return TEST if in_tests else SERVE
    command = argv[1] if len(argv) > 1 else "help"
    if command in SERVE_COMMANDS:
        options = argv[2:]
        # argparse takes any unambiguous prefix of --noreload; "--nor" is the shortest.
        no_reload = any(a.startswith("--nor") and "--noreload".startswith(a) for a in options)
        if no_reload or environ.get("RUN_MAIN") == "true":
            return SERVE
        return WATCHER
    return COMMAND


def launch_context() -> str:
    """What this process is (see the module docstring): ``"serve"`` starts the host."""
    return decide(command_argv(), os.environ, "pytest" in sys.modules)
