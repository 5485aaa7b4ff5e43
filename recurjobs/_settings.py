"""Settings of the distributed-job poller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from recurjobs._validate import duration, table_prefix

__all__ = ["DistributedJobSettings"]

# A bound far beyond any sensible setting that keeps every wait and every time sum finite.
_LONGEST = timedelta(days=365)
_SHORTEST_LEASE = timedelta(seconds=1)


@dataclass(frozen=True)
class DistributedJobSettings:
    """How the host's poller claims distributed jobs (see docs/distributed.md).

    ``poll_period``: how often each server looks for due jobs. ``delay``: the wait after start
    before the first poll. ``max_execution_time``: how long past its period a claim may go
    without a sign of life before another server may take it over. ``max_concurrent_jobs``: how
    many distributed jobs this server runs at once (the history pruning job runs beside them).
    ``table_prefix``: prefix of the tables.
    """

    poll_period: timedelta = timedelta(seconds=5)
    delay: timedelta = timedelta(minutes=1)
    max_execution_time: timedelta = timedelta(minutes=5)
    max_concurrent_jobs: int = 1
    table_prefix: str = "recurjobs_"

    def __post_init__(self) -> None:
        duration(self.poll_period, "poll_period", infinite=False, zero=False, maximum=_LONGEST)
        duration(self.delay, "delay", infinite=False, maximum=_LONGEST)
        duration(
            self.max_execution_time,
            "max_execution_time",
            infinite=False,
            zero=False,
            maximum=_LONGEST,
        )
        if self.max_execution_time < _SHORTEST_LEASE:
            # Claims are renewed every quarter of it: shorter would renew in a busy loop, and
            # no statement bound could stay inside the lease.
            raise ValueError(
                f"max_execution_time must be at least 1 second, got {self.max_execution_time!r}"
            )
        jobs = self.max_concurrent_jobs
        if isinstance(jobs, bool) or not isinstance(jobs, int):
            raise TypeError(f"max_concurrent_jobs must be an int, got {jobs!r}")
        if jobs < 1:
            raise ValueError(f"max_concurrent_jobs must be at least 1, got {jobs!r}")
        table_prefix(self.table_prefix)
