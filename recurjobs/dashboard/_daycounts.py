"""The statements behind the runs and failures of the last day on the jobs page.

:class:`~recurjobs.dashboard._counts.RunCounter` decides what to count (remembered buckets,
ragged ends, rows written late); this module counts it, in at most two statements per load:
the buckets not remembered yet (about one every five minutes), and one ``UNION ALL`` of the
ragged ends, the late rows and the day's failures.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    String,
    Table,
    and_,
    any_,
    bindparam,
    func,
    literal,
    select,
    union_all,
)

from recurjobs.dashboard._counts import BUCKET_MS, DAY_MS, Late, RunCounter
from recurjobs.sql._clockexpr import int_div

__all__ = ["DayCounts"]


class DayCounts:
    """Runs per job and failures of the last day in the history table ``runs``."""

    def __init__(self, dialect: str, runs: Table) -> None:
        self.dialect = dialect
        self.runs = runs
        self.counter = RunCounter()

    def counts(
        self, conn: Any, names: Collection[str], now_ms: int, top_id: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Runs of ``names`` started in the day before ``now_ms``, and failures of every job
        of that day; ``top_id`` is the history's highest id as this load began."""
        failures: dict[str, int] = {}

        def ranges(
            names: Collection[str], spans: Sequence[tuple[int, int]], late: Late | None
        ) -> Any:
            # The day's failures ride along in the same statement: one round trip.
            counts, late_counts, failed = self._ranges(conn, names, spans, late, now_ms - DAY_MS)
            failures.update(failed)
            return counts, late_counts

        runs = self.counter.runs(
            names,
            now_ms,
            top_id,
            lambda n, a, b, upto: self._buckets(conn, n, a, b, upto),
            ranges,
        )
        return runs, failures

    def _buckets(
        self, conn: Any, names: Collection[str], start_ms: int, end_ms: int, upto_id: int
    ) -> dict[tuple[str, int], int]:
        r = self.runs.c
        bucket = self._bucket()
        query = (
            select(r.job, bucket, func.count())
            .where(
                self._one_of(r.job, names),
                r.started_ms >= start_ms,
                r.started_ms < end_ms,
                r.id <= upto_id,
            )
            .group_by(r.job, bucket)
        )
        return {(job, int(b)): int(n) for job, b, n in conn.execute(query)}

    def _ranges(
        self,
        conn: Any,
        names: Collection[str],
        spans: Sequence[tuple[int, int]],
        late: Late | None,
        failed_since_ms: int,
    ) -> tuple[dict[str, int], dict[tuple[str, int, bool], int], dict[str, int]]:
        """Runs of ``names`` started in each span, the ``late`` rows by job and bucket (split
        at ``late.fold_to``), and failures started after ``failed_since_ms``, in one
        statement. Each span is a branch of its own: PostgreSQL plans an OR of ranges as a
        slow bitmap scan, while each range alone is an index-only scan of ``(job,
        started_ms, id)``; late rows are found by the primary key (their only id range;
        no job filter, which would lure the planner onto the job index); failures use
        ``(outcome, started_ms)``."""
        r = self.runs.c
        zero = literal(0, BigInteger()).label("bucket")
        branches = [
            select(literal("r").label("kind"), r.job, zero, func.count().label("n"))
            .where(self._one_of(r.job, names), r.started_ms >= low, r.started_ms < high)
            .group_by(r.job)
            for low, high in spans
        ]
        if late is not None:
            parts = [("l", r.id > late.fold_to)]  # rows that stay above high
            if late.fold_to > late.above:  # rows that join the remembered buckets
                parts.append(("m", and_(r.id > late.above, r.id <= late.fold_to)))
            for kind, ids in parts:
                bucket = self._bucket()
                branches.append(
                    select(literal(kind).label("kind"), r.job, bucket, func.count())
                    .where(ids, r.started_ms >= late.start_ms, r.started_ms < late.end_ms)
                    .group_by(r.job, bucket)
                )
        branches.append(
            select(literal("f").label("kind"), r.job, zero, func.count().label("n"))
            .where(r.outcome == "failed", r.started_ms > failed_since_ms)
            .group_by(r.job)
        )
        counts: dict[str, int] = {}
        late_counts: dict[tuple[str, int, bool], int] = {}
        failures: dict[str, int] = {}
        for kind, job, bucket, count in conn.execute(union_all(*branches)):
            if kind in ("l", "m"):
                late_counts[(job, int(bucket), kind == "m")] = int(count)
                continue
            target = counts if kind == "r" else failures
            target[job] = target.get(job, 0) + int(count)
        return counts, late_counts, failures

    def _bucket(self) -> Any:
        """``started_ms // BUCKET_MS``, the number of a run's five-minute bucket (one object
        per statement, for its SELECT and its GROUP BY: PostgreSQL matches them by parameter)."""
        return int_div(self.runs.c.started_ms, literal(BUCKET_MS, BigInteger())).label("bucket")

    def _one_of(self, column: Any, names: Collection[str]) -> Any:
        """``column IN (names)``; on PostgreSQL ``column = ANY(:array)``, one parameter instead
        of hundreds (the driver's parsing of a long parameter list costs more than the query)."""
        if self.dialect == "postgresql":
            return column == any_(
                bindparam("names", sorted(names), type_=ARRAY(String()), unique=True)
            )
        return column.in_(sorted(names))
