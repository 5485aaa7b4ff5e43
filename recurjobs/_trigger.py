"""Triggering a recurring job by hand: which arguments a trigger takes, and where an accepted
one goes (the job's thread, or this machine's main instance).

``JobHost.trigger()`` checks its arguments here, finds the job's runner under its lock, and
hands the rest to :func:`deliver`. :class:`JobTrigger` is the typed handle of one job class.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Generic, TypeVar

from recurjobs._forward import forward_trigger
from recurjobs._jobs import TriggerableJob
from recurjobs._schedule import NextExecution
from recurjobs._validate import duration

if TYPE_CHECKING:
    from recurjobs._host import JobHost
    from recurjobs._loop import JobRunner

__all__ = [
    "TJ",
    "JobTrigger",
    "check_trigger",
    "deliver",
    "forward_unstarted",
    "refusal",
    "runner_of",
]

TJ = TypeVar("TJ", bound=TriggerableJob)


def check_trigger(job: object, strategy: object, next_delay: object) -> None:
    """Raise for arguments ``JobHost.trigger()`` does not take, naming the argument."""
    if not isinstance(strategy, NextExecution):
        raise TypeError(f"strategy must be a NextExecution, got {strategy!r}")
    if next_delay is not None:
        duration(next_delay, "next_delay")
        if strategy is not NextExecution.NONE:
            raise ValueError(
                f"give either strategy or next_delay, not both (strategy={strategy!r}, "
                f"next_delay={next_delay!r})"
            )
    if isinstance(job, str):
        raise TypeError(
            f"job must be the job class or instance to trigger, not the name {job!r}; "
            "for a distributed job use trigger_distributed(name)"
        )
    if not isinstance(job, (type, TriggerableJob)):
        raise TypeError(f"job must be a TriggerableJob subclass or instance, got {job!r}")
    kind = job if isinstance(job, type) else type(job)
    if not issubclass(kind, TriggerableJob):
        raise TypeError(f"{kind.__name__} cannot be triggered: it does not subclass TriggerableJob")


def runner_of(job: object, runners: Sequence[JobRunner]) -> JobRunner | None:
    """The runner of a registered job (class or instance) among ``runners``, None if none."""
    index = _one_of(job, [r.job for r in runners])
    return None if index is None else runners[index]


def _one_of(job: object, jobs: Sequence[object]) -> int | None:
    """The position in ``jobs`` of the job that ``job`` (a class or an instance) names; None
    when none; ValueError when a class names several instances."""
    if isinstance(job, type):
        found = [i for i, j in enumerate(jobs) if type(j) is job]
        if len(found) > 1:
            raise ValueError(
                f"{job.__name__} is registered {len(found)} times; trigger the instance"
            )
    else:
        found = [i for i, j in enumerate(jobs) if j is job]
    return found[0] if found else None


def deliver(
    host: JobHost,
    runner: JobRunner | None,
    strategy: NextExecution,
    next_delay: timedelta | None,
) -> bool:
    """Pass a checked trigger to ``runner`` (None: the job is not running on ``host``); True
    when it was accepted."""
    if runner is None or runner.paused:
        return False
    if not host.gates.is_main():
        return _forward(host, runner.job, strategy, next_delay)
    if host.gates.check(runner.view.server_roles()) is not None:
        return False  # the run cannot happen here now: refuse it rather than drop it later
    return runner.trigger(strategy, next_delay)


def forward_unstarted(
    host: JobHost, job: object, strategy: NextExecution, next_delay: timedelta | None
) -> bool:
    """A host that was never started, with a main instance lock (a web process whose jobs run
    in a worker process of their own): the trigger goes to the machine's main instance."""
    index = _one_of(job, host.jobs)
    if index is None or host.gates.main_dom is None:
        return False
    return _forward(host, host.jobs[index], strategy, next_delay)


def refusal(host: JobHost, runner: JobRunner | None) -> str:
    """Why :func:`deliver` refused a trigger of ``runner``'s job, for the sender to log."""
    if runner is None:
        return "the job is not running there (its host is stopped or stopping)"
    if runner.paused:
        return "the job is paused"
    reason = host.gates.check(runner.view.server_roles())
    if reason is None:
        return "the job is stopping"
    if reason.name == "SERVER_ROLE":
        return f"the server role there ({host.gates.role().name}) is not one of the job's"
    return f"the runtime there is not ready ({reason.name})"


def _forward(
    host: JobHost, job: object, strategy: NextExecution, next_delay: timedelta | None
) -> bool:
    """Hand a trigger to this machine's main instance; True only when it accepted it."""
    main_dom = host.gates.main_dom
    if main_dom is None:
        return False
    return forward_trigger(main_dom, job, host.jobs, strategy, next_delay)


class JobTrigger(Generic[TJ]):
    """A typed handle for triggering one job class: ``host.trigger_for(J).trigger()``."""

    __slots__ = ("_host", "job_class")

    def __init__(self, host: JobHost, job_class: type[TJ]) -> None:
        self._host = host
        self.job_class = job_class

    def trigger(
        self, strategy: NextExecution = NextExecution.NONE, *, next_delay: timedelta | None = None
    ) -> bool:
        """Trigger the job; same rules and result as ``JobHost.trigger``."""
        return self._host.trigger(self.job_class, strategy, next_delay=next_delay)

    def __repr__(self) -> str:
        return f"JobTrigger({self.job_class.__name__})"
