"""The one boundary around user code.

Every call recurjobs makes into code it did not write goes through :func:`run_user`,
:func:`run_method` or :func:`call_user`: a job's ``run``/``execute`` (attribute read included),
a notification handler, a signal receiver, ``close()``, a job property read (``period``,
``delay``, ``ignored_delay``, ``server_roles``) and the ``runtime_ready``/``server_role``
callables. Grep for them and you have audited the promise "nothing a job does kills the loop".
:func:`call_hook` is the same boundary for recurjobs' own per-run hooks (the run history's
recorder), so a bug there cannot kill it either.

What survives is decided here, once: everything is caught, ``BaseException`` included.
``SystemExit`` and ``KeyboardInterrupt`` raised by job code on a worker thread mean nothing
to the interpreter there (signals are delivered to the main thread), so turning them into a
failed run is the only useful reading; a handler that raises one is logged like any other.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

__all__ = ["call_hook", "call_user", "in_user_code", "log_quietly", "run_method", "run_user"]

logger = logging.getLogger("recurjobs")

T = TypeVar("T")


def run_user(fn: Callable[..., object], *args: object) -> BaseException | None:
    """Call job code; return what it raised (anything), or None when it returned.

    Nothing is logged: the caller turns the result into a run outcome (failed, canceled).
    """
    try:
        fn(*args)
    except BaseException as exc:  # the boundary: see the module docstring
        return exc
    return None


def run_method(obj: object, name: str, *args: object) -> BaseException | None:
    """Call the job's method ``obj.<name>(*args)``, as :func:`run_user` does; reading the
    attribute is job code too (a duck-typed job's property may raise, or it may be gone)."""
    try:
        getattr(obj, name)(*args)
    except BaseException as exc:  # the boundary: see the module docstring
        return exc
    return None


def call_user(what: str | Callable[[], str], fn: Callable[..., T], *args: object, default: T) -> T:
    """Call user code for its value; if it raises anything, log it and return ``default``.

    ``what`` names the call in the log line, e.g. ``"period of Cleanup"``; a callable returning
    the name is called only then (for calls made at every run, where formatting costs).
    """
    try:
        return fn(*args)
    except BaseException as exc:  # the boundary: see the module docstring
        name = what() if callable(what) else what
        log_quietly(logging.ERROR, "%s raised %s: %s", name, type(exc).__name__, exc, exc_info=exc)
        return default


def call_hook(what: Callable[[], str], fn: Callable[..., object], *args: object) -> None:
    """Call one of recurjobs' own per-run hooks (the run history's recorder); if it raises
    anything, log it with ``what()`` as the name and go on.

    Not user code, so its frame does not count for :func:`in_user_code`: a hook never calls
    back into the host.
    """
    try:
        fn(*args)
    except BaseException as exc:  # the boundary: see the module docstring
        log_quietly(
            logging.ERROR, "%s raised %s: %s", what(), type(exc).__name__, exc, exc_info=exc
        )


def log_quietly(
    level: int,
    message: str,
    *args: object,
    exc_info: BaseException | bool | None = None,
    on: logging.Logger = logger,
) -> None:
    """Log one line on ``on`` (the ``recurjobs`` logger). A logging filter or handler of the
    app's that raises (or pytest's log capture meeting an exception whose ``str()`` raises)
    loses the line, not the calling thread: logging cannot tell of its own failure either.
    Every line recurjobs logs while it runs goes through here (``exc_info=True``: the
    exception being handled, as ``logger.exception`` takes it)."""
    try:
        on.log(level, message, *args, exc_info=exc_info, stacklevel=2)
    except Exception:  # the boundary for the app's logging configuration
        return


_USER_FRAMES = frozenset({run_user.__code__, run_method.__code__, call_user.__code__})


def in_user_code() -> bool:
    """True while this thread is inside a guarded call (a job, a handler, a property...).

    Answered from the calling thread's stack: a frame of :func:`run_user`,
    :func:`run_method` or :func:`call_user` on it means user code is running below. The
    guards themselves keep no count, since they run several times per run of every job, while
    this is asked only by ``stop()``.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code in _USER_FRAMES:
            return True
        frame = frame.f_back
    return False
