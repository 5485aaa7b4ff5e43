"""Pause and resume across host processes: two ``mp_worker.py`` hosts share two distributed
jobs; a pause from a third process stops every claim of them on both hosts, a run going on
finishes, and a resume (through the command line) lets them run again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recurjobs import DistributedJobSettings, JobHost
from recurjobs.cli import main
from tests.dbs import TestDatabase
from tests.sql.test_multiprocess import Cluster, assert_healthy, executions

pytestmark = pytest.mark.multiprocess

JOBS = [
    {"name": "a", "period": 0.5, "duration": 0.02},
    {"name": "long", "period": 0.5, "duration": 2.0},
]
# A claim that committed just before the pause is announced ("claimed") a moment later; on a
# busy machine that moment can be long, so claims this soon after the pause are not counted.
GRACE = 1.0
QUIET = 1.5  # how long the paused jobs are watched (three of their periods)


@pytest.fixture
def cluster(db: TestDatabase, tmp_path: Path) -> Iterator[Cluster]:
    """Worker processes on ``db``; all are gone after the test."""
    c = Cluster(db, tmp_path)
    yield c
    c.kill_all()


def claims_after(cluster: Cluster, job: str, t: float) -> list[float]:
    return [e["t"] for e in cluster.events("claimed", job=job) if e["t"] > t]


@pytest.mark.timeout(150)
def test_pause_and_resume_across_two_host_processes(cluster: Cluster, db: TestDatabase) -> None:
    """Paused from a third process, neither host claims the jobs; the run going on finishes
    normally; resumed with `recurjobs resume`, both jobs run again."""
    for host in ("h0", "h1"):
        cluster.spawn(host, JOBS, seconds=90)

    def long_is_running() -> bool:
        runs = executions(cluster, "long")
        return bool(runs) and runs[-1]["end"] is None and len(executions(cluster, "a")) >= 2

    cluster.wait_for(60, long_is_running)
    settings = DistributedJobSettings(table_prefix=db.table_prefix)
    tool = JobHost(database=db.url, distributed=settings)  # an unstarted host, as a tool has
    assert (True, True) == (tool.pause("a"), tool.pause("long"))
    paused_at = time.monotonic()
    running = [r for r in executions(cluster, "long") if r["start"] < paused_at]

    def finished() -> bool:
        runs = {r["start"]: r for r in executions(cluster, "long")}
        return all(runs[r["start"]]["end"] is not None for r in running)

    cluster.wait_for(30, finished)
    time.sleep(QUIET)  # real time: the hosts poll every 0.1 s meanwhile, and must not claim
    quiet = {job: claims_after(cluster, job, paused_at + GRACE) for job in ("a", "long")}
    ends = {r["start"]: r for r in executions(cluster, "long")}
    cancelled = [ends[r["start"]]["cancelled"] for r in running]

    argv = ["resume", "--database", db.url, "--table-prefix", db.table_prefix, "a"]
    assert 0 == main(argv)
    assert 0 == main([*argv[:-1], "long"])
    resumed_at = time.monotonic()
    cluster.wait_for(
        60,
        lambda: all(claims_after(cluster, job, resumed_at) for job in ("a", "long")),
    )
    for proc in cluster.procs.values():
        os.kill(proc.pid, signal.SIGTERM)
    cluster.join(60)

    assert {"a": [], "long": []} == quiet
    assert [False] * len(running) == cancelled
    assert_healthy(cluster)
