"""The job base classes users subclass, and the tiny Signal they announce changes with."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, ClassVar

from recurjobs._cron import Cron
from recurjobs._guard import call_user
from recurjobs._roles import DEFAULT_SERVER_ROLES, ServerRole
from recurjobs._token import CancellationToken
from recurjobs._validate import duration, job_name_text, schedule

__all__ = [
    "DistributedJob",
    "RecurringJob",
    "Signal",
    "TriggerableJob",
    "check_recurring",
    "is_distributed",
    "job_name",
    "one_named",
]


class Signal:
    """A minimal event: ``connect(fn)``; ``fire()`` calls every ``fn(sender)``.

    A receiver that raises is logged and skipped; the others still run.
    """

    __slots__ = ("_lock", "_receivers", "_sender")

    def __init__(self, sender: object = None) -> None:
        self._sender = sender
        self._lock = threading.Lock()
        self._receivers: tuple[Callable[[Any], object], ...] = ()

    def connect(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(sender)`` on every ``fire()``; connecting the same ``fn`` twice is a no-op."""
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        with self._lock:
            if fn not in self._receivers:
                self._receivers = (*self._receivers, fn)

    def disconnect(self, fn: Callable[[Any], object]) -> None:
        """Stop calling ``fn``; disconnecting an unknown ``fn`` is a no-op."""
        with self._lock:
            self._receivers = tuple(r for r in self._receivers if r != fn)

    def fire(self) -> None:
        """Call every connected receiver with the sender."""
        for fn in self._receivers:
            call_user(f"signal receiver {fn!r}", fn, self._sender, default=None)

    def __repr__(self) -> str:
        return f"Signal(receivers={len(self._receivers)})"


class RecurringJob(abc.ABC):
    """A job that runs every ``period`` in its own thread of the process.

    Subclass it, pass the period (a ``timedelta``, or a :class:`recurjobs.Cron` for a calendar
    schedule) to ``__init__`` and implement :meth:`run`. ``delay`` (first run after start,
    default 3 minutes; zero for a ``Cron`` passed to ``__init__``), ``ignored_delay``
    (back-off after a gated run, default 1 minute) and ``server_roles`` (default
    ``{SINGLE, SCHEDULING_PUBLISHER}``) may be given to ``__init__`` or overridden as class
    attributes or properties.
    """

    delay: timedelta = timedelta(minutes=3)
    server_roles: frozenset[ServerRole] = DEFAULT_SERVER_ROLES
    _default_ignored_delay: ClassVar[timedelta] = timedelta(minutes=1)

    def __init__(
        self,
        period: timedelta | Cron,
        *,
        delay: timedelta | None = None,
        ignored_delay: timedelta | None = None,
        server_roles: Iterable[ServerRole] | None = None,
    ) -> None:
        self._closed = False
        self._period = schedule(period, "period")
        self._ignored_delay = duration(
            type(self)._default_ignored_delay if ignored_delay is None else ignored_delay,
            "ignored_delay",
        )
        if delay is not None:
            self.delay = duration(delay, "delay")
        elif isinstance(period, Cron) and type(self).delay is RecurringJob.delay:
            # A calendar says when to run; the default start-up delay would only skip fire
            # times, so a Cron job without an explicit delay (or a subclass's) has none.
            self.delay = timedelta(0)
        if server_roles is not None:
            self.server_roles = _roles(server_roles)
        self.period_changed = Signal(self)
        self.ignored_delay_changed = Signal(self)

    @property
    def period(self) -> timedelta | Cron:
        """How often the job runs; ``INFINITE``: only on triggers; zero: back to back; a
        :class:`recurjobs.Cron`: at its fire times."""
        return self._period

    @period.setter
    def period(self, value: timedelta | Cron) -> None:
        value = schedule(value, "period")
        if value == self._period:
            return
        self._period = value
        if not self._closed:
            self.period_changed.fire()

    @property
    def ignored_delay(self) -> timedelta:
        """How long to back off after a gated (ignored) run; ``INFINITE``: until changed."""
        return self._ignored_delay

    @ignored_delay.setter
    def ignored_delay(self, value: timedelta) -> None:
        value = duration(value, "ignored_delay")
        if value == self._ignored_delay:
            return
        self._ignored_delay = value
        if not self._closed:
            self.ignored_delay_changed.fire()

    @abc.abstractmethod
    def run(self, token: CancellationToken) -> None:
        """Do one run. Check ``token`` in long work to stop early when the host stops."""

    def close(self) -> None:
        """Release resources; the host calls it once after the job's thread ended.

        Override to clean up (call ``super().close()``); signals stop firing afterwards.
        """
        self._closed = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(period={self._period!r})"


class TriggerableJob:
    """Marker mixin: ``class J(RecurringJob, TriggerableJob)`` may be run on demand."""


