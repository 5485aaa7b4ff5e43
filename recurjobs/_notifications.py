"""Notifications: frozen records of what happened to a job, delivered by type to subscribers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from recurjobs._guard import call_user
from recurjobs._roles import IgnoreReason, ServerRole
from recurjobs._runsink import RunSink

__all__ = [
    "DistributedJobClaimed",
    "DistributedJobLeaseLost",
    "JobCanceled",
    "JobExecuted",
    "JobExecuting",
    "JobFailed",
    "JobIgnored",
    "JobNotification",
    "JobStarted",
    "JobStarting",
    "JobStopped",
    "JobStopping",
    "Publisher",
    "ServerRoleChanged",
    "Subscription",
]


@dataclass(frozen=True)
class JobNotification:
    """Base of every notification: the ``job`` it concerns and when (``at``, aware UTC)."""

    job: Any
    at: datetime


@dataclass(frozen=True)
class JobStarting(JobNotification):
    """The host is about to start the job's thread."""


@dataclass(frozen=True)
class JobStarted(JobNotification):
    """The job's thread is running."""


@dataclass(frozen=True)
class JobExecuting(JobNotification):
    """A run is about to begin (the gates are checked next).

    ``scheduled_at`` is when the run was due: the planned moment of an automatic run, the
    moment a manual trigger arrived; None when not known here (distributed runs, whose due
    time the database decides). ``at - scheduled_at`` is the run's lateness.
    """

    scheduled_at: datetime | None = None


@dataclass(frozen=True)
class JobExecuted(JobNotification):
    """A run returned normally after ``duration``."""

    duration: timedelta


@dataclass(frozen=True)
class JobIgnored(JobNotification):
    """A gate stopped the run; the job backs off for its ``ignored_delay``."""

    reason: IgnoreReason


@dataclass(frozen=True)
class JobFailed(JobNotification):
    """A run raised ``exception``; the schedule goes on."""

    exception: BaseException


@dataclass(frozen=True)
class JobCanceled(JobNotification):
    """A run ended by cancellation (host shutdown or, for distributed jobs, a lost claim)."""


@dataclass(frozen=True)
class JobStopping(JobNotification):
    """The host asked the job's thread to stop."""


@dataclass(frozen=True)
class JobStopped(JobNotification):
    """The job's thread has ended."""


@dataclass(frozen=True)
class DistributedJobClaimed(JobNotification):
    """This server claimed the distributed job's row and is about to run it."""

    claim_id: str


@dataclass(frozen=True)
class DistributedJobLeaseLost(JobNotification):
    """The claim was taken over or could not be renewed; the run's token is cancelled."""

    claim_id: str


@dataclass(frozen=True)
class ServerRoleChanged(JobNotification):
    """The elected server role changed (``job`` is None for this one)."""

    old: ServerRole
    new: ServerRole


N = TypeVar("N", bound=JobNotification)
Handler = Callable[[Any], object]


class Subscription:
    """A handle on one subscription: ``cancel()`` it, or use it as a context manager."""

    __slots__ = ("_entry", "_publisher")

    def __init__(self, publisher: Publisher, entry: tuple[type[JobNotification], Handler]) -> None:
        self._publisher = publisher
        self._entry = entry

    def cancel(self) -> None:
        """Stop delivering notifications to the handler; calling it again does nothing."""
        self._publisher._remove(self._entry)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()


class Publisher:
    """Delivers notifications synchronously to the handlers subscribed to their type or a base."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: tuple[tuple[type[JobNotification], Handler], ...] = ()
        self._wanted: dict[type[JobNotification], bool] = {}  # wants(), per kind
        self.generation = 0
        """Counts subscriptions and removals: answers of :meth:`wants` hold while it stays."""
        self.sink: RunSink | None = None
        """The run history's recorder: told of every run directly (``recurjobs._runsink``)."""

    def subscribe(self, kind: type[N], handler: Callable[[N], object]) -> Subscription:
        """Call ``handler(notification)`` for every published ``kind`` (subclasses included)."""
        if not (isinstance(kind, type) and issubclass(kind, JobNotification)):
            raise TypeError(f"kind must be a JobNotification subclass, got {kind!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        entry: tuple[type[JobNotification], Handler] = (kind, handler)
        with self._lock:
            self._entries = (*self._entries, entry)
            self._wanted = {}
            self.generation += 1
        return Subscription(self, entry)

    def _remove(self, entry: tuple[type[JobNotification], Handler]) -> None:
        with self._lock:
            self._entries = tuple(e for e in self._entries if e is not entry)
            self._wanted = {}
            self.generation += 1

    def wants(self, kind: type[JobNotification]) -> bool:
        """Whether a ``kind`` published now would reach some handler.

        Publishers ask first and build a notification (and read the clock for it) only then:
        with no subscriber, a run costs neither. A handler subscribed meanwhile sees the
        notifications published after its ``subscribe`` returned, as always.
        """
        cache = self._wanted  # replaced (after _entries) by subscribe and remove
        wanted = cache.get(kind)
        if wanted is None:
            wanted = any(issubclass(kind, subscribed) for subscribed, _ in self._entries)
            cache[kind] = wanted
        return wanted

    def publish(self, notification: JobNotification) -> None:
        """Deliver to every matching handler; whatever a handler raises is logged and swallowed."""
        for kind, handler in self._entries:
            if isinstance(notification, kind):
                what = partial(_handler_name, handler, notification)  # formatted if it raises
                call_user(what, handler, notification, default=None)


def _handler_name(handler: object, notification: JobNotification) -> str:
    return f"notification handler {handler!r} on {type(notification).__name__}"
