"""Fresh Django database connections around every run of every job.

Django ties a connection to a thread and closes stale ones between requests
(``close_old_connections`` on ``request_started``/``request_finished``). Job threads see no
requests, so a job that runs once a day would keep a connection the server closed hours ago
("server has gone away", "terminating connection"). The host's notifications are published on
the thread that runs the job, so two subscriptions give each run the request treatment:

- before the run (``JobExecuting``): ``close_old_connections()``, then every connection still
  open is tried (``is_usable()``) and closed when the server dropped it, so the run's first
  query opens a new one instead of failing;
- after the run (``JobExecuted``/``JobFailed``/``JobCanceled``): ``close_old_connections()``
  for recurring jobs (``CONN_MAX_AGE`` is honoured between runs); a distributed run's
  connections are closed, since its thread then waits for a run of any other distributed job
  (``recurjobs.sql._workers``) or ends.
"""

from __future__ import annotations

from recurjobs._host import JobHost, _is_distributed
from recurjobs._notifications import (
    JobCanceled,
    JobExecuted,
    JobExecuting,
    JobFailed,
    JobNotification,
    Subscription,
)

__all__ = ["close_connections_around_runs"]


def close_connections_around_runs(host: JobHost) -> list[Subscription]:
    """Subscribe the before/after handlers on ``host``; returns the subscriptions."""
    return [
        host.subscribe(JobExecuting, _before_run),
        host.subscribe(JobExecuted, _after_run),
        host.subscribe(JobFailed, _after_run),
        host.subscribe(JobCanceled, _after_run),
    ]


def _before_run(notification: JobNotification) -> None:
    from django.db import close_old_connections, connections

    close_old_connections()
    for connection in connections.all(initialized_only=True):
        if connection.connection is None or connection.in_atomic_block:
            continue
        if not connection.is_usable():
            connection.close()


def _after_run(notification: JobNotification) -> None:
    from django.db import close_old_connections, connections

    if _is_distributed(notification.job):
        connections.close_all()
    else:
        close_old_connections()
