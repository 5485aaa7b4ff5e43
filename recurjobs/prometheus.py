"""Prometheus metrics of a JobHost, driven by its notifications (extra ``prometheus``).

``instrument(host)`` subscribes to the host's notifications and keeps these series up to date
(``job`` is the name ``host.status()`` shows, ``kind`` is ``recurring`` or ``distributed``):

``recurjobs_runs_total{job,kind,outcome}`` (counter)
    Finished runs by outcome: ``executed``, ``failed``, ``canceled``, ``lease_lost`` (a
    distributed run cancelled because its claim was lost) and ``ignored`` (a gate or a pause
    stopped the run).
``recurjobs_run_duration_seconds{job,kind}`` (histogram)
    How long runs took, from ``JobExecuting`` to their outcome (ignored runs are not runs).
``recurjobs_running{job}`` (gauge)
    1 while a run of the job is going on in this process, else 0.
``recurjobs_last_success_timestamp_seconds{job}`` (gauge)
    Unix time of the last ``executed`` run in this process (absent until there is one).
``recurjobs_lateness_seconds{job}`` (gauge)
    The last run's lateness: when it started minus when it was due (the planned tick, or the
    moment a manual trigger arrived), in seconds. Recurring jobs only: when a distributed job
    was due is decided by the database, so it has no lateness series.
``recurjobs_period_seconds{job}`` (gauge)
    The job's period, so alerts can say "no success for two periods" (absent for a period of
    zero, ``INFINITE`` or a calendar schedule).

Handlers run on the host's threads, synchronously; they only update in-memory metrics (which
``prometheus_client`` makes thread-safe) and never raise into the host (the publisher guards
every handler). Several hosts may be instrumented on one registry: they share the series.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from recurjobs._guard import call_user
from recurjobs._host import JobHost, _is_distributed
from recurjobs._jobs import job_name
from recurjobs._notifications import (
    DistributedJobLeaseLost,
    JobCanceled,
    JobExecuted,
    JobExecuting,
    JobFailed,
    JobIgnored,
    JobNotification,
    JobStarting,
    Subscription,
)
from recurjobs._schedule import INFINITE

__all__ = ["DURATION_BUCKETS", "Instrumentation", "instrument"]

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""Buckets of ``recurjobs_run_duration_seconds``: 10 ms to an hour."""


@dataclass(frozen=True)
class _Metrics:
    runs: Counter
    duration: Histogram
    running: Gauge
    last_success: Gauge
    lateness: Gauge
    period: Gauge


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = (
    weakref.WeakKeyDictionary()
)
_registry_lock = threading.Lock()
# The open instrumentations of each host, by registry: instrumenting a host twice into one
# registry returns the open one (two would count every run twice).
_by_host: weakref.WeakKeyDictionary[JobHost, dict[CollectorRegistry, Instrumentation]] = (
    weakref.WeakKeyDictionary()
)


def _metrics(registry: CollectorRegistry) -> _Metrics:
    """The metrics of ``registry``, registered on first use (once per registry)."""
    with _registry_lock:
        found = _by_registry.get(registry)
        if found is None:
            found = _Metrics(
                runs=Counter(
                    "recurjobs_runs_total",
                    "Finished runs of recurjobs jobs, by outcome.",
                    ["job", "kind", "outcome"],
                    registry=registry,
                ),
                duration=Histogram(
                    "recurjobs_run_duration_seconds",
                    "How long runs of recurjobs jobs took.",
                    ["job", "kind"],
                    buckets=DURATION_BUCKETS,
                    registry=registry,
                ),
                running=Gauge(
                    "recurjobs_running",
                    "1 while a run of the job is going on in this process.",
                    ["job"],
                    registry=registry,
                ),
                last_success=Gauge(
                    "recurjobs_last_success_timestamp_seconds",
                    "Unix time of the job's last successful run in this process.",
                    ["job"],
                    registry=registry,
                ),
                lateness=Gauge(
                    "recurjobs_lateness_seconds",
                    "Start minus due time of the job's last run (recurring jobs).",
                    ["job"],
                    registry=registry,
                ),
                period=Gauge(
                    "recurjobs_period_seconds",
                    "The job's period.",
                    ["job"],
                    registry=registry,
                ),
            )
            _by_registry[registry] = found
        return found


