"""The history writer: one daemon thread that empties the history queue into the database.

It sleeps on the queue's event (no timer, no host clock): the first record after a quiet spell
is written at once; under load it takes what gathered during a one-second real-time pause
after each write, so a busy host writes one large batch about every second rather than a
transaction per run (each transaction has a fixed cost; a row may show up a second after its
run).

A slow or absent database only ever delays this thread. While writes fail with a transient
fault (a lost connection, a lock wait) the batch is kept and retried with a growing pause;
records keep queuing meanwhile up to the queue's bound, past which the run threads drop them
(counted, and logged here once per burst). A batch the database refuses for good (not a
transient fault) is split in halves, down to the one record it cannot take, which is logged and
dropped: one bad record neither stops the history nor takes other runs with it. A batch
whose ``COMMIT`` was applied but whose answer was lost (the connection died just then) is
found in the table by the next attempt and not written twice (``write_batch(again=True)``).

:meth:`HistoryWriter.close` lets the queue take no more records, then waits for the thread to
write what is queued, until the stop deadline; records still unwritten then are logged as lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection

from recurjobs._guard import log_quietly
from recurjobs._historyrec import HistoryQueue, Record
from recurjobs.sql._history import DbClock, HistoryTables, RunKey, write_batch
from recurjobs.sql._retry import is_transient
from recurjobs.sql._runs import first_line
from recurjobs.sql._store import JobStore

__all__ = ["HistoryWriter"]

logger = logging.getLogger("recurjobs.history")

BATCH = 2000  # records per transaction at most
PACE = 1.0  # real seconds between two writes while records keep coming
_FIRST_BACK_OFF = 0.2
_MAX_BACK_OFF = 5.0
# Finding the records of a refused batch: 32 writes at first (a bad record is found in about
# 22 of a 2,000-record batch), and 2 more for every part that lands, since a part that lands
# shows the refusal is the record's, not the table's (several bad records, spread over the
# batch, cost about twice as many writes as land); never more than 256 writes per batch.
_SPLIT_WRITES = 32
_SPLIT_CREDIT = 2
_SPLIT_CAP = 256


class HistoryWriter:
    """Writes ``queue`` into ``tables.runs`` through ``store`` (its engine, bounds and retry).

    ``prepare(store)`` runs once before the first write (and is retried before later batches
    until it succeeds): the schema version row, the pruning job's row.
    """

    def __init__(
        self,
        *,
        queue: HistoryQueue,
        store: JobStore,
        tables: HistoryTables,
        host: str,
        prepare: Callable[[JobStore], None] | None = None,
    ) -> None:
        self.queue = queue
        self.store = store
        self.tables = tables
        self.host = host
        self._prepare = prepare
        self._prepared = prepare is None
        self._stop = threading.Event()  # close() was called: cut pauses short
        self._deadline: float | None = None
        self._open: dict[RunKey, int] = {}  # (job, claim id) -> started_ms of start rows written
        self._clock = DbClock()  # places distributed runs; kept so batches agree
        self.written = 0
        self.lost = 0  # records taken from the queue but never written
        self._failing_since: float | None = None
        self._thread: threading.Thread | None = None
        self._in_flight = 0  # records of the batch being written (taken from the queue)
        self._announced: int | None = None  # the lost count close() logged, if it did

    def start(self) -> None:
        """Start the ``recurjobs-history`` daemon thread."""
        self._thread = threading.Thread(target=self._main, name="recurjobs-history", daemon=True)
        self._thread.start()

    def close(self, deadline: float | None) -> bool:
        """Take no more records; write what is queued until ``deadline`` (``time.monotonic()``;
        None: no limit). True when everything queued was written (or refused) in time."""
        self._deadline = deadline
        self._stop.set()
        self.queue.close()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return not self.queue
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            # The queue and the batch still being tried: what is lost unless that batch lands
            # in its last attempt. The thread, giving up, logs only a different count.
            self._announced = left = len(self.queue) + self._in_flight
            log_quietly(
                logging.WARNING,
                "run history: %d record(s) were not written before the stop deadline",
                left,
                on=logger,
            )
            return False
        return True

    # ------------------------------------------------------------------ the thread
    def _main(self) -> None:
        try:
            self._try_prepare()
            while self._step():
                pass
        except BaseException:  # a bug: say so; the run threads are not affected
            log_quietly(
                logging.ERROR,
                "the run history writer failed; no more runs are recorded",
                exc_info=True,
                on=logger,
            )
        finally:
            self._report_drops()

    def _step(self) -> bool:
        """Wait for records, write one batch; False when closed and empty (or out of time)."""
        queue = self.queue
        queue.wake.clear()
        if not queue:
            if self._stop.is_set():
                return False
            queue.wake.wait()
            return True
        if self._past_deadline():
            self._give_up(len(queue))
            return False
        batch = queue.take(BATCH)
        self._in_flight = len(batch)
        self._report_drops()
        if not self._prepared:
            self._try_prepare()
        self._write(batch)
        self._in_flight = 0
        if not self._stop.is_set() and len(queue) < BATCH:
            self._stop.wait(PACE)  # let a batch gather (close() ends the pause)
        return True

    def _write(self, batch: list[Record]) -> None:
        """Write ``batch``, retrying transient faults until it lands or time is up; a batch
        the database refuses for good is split (:meth:`_refused`)."""
        result = self._land(batch)
        if result is _OUT_OF_TIME:
            self._give_up(len(batch))
        elif isinstance(result, Exception):
            self._refused(batch, result)

    def _land(self, batch: list[Record]) -> Exception | _OutOfTime | None:
        """Write ``batch``, retrying transient faults: None when written, the error when the
        database refused it for good, ``_OUT_OF_TIME`` when the stop deadline passed first
        (nothing counted yet: the caller gives up)."""
        back_off = _FIRST_BACK_OFF
        attempts = 0

        def write(conn: Connection) -> dict[RunKey, int | None]:
            nonlocal attempts
            attempts += 1  # a failed attempt may have committed: the next one checks first
            return write_batch(
                conn,
                self.tables.runs,
                batch,
                host=self.host,
                open_rows=self._open,
                again=attempts > 1,
                clock=self._clock,
            )

        while True:
            try:
                changes = self.store._step("writing run history", write)
            except Exception as exc:
                if not is_transient(exc):
                    return exc
                self._failing(exc)
                if self._past_deadline():
                    return _OUT_OF_TIME
                self._pause(back_off)
                back_off = min(back_off * 2, _MAX_BACK_OFF)
                continue
            self._recovered()
            self.written += len(batch)
            for run, started in changes.items():
                if started is None:
                    self._open.pop(run, None)
                else:
                    self._open[run] = started
            return None

    def _refused(self, batch: list[Record], refusal: Exception) -> None:
        """The database refused ``batch`` for good: write its halves apart, and theirs, so
        only the records it cannot take are dropped (a batch holds many jobs' runs). The
        writes spent on it are bounded: ``_SPLIT_WRITES``, plus ``_SPLIT_CREDIT`` for each
        part that lands, up to ``_SPLIT_CAP``. A refusal of every record (a dropped table, say)
        lands nothing and stops after ``_SPLIT_WRITES``; a few bad records spread over the
        batch are all found. One line is logged for the whole batch; parts the stop deadline
        leaves unwritten are given up (and logged) as such, not as refused."""
        parts = _halves(batch)
        lost = 1 if len(batch) == 1 else 0
        out_of_time = 0
        writes, budget = 0, _SPLIT_WRITES
        while parts:
            part = parts.pop(0)
            if self._past_deadline():
                out_of_time += len(part)
                continue
            if writes >= budget:
                lost += len(part)
                continue
            writes += 1
            result = self._land(part)
            if result is None:
                budget = min(budget + _SPLIT_CREDIT, _SPLIT_CAP)
            elif result is _OUT_OF_TIME:
                out_of_time += len(part)
            elif len(part) == 1:
                lost += 1
            else:
                parts[:0] = _halves(part)
        if out_of_time:
            self._give_up(out_of_time)
        self.lost += lost
        if not lost and out_of_time:
            return  # not taken in parts: the rest was given up (logged just now)
        if not lost:
            log_quietly(
                logging.WARNING,
                "run history: the database refused a batch of %d record(s), then took it in "
                "parts: %s",
                len(batch),
                first_line(refusal, self.store.engine),
                on=logger,
            )
            return
        log_quietly(
            logging.ERROR,
            "run history: the database refused %d of %d record(s) of a batch; they are "
            "dropped: %s",
            lost,
            len(batch),
            first_line(refusal, self.store.engine),
            on=logger,
        )

    def _try_prepare(self) -> None:
        if self._prepared or self._prepare is None:
            return
        try:
            self._prepare(self.store)
        except Exception as exc:
            log_quietly(
                logging.DEBUG,
                "run history: preparing failed, trying again later: %s",
                exc,
                on=logger,
            )
            return
        self._prepared = True

    # ----------------------------------------------------------------- plumbing
    def _past_deadline(self) -> bool:
        deadline = self._deadline
        return self._stop.is_set() and deadline is not None and time.monotonic() >= deadline

    def _pause(self, seconds: float) -> None:
        """Back off; cut short at close(), but while closing still bounded by the deadline."""
        if not self._stop.is_set():
            self._stop.wait(seconds)
            return
        deadline = self._deadline
        left = seconds if deadline is None else min(seconds, deadline - time.monotonic())
        if left > 0:
            time.sleep(min(left, 0.5))

    def _failing(self, exc: BaseException) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log_quietly(
                logging.WARNING,
                "run history: writing to %s failed; records wait in the queue (up to %d) and "
                "the write is retried: %s",
                self.store.url,
                self.queue.capacity,
                first_line(exc, self.store.engine),
                on=logger,
            )

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log_quietly(
                logging.INFO,
                "run history: writing to %s works again after %.1f s",
                self.store.url,
                time.monotonic() - self._failing_since,
                on=logger,
            )
            self._failing_since = None

    def _give_up(self, count: int) -> None:
        left = count + len(self.queue)
        self.queue.take(len(self.queue))
        self.lost += left
        # close() may have logged this count already (it returned at the deadline while this
        # thread was still trying): one WARNING per count, a DEBUG line for the repeat.
        level = logging.DEBUG if left == self._announced else logging.WARNING
        log_quietly(
            level,
            "run history: %d record(s) could not be written before the stop deadline and are lost",
            left,
            on=logger,
        )

    def _report_drops(self) -> None:
        dropped = self.queue.take_dropped()
        if dropped:
            log_quietly(
                logging.WARNING,
                "run history: the queue was full (%d records waiting for the database); "
                "%d record(s) were dropped",
                self.queue.capacity,
                dropped,
                on=logger,
            )


class _OutOfTime:
    """What :meth:`HistoryWriter._land` returns when the stop deadline passed first."""


_OUT_OF_TIME = _OutOfTime()


def _halves(batch: list[Record]) -> list[list[Record]]:
    if len(batch) < 2:
        return []
    half = len(batch) // 2
    return [batch[:half], batch[half:]]
