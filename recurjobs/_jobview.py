"""A recurring job's settings as the loop reads them: guarded, validated, last good value kept.

A job's ``period``, ``delay``, ``ignored_delay`` and ``server_roles`` may be properties of user
code. Each read goes through the guard; a read that raises or returns junk is logged and the
last good value (else the default) is used, so a broken property never ends the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TypeVar

from recurjobs._cron import Cron
from recurjobs._guard import call_user
from recurjobs._jobs import job_name
from recurjobs._roles import DEFAULT_SERVER_ROLES, ServerRole
from recurjobs._schedule import INFINITE

__all__ = ["DEFAULT_DELAY", "DEFAULT_IGNORED_DELAY", "JobView"]

logger = logging.getLogger("recurjobs")

DEFAULT_DELAY = timedelta(minutes=3)
DEFAULT_IGNORED_DELAY = timedelta(minutes=1)

T = TypeVar("T")


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
        self._last: dict[str, object] = {}

    def period(self) -> timedelta | Cron:
        """The period or calendar; a job without one runs only on triggers (``INFINITE``)."""
        default: timedelta | Cron = INFINITE
        return self._read("period", default, _schedule)

    def delay(self) -> timedelta:
        """The wait before the first run (default three minutes; zero for a calendar job)."""
        default = timedelta(0) if isinstance(self.period(), Cron) else DEFAULT_DELAY
        return self._read("delay", default, _duration)

    def ignored_delay(self) -> timedelta:
        """The back-off after an ignored run (default one minute)."""
        return self._read("ignored_delay", DEFAULT_IGNORED_DELAY, _duration)

    def server_roles(self) -> frozenset[ServerRole]:
        """The roles the job may run in (default SINGLE and SCHEDULING_PUBLISHER)."""
        return self._read("server_roles", DEFAULT_SERVER_ROLES, _roles)

    def _read(self, attr: str, default: T, convert: Callable[[object], T]) -> T:
        """Read and check ``job.<attr>`` inside the guard; on failure the last good value."""

        def read() -> T:
            return convert(getattr(self.job, attr, default))

        fallback: T = self._last.get(attr, default)  # type: ignore[assignment]

        def what() -> str:  # formatted only when the read fails
            return f"{attr} of {self.name} (using {fallback!r})"

        value = call_user(what, read, default=fallback)
        self._last[attr] = value
        return value