class Instrumentation:
    """The link between one host and the metrics; :meth:`close` (or ``with``) ends it.

    Closing stops updating the metrics; the series stay registered with their last values.
    """

    def __init__(self, host: JobHost, metrics: _Metrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._started: dict[str, datetime] = {}  # job -> JobExecuting.at of the run going on
        self._lost: set[str] = set()  # distributed jobs whose claim was lost in this run
        self.closed = False
        for job in host.jobs:
            self._prepare(job)
        self._subscription: Subscription = host.subscribe(JobNotification, self._on)

    def close(self) -> None:
        """Stop updating the metrics from the host's notifications."""
        self.closed = True
        self._subscription.cancel()

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ handlers
    def _prepare(self, job: object) -> None:
        """Create the job's series at zero, so rates and ratios exist before the first run."""
        name, kind = job_name(job), _kind(job)
        m = self._metrics
        for outcome in ("executed", "failed"):
            m.runs.labels(name, kind, outcome)
        m.running.labels(name).set(0)
        self._set_period(job, name)

    def _set_period(self, job: object, name: str) -> None:
        period: Any = call_user(f"period of {name}", getattr, job, "period", None, default=None)
        if isinstance(period, timedelta) and period != INFINITE and period > timedelta(0):
            self._metrics.period.labels(name).set(period.total_seconds())

    def _on(self, n: JobNotification) -> None:
        if isinstance(n, JobStarting):
            self._prepare(n.job)
        elif isinstance(n, JobExecuting):
            self._executing(n)
        elif isinstance(n, DistributedJobLeaseLost):
            with self._lock:
                self._lost.add(job_name(n.job))
        elif isinstance(n, (JobExecuted, JobFailed, JobCanceled, JobIgnored)):
            self._ended(n)

    def _executing(self, n: JobExecuting) -> None:
        name, m = job_name(n.job), self._metrics
        with self._lock:
            self._started[name] = n.at
            self._lost.discard(name)
        m.running.labels(name).set(1)
        if n.scheduled_at is not None:
            m.lateness.labels(name).set(max(0.0, (n.at - n.scheduled_at).total_seconds()))
        self._set_period(n.job, name)

    def _ended(self, n: JobNotification) -> None:
        name, kind, m = job_name(n.job), _kind(n.job), self._metrics
        with self._lock:
            started = self._started.pop(name, None)
            lost = name in self._lost
            self._lost.discard(name)
        m.running.labels(name).set(0)
        if isinstance(n, JobIgnored):
            m.runs.labels(name, kind, "ignored").inc()
            return
        took: float | None
        if isinstance(n, JobExecuted):
            outcome, took = "executed", n.duration.total_seconds()
            m.last_success.labels(name).set(n.at.timestamp())
        else:
            outcome = "failed" if isinstance(n, JobFailed) else "canceled"
            if outcome == "canceled" and lost:
                outcome = "lease_lost"
            took = None if started is None else max(0.0, (n.at - started).total_seconds())
        m.runs.labels(name, kind, outcome).inc()
        if took is not None:
            m.duration.labels(name, kind).observe(took)


def _kind(job: object) -> str:
    return "distributed" if _is_distributed(job) else "recurring"


def instrument(host: JobHost, registry: CollectorRegistry | None = None) -> Instrumentation:
    """Export ``host``'s runs as Prometheus metrics in ``registry`` (default: the global
    ``prometheus_client.REGISTRY``); see the module's docstring for the series.

    Call it before ``host.start()`` to see every run. Returns an :class:`Instrumentation`;
    ``close()`` it to stop. Calling it again for the same host and registry returns the open
    one (runs are never counted twice). Serve the registry as usual, for example with
    ``prometheus_client.start_http_server(9100)``.
    """
    if not isinstance(host, JobHost):
        raise TypeError(f"host must be a JobHost, got {host!r}")
    if registry is None:
        registry = REGISTRY
    elif not isinstance(registry, CollectorRegistry):
        raise TypeError(f"registry must be a prometheus_client CollectorRegistry, got {registry!r}")
    metrics = _metrics(registry)
    with _registry_lock:
        mine = _by_host.setdefault(host, {})
        found = mine.get(registry)
        if found is None or found.closed:
            found = mine[registry] = Instrumentation(host, metrics)
        return found
