"""The run history of one :class:`~recurjobs.JobHost`: recorder, writer, pruning job, reads.

``JobHost(..., history=...)`` builds a :class:`HostHistory` (``recurjobs._history.attach``),
which attaches the recorder to the host's run threads (``recurjobs._runsink``) and registers
the pruning job, a distributed job named ``recurjobs.history.prune`` (so a cluster prunes
once, not once per host). The host then calls, in its own order:
:meth:`HostHistory.add_tables` (the tables are created with the jobs table at ``start()``),
:meth:`HostHistory.start` (the writer thread) and, in its stop sequence once the runs have
ended, :meth:`HostHistory.close` (flush, dispose).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Engine

from recurjobs._guard import log_quietly
from recurjobs._history import PRUNE_JOB_NAME, HistorySettings, RunRecord
from recurjobs._historyrec import HistoryQueue, Recorder
from recurjobs._jobs import DistributedJob, job_name
from recurjobs._token import CancellationToken
from recurjobs.sql._history import HistoryTables, prune_history, read_history
from recurjobs.sql._history_table import meta_table, runs_table
from recurjobs.sql._historywriter import HistoryWriter
from recurjobs.sql._retry import RetryPolicy
from recurjobs.sql._rows import ms
from recurjobs.sql._shared import is_shared
from recurjobs.sql._store import JobStore
from recurjobs.sql._urls import make_engine

if TYPE_CHECKING:
    from recurjobs._host import JobHost
    from recurjobs.sql._integration import HostSql

__all__ = ["QUEUE_CAPACITY", "HistoryPruneJob", "HostHistory", "host_history"]

logger = logging.getLogger("recurjobs.history")

QUEUE_CAPACITY = 10_000
"""Records that may wait for the database before new ones are dropped."""
PRUNE_PERIOD = timedelta(hours=1)


class HistoryPruneJob(DistributedJob):
    """Deletes history rows past ``keep`` and beyond ``max_rows_per_job``; hourly, and once
    soon after each host starts. Registered by the host itself; its runs are not recorded, and
    take no ``max_concurrent_jobs`` slot (``_poller.HOUSEKEEPING``)."""

    _recurjobs_housekeeping: ClassVar[bool] = True

    def __init__(self, history: HostHistory) -> None:
        super().__init__(name=PRUNE_JOB_NAME, period=PRUNE_PERIOD)
        self._history = history

    def execute(self, token: CancellationToken) -> None:
        self._history.prune(token)


class HostHistory:
    """Everything history does for one host (see the module docstring)."""

    def __init__(self, host: JobHost, settings: HistorySettings) -> None:
        self._host = host
        self.settings = settings
        self.tables = HistoryTables(host.settings.table_prefix)
        self.prune_job = HistoryPruneJob(self)
        self.recorder = Recorder(
            record_ignored=settings.record_ignored,
            skip=lambda job: job is self.prune_job,
            name=job_name,
        )
        self.writer: HistoryWriter | None = None
        self._store: JobStore | None = None  # the writer's (and pruning's) store
        self._owns_store = False
        self._reader: Engine | None = None
        self._lock = threading.Lock()
        host.publisher.sink = self.recorder  # the run threads tell it of every run
        host.add(self.prune_job)

    # ---------------------------------------------------------------- life cycle
    def add_tables(self, store: JobStore) -> None:
        """Put the history tables beside the jobs table, so ``start()`` creates them too."""
        prefix = self.tables.prefix
        if f"{prefix}runs" not in store.metadata.tables:
            runs_table(store.metadata, prefix)
            meta_table(store.metadata, prefix)

    def start(self, sql: HostSql) -> None:
        """Start recording: a fresh queue and writer (also after a fork)."""
        store = sql.store
        self._owns_store = not is_shared(store.engine)
        if self._owns_store:
            # Its own pool: history writes never wait for a connection behind claims.
            retry = RetryPolicy(max_time=2.0, max_attempts=3, max_wait=0.5)
            source = self._host.database if isinstance(self._host.database, str) else store.engine
            store = JobStore(
                source,
                table_prefix=self.tables.prefix,
                retry=retry,
                statement_timeout=sql.statement_timeout,
            )
        self._store = store
        queue = HistoryQueue(QUEUE_CAPACITY)
        self.writer = HistoryWriter(
            queue=queue, store=store, tables=self.tables, host=sql.owner, prepare=self._prepare
        )
        self.recorder.queue = queue
        self.writer.start()

    def _prepare(self, store: JobStore) -> None:
        """At the writer's start: the schema version row, and a prune run asked for now."""
        self.tables.ensure_version(store._step)
        store.ensure([self.prune_job])
        store.trigger(PRUNE_JOB_NAME)

    def close(self, deadline: float | None) -> bool:
        """Flush what is queued by ``deadline`` (``time.monotonic()``), then close the pools
        history made. True when everything queued was written."""
        writer = self.writer
        flushed = True if writer is None else writer.close(deadline)
        with self._lock:
            if self._store is not None and self._owns_store:
                self._store.dispose()
            reader = self._reader
            if reader is not None and reader is not self._host.database and not is_shared(reader):
                reader.dispose()
        return flushed

    # ----------------------------------------------------------------- pruning
    def prune(self, token: CancellationToken) -> int:
        """Delete what ``keep`` and ``max_rows_per_job`` allow no more; return how many."""
        store = self._store
        if store is None:
            return 0
        deleted: int = prune_history(
            store._step,
            self.tables.runs,
            keep_ms=ms(self.settings.keep),
            max_rows_per_job=self.settings.max_rows_per_job,
            cancelled=token.is_cancelled,
        )
        if deleted:
            log_quietly(
                logging.INFO,
                "run history: pruned %d row(s) from %s",
                deleted,
                self.tables.runs.name,
                on=logger,
            )
        return deleted

    # ----------------------------------------------------------------- reading
    def reader(self) -> Engine | None:
        """The engine reads use (made once, kept; None: an in-memory database not started)."""
        with self._lock:
            if self._reader is None:
                self._reader = _reader_for(self._host)
            return self._reader