class DistributedJob(abc.ABC):
    """A job that runs on exactly one server of a cluster at a time.

    ``name`` (unique in the cluster, 1-200 characters), ``period`` (> 0, or a
    :class:`recurjobs.Cron`) and ``align_to_clock`` (not with a ``Cron``) come from
    ``__init__``'s keyword arguments when given, else from class attributes or properties of
    the subclass.
    """

    align_to_clock: bool = False

    def __init__(
        self,
        *,
        name: str | None = None,
        period: timedelta | Cron | None = None,
        align_to_clock: bool | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        if period is not None:
            self.period = period
        if align_to_clock is not None:
            self.align_to_clock = align_to_clock
        check_distributed(self)

    name: str
    period: timedelta | Cron

    @abc.abstractmethod
    def execute(self, token: CancellationToken) -> None:
        """Do one run. Check ``token``: it is cancelled on shutdown and when the claim is lost."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={getattr(self, 'name', None)!r})"


def is_distributed(job: object) -> bool:
    """Whether a host runs ``job`` as a distributed job: a DistributedJob, or (duck typing) an
    object with ``execute`` that is not a RecurringJob."""
    if isinstance(job, DistributedJob):
        return True
    return not isinstance(job, RecurringJob) and callable(getattr(job, "execute", None))


_ABSENT = object()  # the job has no such attribute: the default applies
_RAISED = object()  # reading it raised (logged): the loop uses the default until it reads


def check_recurring(job: object) -> None:
    """Validate a recurring job's run method, period, delays and server roles (duck typing
    allowed). A property that raises is logged and left to the loop, which uses the default
    until a read succeeds."""
    if not callable(_read(job, "run", None)):
        raise TypeError(f"job must have a run(token) method, got {job!r}")
    period = _read(job, "period", None)
    if period is not _RAISED:
        schedule(period, "period")
    for attr in ("delay", "ignored_delay"):
        value = _read(job, attr, _ABSENT)
        if value is not _ABSENT and value is not _RAISED:
            duration(value, attr)
    roles = _read(job, "server_roles", _ABSENT)
    if roles is not _ABSENT and roles is not _RAISED:
        _roles(roles)


def _read(job: object, attr: str, absent: object) -> object:
    what = f"reading {attr} of a {type(job).__name__}"
    return call_user(what, getattr, job, attr, absent, default=_RAISED)


def check_distributed(job: object) -> None:
    """Validate a distributed job's name, period (or Cron) and align_to_clock (duck typing
    allowed)."""
    job_name_text(getattr(job, "name", None))
    period = schedule(getattr(job, "period", None), "period", infinite=False, zero=False)
    align = getattr(job, "align_to_clock", False)
    if not isinstance(align, bool):
        raise TypeError(f"align_to_clock must be a bool, got {align!r}")
    if align and isinstance(period, Cron):
        raise ValueError(
            f"align_to_clock=True cannot be combined with a Cron period ({period!r}): a "
            "calendar schedule is already aligned to its fire times"
        )
    # The jobs table's cron column holds "<expression>|<zone name>" (255 characters), read back
    # by every server: the zone must be one a name can stand for.
    if isinstance(period, Cron):
        if len(period.expression) + len(period.zone_name) + 1 > 255:
            raise ValueError(f"period {period!r} is too long to store (255 characters at most)")
        try:
            stored = Cron(period.expression, tz=period.zone_name)
        except ValueError:
            stored = None
        if stored != period:
            raise ValueError(
                f"period {period!r}: a distributed job's calendar needs a zone every server can "
                "read back from its name (an IANA name, 'UTC' or a fixed offset like "
                f"'UTC+02:00'), not the tzinfo {period.zone!r}"
            )
    if not callable(getattr(job, "execute", None)):
        raise TypeError(f"job must have an execute(token) method, got {job!r}")


def _roles(value: object) -> frozenset[ServerRole]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"server_roles must be an iterable of ServerRole, got {value!r}")
    roles = frozenset(value)
    for role in roles:
        if not isinstance(role, ServerRole):
            raise TypeError(f"server_roles must contain ServerRole members, got {role!r}")
    return roles


def job_name(job: object) -> str:
    """A readable name for logs and status: ``job.name`` if it is a str, else the class name."""
    name = call_user(f"name of a {type(job).__name__}", getattr, job, "name", None, default=None)
    return name if isinstance(name, str) else type(job).__name__


_DONE = {"trigger": "triggered", "pause": "paused", "resume": "resumed"}


def one_named(jobs: Iterable[object], name: str, action: str) -> object | None:
    """The one job of ``jobs`` named ``name`` (None: none is). Several of that name (two
    classes of one name in different modules, instances of one class, a recurring and a
    distributed job) raise ValueError listing them: a command acting on one of them would be
    guessing. ``action`` ("trigger", "pause" or "resume") is what the message says did not
    happen."""
    found = [job for job in jobs if job_name(job) == name]
    if len(found) < 2:
        return found[0] if found else None
    described = "; ".join(
        f"{'distributed' if is_distributed(job) else 'recurring'} "
        f"{type(job).__module__}.{type(job).__qualname__}"
        for job in found
    )
    done = _DONE[action]
    raise ValueError(
        f"{len(found)} registered jobs are named {name!r} ({described}): nothing was {done}; "
        "give them distinct names (a job's name attribute) to act on one"
    )
