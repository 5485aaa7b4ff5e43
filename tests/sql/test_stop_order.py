"""The stop order against a real database: the elected role outlives the jobs it gates."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import select

from recurjobs import CancellationToken, JobHost
from recurjobs.sql._election import DatabaseServerRoles
from recurjobs.sql._servers_table import PUBLISHER
from recurjobs.testing import ManualClock
from tests.dbs import TestDatabase
from tests.helpers import TimedJob


def holder(roles: DatabaseServerRoles) -> object:
    """Who holds the publisher lease now, read from the database."""
    with roles.engine.connect() as conn:
        row = conn.execute(select(roles.leases).where(roles.leases.c.name == PUBLISHER)).one()
    return row.holder


def test_elected_role_is_held_until_the_role_gated_job_ended(db: TestDatabase) -> None:
    """stop() resigns the database-elected role only after the running role-gated job ended."""
    roles = DatabaseServerRoles(
        db.url,
        table_prefix=db.table_prefix,
        touch_interval=timedelta(seconds=0.2),
        stale_timeout=timedelta(seconds=5),
        retention=timedelta(seconds=10),
    )
    started = threading.Event()
    at_job_end: list[object] = []

    def body(token: CancellationToken) -> None:
        started.set()
        token.wait()
        time.sleep(0.3)  # the job winds down for a moment after its token is cancelled
        at_job_end.append(holder(roles))

    job = TimedJob(
        ManualClock(),
        timedelta(seconds=0.1),  # a refused run is asked again a period later...
        delay=timedelta(0),
        ignored_delay=timedelta(0),  # ...until the first election round made this host SINGLE
        body=body,
    )
    host = JobHost([job], server_role=roles).start()
    try:
        assert started.wait(10)
        assert host.stop(timeout=10)
        after_stop = holder(roles)
    finally:
        host.stop()
        roles.dispose()
    assert ([roles.identity], None) == (at_job_end, after_stop)