def host_history(host: JobHost, job: object, limit: int) -> list[RunRecord]:
    """``JobHost.history()``: the newest runs of ``job`` (or of every job) from the table."""
    name = history_name(host, job)
    prefix = host.settings.table_prefix
    history: HostHistory | None = getattr(host, "_history", None)
    if history is not None:
        engine = history.reader()
        return [] if engine is None else read_history(engine, prefix, job=name, limit=limit)
    engine = _reader_for(host)
    if engine is None:
        return []
    try:
        return read_history(engine, prefix, job=name, limit=limit)
    finally:
        if engine is not host.database:
            engine.dispose()


def history_name(host: JobHost, job: object) -> str | None:
    """The name ``job`` (None, a name, a job class or instance) has in the history."""
    if job is None or isinstance(job, str):
        return job
    if isinstance(job, type):
        names = {job_name(j) for j in host.jobs if type(j) is job}
        if len(names) > 1:
            raise ValueError(
                f"{job.__name__} is registered {len(names)} times with different names; "
                "pass the instance or the name"
            )
        if names:
            return names.pop()
        own = getattr(job, "name", None)
        return own if isinstance(own, str) else job.__name__
    if job in host.jobs or _looks_like_a_job(job):
        return job_name(job)
    raise TypeError(f"job must be a job class, instance or name, got {job!r}")


def _looks_like_a_job(job: object) -> bool:
    """Whether ``job`` has a ``run`` or ``execute`` method (a job of another host, say)."""
    return any(callable(getattr(job, method, None)) for method in ("run", "execute"))


def _reader_for(host: Any) -> Engine | None:
    database = host.database
    if isinstance(database, Engine):
        return database
    sql = getattr(host, "_sql", None)
    if sql is not None and is_shared(sql.store.engine):
        return sql.store.engine  # type: ignore[no-any-return]
    engine = make_engine(database)
    if is_shared(engine):  # a new in-memory database would be empty
        engine.dispose()
        return None
    return engine
