"""Which jobs one host has: each checked as it is registered, the recurring ones apart from
the distributed ones, which of them the host paused, and a status record for each.

Not locked itself: ``JobHost`` registers jobs and changes pause marks with its lock held, or
in its constructor, before another thread can see it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from recurjobs._jobs import check_distributed, check_recurring, is_distributed
from recurjobs._pause import Target, resolve
from recurjobs._status import JobStatus, not_started

if TYPE_CHECKING:
    from recurjobs._loop import JobRunner

__all__ = ["Registry"]


class Registry:
    """The registered jobs of one host, in registration order, and their pause marks."""

    def __init__(self) -> None:
        self.recurring: list[object] = []
        self.distributed: list[object] = []
        self._ids: set[int] = set()  # id() of every registered job (the lists keep them alive)
        self._paused: set[int] = set()  # id() of the paused recurring jobs
        self._paused_rows: set[str] = set()  # distributed jobs this host paused (for status)

    def add(self, job: object, *, database: object) -> None:
        """Register ``job`` if it is a valid job instance not registered yet; a distributed job
        needs a ``database`` and a name no other registered distributed job has."""
        if isinstance(job, type):
            raise TypeError(f"job must be an instance, not the class {job.__name__}")
        if id(job) in self._ids:
            raise ValueError(f"job {job!r} is already registered")
        if is_distributed(job):
            check_distributed(job)
            if database is None:
                raise ValueError(f"distributed job {job!r} needs JobHost(database=...)")
            name = getattr(job, "name")  # noqa: B009
            if any(getattr(j, "name") == name for j in self.distributed):  # noqa: B009
                raise ValueError(f"a distributed job named {name!r} is already registered")
            self.distributed.append(job)
            self._ids.add(id(job))
            return
        check_recurring(job)
        self.recurring.append(job)
        self._ids.add(id(job))

    def remove(self, job: object) -> None:
        """Undo :meth:`add` of ``job`` (its start failed: it may be added again)."""
        for jobs in (self.recurring, self.distributed):
            if any(j is job for j in jobs):
                jobs[:] = [j for j in jobs if j is not job]
        self._ids.discard(id(job))
        self._paused.discard(id(job))

    @property
    def jobs(self) -> tuple[object, ...]:
        """Every registered job, recurring first."""
        return (*self.recurring, *self.distributed)

    # ------------------------------------------------------------------ pause marks
    def is_paused(self, job: object) -> bool:
        """Whether the host paused the recurring ``job``."""
        return id(job) in self._paused

    def mark_paused(self, job: object, paused: bool, *, database: bool) -> Target:
        """The jobs a ``pause``/``resume`` argument names (``_pause.resolve``); its recurring
        jobs are marked paused or not here (read when their runners start, and by status)."""
        target = resolve(job, self.recurring, self.distributed, database=database)
        for item in target.recurring:
            (self._paused.add if paused else self._paused.discard)(id(item))
        return target

    def mark_row_paused(self, name: str, paused: bool) -> None:
        """Note that the host paused (or resumed) the distributed job ``name`` (for status)."""
        (self._paused_rows.add if paused else self._paused_rows.discard)(name)

    # ----------------------------------------------------------------------- status
    def status(
        self, runners: Mapping[int, JobRunner], running: bool, sql: Any
    ) -> tuple[JobStatus, ...]:
        """One record per registered job: from its runner (``runners``, by the job's id()) or
        the host's SQL side (``sql``), else as not started."""
        records = [
            runners[id(j)].status(planned=running)
            if id(j) in runners
            else not_started(j, paused=id(j) in self._paused)
            for j in self.recurring
        ]
        if sql is not None:
            records.extend(sql.status())
        else:
            records.extend(
                not_started(j, distributed=True, paused=getattr(j, "name") in self._paused_rows)  # noqa: B009
                for j in self.distributed
            )
        return tuple(records)
