"""A recurring job's settings as the loop reads them: guarded, validated, last good value kept.

A job's ``period``, ``delay``, ``ignored_delay`` and ``server_roles`` may be properties of user
code. Each read goes through the guard; a read that raises or returns junk is logged and the
last good value (else the default) is used, so a broken property never ends the loop.

The one exception is ``RecurringJob``'s own ``period`` property, when a subclass keeps it: it
returns what its setter validated and cannot raise, so it is read without the guard (the loop
reads the period twice per run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TypeVar

from recurjobs._cron import Cron
from recurjobs._guard import call_user
from recurjobs._jobs import RecurringJob, job_name
from recurjobs._roles import DEFAULT_SERVER_ROLES, ServerRole
from recurjobs._schedule import INFINITE

__all__ = ["DEFAULT_DELAY", "DEFAULT_IGNORED_DELAY", "JobView"]

logger = logging.getLogger("recurjobs")

DEFAULT_DELAY = timedelta(minutes=3)
DEFAULT_IGNORED_DELAY = timedelta(minutes=1)

T = TypeVar("T")

# Values whose check cannot change while the attribute holds the same object.
_IMMUTABLE = (timedelta, Cron, frozenset, tuple)
# A read or check that raised; as the kept raw value, "not kept" (a mutable value's check).
_FAILED: object = object()


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta) and (value == INFINITE or value >= timedelta(0)):
        return value
    raise ValueError(f"{value!r} is not a valid duration")


def _schedule(value: object) -> timedelta | Cron:
    return value if isinstance(value, Cron) else _duration(value)


def _roles(value: object) -> frozenset[ServerRole]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{value!r} is not a collection of ServerRole")
    roles = frozenset(value)
    if not all(isinstance(r, ServerRole) for r in roles):
        raise ValueError(f"{value!r} is not a collection of ServerRole")
    return roles


class JobView:
    """Reads one job's settings for its runner; never raises."""

    def __init__(self, job: object) -> None:
        self.job = job
        self.name = job_name(job)
        # attr -> (the raw object last read if immutable, else _FAILED; its checked value)
        self._last: dict[str, tuple[object, object]] = {}
        # attr -> the log name of a failed read, made at the first read of attr.
        self._what: dict[str, _ReadName] = {}
        # The job, when its period is RecurringJob's own property (see the module docstring).
        self._own_period = (
            job
            if isinstance(job, RecurringJob) and type(job).period is RecurringJob.period
            else None
        )
        self.own_period = self._own_period is not None
        """Whether the period is ``RecurringJob``'s own: it changes only through its setter,
        which fires ``period_changed``."""

    def period(self) -> timedelta | Cron:
        """The period or calendar; a job without one runs only on triggers (``INFINITE``)."""
        if self._own_period is not None:
            return self._own_period._period
        default: timedelta | Cron = INFINITE
        return self._read("period", default, _schedule)

    def delay(self) -> timedelta:
        """The wait before the first run (default three minutes; zero for a calendar job)."""
        default = timedelta(0) if isinstance(self.period(), Cron) else DEFAULT_DELAY
        return self._read("delay", default, _duration, keep=False)

    def ignored_delay(self) -> timedelta:
        """The back-off after an ignored run (default one minute)."""
        return self._read("ignored_delay", DEFAULT_IGNORED_DELAY, _duration)

    def server_roles(self) -> frozenset[ServerRole]:
        """The roles the job may run in (default SINGLE and SCHEDULING_PUBLISHER)."""
        return self._read("server_roles", DEFAULT_SERVER_ROLES, _roles)

    def _read(
        self, attr: str, default: T, convert: Callable[[object], T], *, keep: bool = True
    ) -> T:
        """Read and check ``job.<attr>`` inside the guard; on failure the last good value.

        The loop reads the settings at every run, so the check is skipped while the attribute
        still holds the very object last checked, if that object is immutable (a timedelta, a
        Cron, a frozenset or tuple): its answer cannot have changed. A list or set is checked
        at every read, since it may have been changed in place.

        ``keep=False``: a setting read once per job (``delay``, at start); nothing is kept for
        it, since a host keeps a view per job.
        """
        what = self._what.get(attr)
        if what is None:
            what = _ReadName(self, attr)
            if keep:
                self._what[attr] = what
        last = self._last.get(attr)
        raw = call_user(what, getattr, self.job, attr, default, default=_FAILED)
        if raw is not _FAILED:
            if last is not None and last[0] is raw:
                return last[1]  # type: ignore[return-value]
            value = call_user(what, convert, raw, default=_FAILED)
            if value is not _FAILED:
                if keep:
                    self._last[attr] = (raw if isinstance(raw, _IMMUTABLE) else _FAILED, value)
                return value  # type: ignore[return-value]
        return default if last is None else last[1]  # type: ignore[return-value]


class _ReadName:
    """The log name of a failed read of one setting, formatted only when a read fails (one
    small object per setting read, not a closure and its cells: a host keeps one per job)."""

    __slots__ = ("attr", "view")

    def __init__(self, view: JobView, attr: str) -> None:
        self.view = view
        self.attr = attr

    def __call__(self) -> str:
        last = self.view._last.get(self.attr)
        using = "the default" if last is None else repr(last[1])
        return f"{self.attr} of {self.view.name} (using {using})"
