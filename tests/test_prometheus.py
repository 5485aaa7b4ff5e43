"""recurjobs.prometheus: the metrics a host's notifications drive, read by a real HTTP scrape."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from recurjobs import (
    CancellationToken,
    DistributedJobLeaseLost,
    DistributedJobSettings,
    JobCanceled,
    JobExecuted,
    JobExecuting,
    JobFailed,
    JobHost,
)
from recurjobs.prometheus import instrument
from recurjobs.sql import JobStore
from recurjobs.testing import ManualClock
from tests.helpers import TimedJob, minutes, walk_to
from tests.sql.helpers import Job, set_row, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample the endpoint serves: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def served() -> Iterator[tuple[CollectorRegistry, int]]:
    """A fresh registry served over HTTP on a free port of the loopback interface."""
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield registry, server.server_port
    server.shutdown()
    server.server_close()
    thread.join(10)


def failing_every_other(token: CancellationToken) -> None:
    """A job body that fails on every second call."""
    failing_every_other.calls += 1  # type: ignore[attr-defined]
    if failing_every_other.calls % 2 == 0:  # type: ignore[attr-defined]
        raise RuntimeError("every other run fails")


def test_scrape_shows_runs_outcomes_duration_and_lateness(
    clock: ManualClock, served: tuple[CollectorRegistry, int]
) -> None:
    """Three executed and three failed runs, one paused tick and a late start show up in a
    scrape with the right counts, last success time, lateness and period."""
    registry, port = served
    failing_every_other.calls = 0  # type: ignore[attr-defined]
    job = TimedJob(clock, minutes(5), body=failing_every_other)
    host = JobHost([job], clock=clock)
    link = instrument(host, registry)
    with host:
        walk_to(clock, 20)  # runs at 0, 5, 10, 15, 20: executed, failed, executed, failed, ...
        host.pause(job)
        walk_to(clock, 25)
        host.resume(job)
        clock.wait_for_waiters(1)
        clock.advance(minutes(7))  # the 30 min tick is seen 2 min late (and fails)
        clock.wait_for_waiters(1)
    link.close()
    samples = scrape(port)
    runs = {
        outcome: value(
            samples, "recurjobs_runs_total", job="TimedJob", kind="recurring", outcome=outcome
        )
        for outcome in ("executed", "failed", "ignored")
    }
    assert {"executed": 3.0, "failed": 3.0, "ignored": 1.0} == runs
    count = value(samples, "recurjobs_run_duration_seconds_count", job="TimedJob", kind="recurring")
    assert 6.0 == count
    assert 0.0 == value(samples, "recurjobs_running", job="TimedJob")
    assert 120.0 == value(samples, "recurjobs_lateness_seconds", job="TimedJob")
    assert 300.0 == value(samples, "recurjobs_period_seconds", job="TimedJob")
    last = datetime(2026, 1, 1, tzinfo=UTC) + minutes(20)
    assert last.timestamp() == value(
        samples, "recurjobs_last_success_timestamp_seconds", job="TimedJob"
    )


def test_a_distributed_run_and_a_running_gauge(
    tmp_path: Path, served: tuple[CollectorRegistry, int]
) -> None:
    """A distributed run is counted with kind="distributed"; recurjobs_running is 1 while it
    runs and 0 after; it has no lateness series."""
    registry, port = served
    release = threading.Event()

    def body(token: CancellationToken) -> None:
        release.wait(30)

    job = Job("report", timedelta(hours=1), body=body)
    settings = DistributedJobSettings(poll_period=timedelta(seconds=0.1), delay=timedelta(0))
    host = JobHost([job], database=f"sqlite:///{tmp_path / 'jobs.db'}", distributed=settings)
    instrument(host, registry)
    with host:
        assert wait_until(lambda: host.trigger_distributed("report"), 30)  # once its row exists
        assert job.ran.wait(30)
        during = scrape(port)
        release.set()
    after = scrape(port)  # stop() waited for the run to end
    executed = value(
        after, "recurjobs_runs_total", job="report", kind="distributed", outcome="executed"
    )
    assert (1.0, 0.0, 1.0) == (
        value(during, "recurjobs_running", job="report"),
        value(after, "recurjobs_running", job="report"),
        executed,
    )
    assert None is value(after, "recurjobs_lateness_seconds", job="report")


def test_lost_lease_counts_as_lease_lost(clock: ManualClock) -> None:
    """A canceled run after DistributedJobLeaseLost is counted as lease_lost, not canceled."""
    registry = CollectorRegistry()
    job = Job("report", timedelta(hours=1))
    host = JobHost([], clock=clock)
    instrument(host, registry)
    at = clock.now()
    for notification in (
        JobExecuting(job=job, at=at),
        DistributedJobLeaseLost(job=job, at=at, claim_id="c1"),
        JobCanceled(job=job, at=at + timedelta(seconds=2)),
        JobExecuting(job=job, at=at),
        JobCanceled(job=job, at=at + timedelta(seconds=1)),
    ):
        host.publisher.publish(notification)
    labels = {"job": "report", "kind": "distributed"}
    counts = [
        registry.get_sample_value("recurjobs_runs_total", labels | {"outcome": o})
        for o in ("lease_lost", "canceled")
    ]
    total = registry.get_sample_value("recurjobs_run_duration_seconds_sum", labels)
    assert ([1.0, 1.0], 3.0) == (counts, total)


def test_two_hosts_share_one_registry_and_close_stops_updates(clock: ManualClock) -> None:
    """Instrumenting two hosts on one registry does not clash; after close() a host's runs
    are no longer counted."""
    registry = CollectorRegistry()
    first = TimedJob(clock, minutes(5))
    hosts = [JobHost([first], clock=clock), JobHost([], clock=clock)]
    links = [instrument(h, registry) for h in hosts]
    links[0].close()
    with hosts[0]:
        clock.wait_for_waiters(1)
    labels = {"job": "TimedJob", "kind": "recurring", "outcome": "executed"}
    assert ([0], 0.0) == (first.starts, registry.get_sample_value("recurjobs_runs_total", labels))


def test_two_hosts_on_one_registry_count_into_the_same_series(clock: ManualClock) -> None:
    """Two hosts instrumented on one registry (no duplicate-registration error) add their
    runs of a job of the same name to one series: two runs, two durations."""
    registry = CollectorRegistry()
    job = Job("report", timedelta(hours=1))
    hosts = [JobHost([], clock=clock), JobHost([], clock=clock)]
    for host in hosts:
        instrument(host, registry)
    at = clock.now()
    for host, took in zip(hosts, (2, 3), strict=True):
        host.publisher.publish(JobExecuting(job=job, at=at))
        host.publisher.publish(
            JobExecuted(job=job, at=at + timedelta(seconds=took), duration=timedelta(seconds=took))
        )
    labels = {"job": "report", "kind": "distributed"}
    assert (2.0, 2.0, 5.0) == (
        registry.get_sample_value("recurjobs_runs_total", labels | {"outcome": "executed"}),
        registry.get_sample_value("recurjobs_run_duration_seconds_count", labels),
        registry.get_sample_value("recurjobs_run_duration_seconds_sum", labels),
    )


def test_runs_whose_start_was_not_seen_are_counted_without_a_made_up_duration(
    clock: ManualClock,
) -> None:
    """Runs that began before instrument() (only their end is seen) are counted by outcome; a
    failed or canceled one observes no duration (its start is unknown), an executed one
    observes the duration its notification carries."""
    registry = CollectorRegistry()
    job = Job("report", timedelta(hours=1))
    host = JobHost([], clock=clock)
    instrument(host, registry)
    at = clock.now()
    for notification in (
        JobFailed(job=job, at=at, exception=RuntimeError("boom")),
        JobCanceled(job=job, at=at),
        JobExecuted(job=job, at=at, duration=timedelta(seconds=4)),
    ):
        host.publisher.publish(notification)
    labels = {"job": "report", "kind": "distributed"}
    counts = [
        registry.get_sample_value("recurjobs_runs_total", labels | {"outcome": o})
        for o in ("failed", "canceled", "executed")
    ]
    observed = (
        registry.get_sample_value("recurjobs_run_duration_seconds_count", labels),
        registry.get_sample_value("recurjobs_run_duration_seconds_sum", labels),
    )
    assert ([1.0, 1.0, 1.0], (1.0, 4.0)) == (counts, observed)


def test_instrumenting_a_host_twice_counts_each_run_once(clock: ManualClock) -> None:
    """A second instrument() of the same host and registry returns the open instrumentation;
    after close(), a new call makes a new one."""
    registry = CollectorRegistry()
    job = TimedJob(clock, minutes(5))
    host = JobHost([job], clock=clock)
    first = instrument(host, registry)
    assert first is instrument(host, registry)
    with host:
        clock.wait_for_waiters(1)
    labels = {"job": "TimedJob", "kind": "recurring", "outcome": "executed"}
    assert 1.0 == registry.get_sample_value("recurjobs_runs_total", labels)
    first.close()
    assert first is not instrument(host, registry)


@pytest.mark.parametrize(
    ("host", "registry", "match"),
    [
        (None, None, "host must be a JobHost, got None"),
        ("host", None, "host must be a JobHost, got 'host'"),
        (JobHost(), "registry", "registry must be a prometheus_client CollectorRegistry"),
    ],
)
def test_bad_input(host: object, registry: object, match: str) -> None:
    """instrument() names the parameter and the value it refuses."""
    with pytest.raises(TypeError, match=match):
        instrument(host, registry)  # type: ignore[arg-type]


def test_a_real_lease_loss_counts_as_lease_lost(
    tmp_path: Path, served: tuple[CollectorRegistry, int]
) -> None:
    """A running distributed job whose claim another host takes over (its row's claim id
    changed under it) is cancelled by its heartbeat and counted in a scrape with
    outcome="lease_lost", not "canceled"."""
    registry, port = served
    started = threading.Event()

    def body(token: CancellationToken) -> None:
        started.set()
        token.wait(30)
        token.raise_if_cancelled()

    job = Job("report", timedelta(hours=1), body=body)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = DistributedJobSettings(poll_period=timedelta(seconds=0.1), delay=timedelta(0))
    host = JobHost([job], database=url, distributed=settings)
    instrument(host, registry)
    lost = threading.Event()
    host.subscribe(DistributedJobLeaseLost, lambda n: lost.set())
    store = JobStore(url)
    try:
        with host:
            assert wait_until(lambda: host.trigger_distributed("report"), 30)
            assert started.wait(30)
            set_row(store, "report", claim_id="x" * 32, owner="other")  # taken over
            assert lost.wait(30)
            labels = {"job": "report", "kind": "distributed"}
            assert wait_until(
                lambda: (
                    value(scrape(port), "recurjobs_runs_total", **labels, outcome="lease_lost")
                    == 1.0
                ),
                30,
            )
            seen = scrape(port)
    finally:
        store.dispose()
    assert None is value(seen, "recurjobs_runs_total", **labels, outcome="canceled")
    assert 0.0 == value(seen, "recurjobs_running", job="report")
