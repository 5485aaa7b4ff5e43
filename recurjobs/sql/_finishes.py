"""Fenced finishes, grouped: runs that end together hand their rows back in one transaction.

A finish stamps ``last_run`` and frees the row, fenced by ``name`` and ``claim_id``: a claim
taken over (after going stale) is left to its new owner. Finishes called by several run
threads at once go through one :class:`~recurjobs.sql._group.Grouped` batch:

- PostgreSQL and MySQL/MariaDB: two statements for the whole group. ``SELECT name ... WHERE
  (name, claim_id) IN (<the group's claims>) FOR UPDATE`` locks the rows still carrying their
  claim and says which they are; ``UPDATE ... WHERE (name, claim_id) IN (<those>)`` frees them.
  The UPDATE carries the fence itself; the locks only make the answer exact (a locked row
  cannot change between the two statements).
- SQLite (whose writer holds the whole file anyway): one fenced UPDATE per claim, in one
  transaction.

When the group waits out a row lock held by another transaction (the statement bound), each
finish of the group runs on its own, so only that row's finish fails (and is retried later by
the heartbeat thread, as any failed finish). On SQLite (``whole_file_locks``) the lock the
group waited out is the whole file's, which every finish alone would wait out once more (a
group of twenty would answer after twenty-one bounds): every finish of the group fails at once
and is retried by the heartbeat thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, tuple_, update

from recurjobs.sql._batch import by_primary_key
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._group import Grouped
from recurjobs.sql._retry import is_lock_timeout
from recurjobs.sql._rows import Claim

__all__ = ["Finishes"]

Step = Callable[..., Any]
"""``JobStore._step``: (what, fn(conn), single=...) -> fn's result, retried and bounded."""


class Finishes:
    """The grouped finishes of one jobs table, run through ``step`` (the store's bounded,
    retried transaction); ``whole_file_locks``: the database locks the whole file (SQLite)."""

    def __init__(self, jobs: Table, step: Step, *, whole_file_locks: bool = False) -> None:
        self.jobs = jobs
        self._step = step
        self._whole_file_locks = whole_file_locks
        c = jobs.c
        freed = {"running": False, "owner": None, "claim_id": None, "last_run_ms": db_now_ms()}
        self._one = (
            update(jobs)
            .where(c.name == bindparam("f_name"), c.claim_id == bindparam("f_claim"))
            .values(freed)
        )
        held = tuple_(c.name, c.claim_id).in_(bindparam("f_pairs", expanding=True))
        self._lock = by_primary_key(select(c.name).where(held), jobs).with_for_update()
        self._all = by_primary_key(update(jobs).where(held).values(freed), jobs)
        self._grouped: Grouped[Claim, bool | Exception] = Grouped(self._finish_all)

    def warm_up(self, conn: Connection) -> None:
        """Run the finish statements on no rows (their compiled forms get cached)."""
        conn.execute(self._one, {"f_name": "", "f_claim": ""})
        if conn.dialect.name != "sqlite":
            conn.execute(self._lock, {"f_pairs": []})
            conn.execute(self._all, {"f_pairs": []})

    def finish(self, claim: Claim) -> bool:
        """Hand the row of ``claim`` back if it still carries the claim; whether it did."""
        landed = self._grouped.call(claim)
        if isinstance(landed, Exception):
            raise landed
        return landed

    def _finish_all(self, claims: Sequence[Claim]) -> list[bool | Exception]:
        """The answers to ``claims``: landed, refused by the fence, or the exception."""
        if len(claims) > 1:
            try:
                landed = self._step("finishing runs", lambda conn: self._together(conn, claims))
                return [claim.name in landed for claim in claims]
            except Exception as exc:
                # A lock on the whole file (SQLite): each finish alone would wait it out again.
                if not is_lock_timeout(exc) or self._whole_file_locks:
                    return [exc] * len(claims)
        answers: list[bool | Exception] = []
        for claim in claims:
            try:
                answers.append(bool(self._step("finishing a run", self._alone(claim), single=True)))
            except Exception as exc:
                answers.append(exc)
        return answers

    def _alone(self, claim: Claim) -> Callable[[Connection], bool]:
        def finish(conn: Connection) -> bool:
            params = {"f_name": claim.name, "f_claim": claim.claim_id}
            return bool(conn.execute(self._one, params).rowcount == 1)

        return finish

    def _together(self, conn: Connection, claims: Sequence[Claim]) -> set[str]:
        """Finish ``claims`` in the caller's transaction; the names whose finish landed."""
        ordered = sorted(claims, key=lambda claim: claim.name)  # one lock order for everyone
        if conn.dialect.name == "sqlite":
            return {
                claim.name
                for claim in ordered
                if conn.execute(
                    self._one, {"f_name": claim.name, "f_claim": claim.claim_id}
                ).rowcount
                == 1
            }
        pairs = [(claim.name, claim.claim_id) for claim in ordered]
        landed = set(conn.scalars(self._lock, {"f_pairs": pairs}))
        if landed:
            mine = [pair for pair in pairs if pair[0] in landed]
            conn.execute(self._all, {"f_pairs": mine})
        return landed
