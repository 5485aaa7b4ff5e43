"""Jobs of the test project. Each appends one line per event to ``settings.OUT`` (O_APPEND
keeps lines from several processes whole): ``<event> <pid> <time.time()> <machine> [detail]``,
where machine is ``$DJTEST_MACHINE`` (default "-")."""

import os
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection

from recurjobs import CancellationToken, DistributedJob, RecurringJob, TriggerableJob


def record(event: str, detail: str = "") -> None:
    with open(settings.OUT, "a") as out:
        machine = os.environ.get("DJTEST_MACHINE", "-")
        out.write(f"{event} {os.getpid()} {time.time():.6f} {machine} {detail}".rstrip() + "\n")


record("loaded")


class PidJob(RecurringJob, TriggerableJob):
    """Every 200 ms from the start: records which process ran it."""

    def __init__(self) -> None:
        super().__init__(timedelta(milliseconds=200), delay=timedelta(0))

    def run(self, token: CancellationToken) -> None:
        record("run")

    def close(self) -> None:
        record("closed")


class ClusterJob(DistributedJob):
    """Distributed, every 2 s: records its start and end around a 300 ms run."""

    name = "cluster"
    period = timedelta(seconds=2)

    def execute(self, token: CancellationToken) -> None:
        record("dist-start")
        token.wait(0.3)
        record("dist-end")


class DbJob(RecurringJob):
    """Every 300 ms: one query through Django's connection; records the backend pid or the
    error."""

    def __init__(self) -> None:
        super().__init__(timedelta(milliseconds=300), delay=timedelta(0))

    def run(self, token: CancellationToken) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                (backend,) = cursor.fetchone()
        except Exception as exc:
            record("db-error", type(exc).__name__)
            raise
        record("db-ok", str(backend))


class StuckJob(RecurringJob):
    """Once, at the start: records "stuck-start", then ignores its cancellation token for
    ``$DJTEST_STUCK_SECONDS`` (default 20) seconds; records "stuck-end" if it gets there."""

    def __init__(self) -> None:
        super().__init__(timedelta(days=1), delay=timedelta(0))

    def run(self, token: CancellationToken) -> None:
        record("stuck-start")
        time.sleep(float(os.environ.get("DJTEST_STUCK_SECONDS", "20")))
        record("stuck-end")
