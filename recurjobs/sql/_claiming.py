"""Claiming rows through the store: one row by its guarded UPDATE, or a batch (``_batch``).

A claim that waits out ``statement_timeout`` on a row another transaction holds locked is "not
claimed this time", not an error: the wait is not repeated, the next poll tries again. The
store remembers such rows (``JobStore.locked_rows``) so that the first timeout of a row logs a
WARNING and the ones after it, while the lock lasts, only DEBUG; a claim that gets through
forgets the row again.

The claim id of each claim is made by the store (``JobStore.try_claim``, ``try_claim_many``)
and handed in: the functions here write it, they never choose it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_

from recurjobs._guard import log_quietly
from recurjobs.sql._claims import claimable, guarded_update
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._retry import is_lock_timeout
from recurjobs.sql._rows import Claim, ms
from recurjobs.sql._urls import scrub

if TYPE_CHECKING:
    from recurjobs.sql._store import JobStore

__all__ = ["check_limit", "claim_many", "claim_one"]

logger = logging.getLogger("recurjobs.sql")


def claim_one(store: JobStore, claim: Claim, *, owner: str, fire_ms: int | None) -> bool:
    """Write ``claim`` into its row if the row is claimable: the rest of
    :meth:`JobStore.try_claim` (documented there). False when it did not land, or the row
    stayed locked for ``statement_timeout``."""
    c = store.jobs.c
    now = db_now_ms()
    values = {
        "running": True,
        "owner": owner[:255],
        "claim_id": claim.claim_id,
        "last_attempted_run_ms": now,
        "last_alive_ms": now,
        "lease_ms": ms(claim.lease),
        "due_now": False,
    }
    where = and_(c.name == claim.name, claimable(store.jobs, claim.claim_id, fire_ms))
    try:
        won = store._step(
            "claiming a job",
            lambda conn: guarded_update(conn, store.jobs, where, values),
            single=True,
        )
    except Exception as exc:
        if not is_lock_timeout(exc):
            raise
        _report_locked(store, claim.name, exc)
        return False
    store._locked.discard(claim.name)
    return won


def check_limit(limit: int | None) -> None:
    """Refuse a ``limit`` of :meth:`JobStore.try_claim_many` that is not None or an int >= 1."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise TypeError(f"limit must be an int or None, got {limit!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit!r}")


def claim_many(
    store: JobStore,
    leases: Mapping[str, timedelta],
    *,
    owner: str,
    limit: int | None,
    claim_id: str,
) -> list[Claim] | None:
    """Claim up to ``limit`` rows of ``leases`` with the batch's ``claim_id``: the rest of
    :meth:`JobStore.try_claim_many` (documented there)."""
    as_ms = {lease: ms(lease) for lease in set(leases.values())}  # usually one lease
    leases_ms = {name: as_ms[lease] for name, lease in leases.items()}
    most = len(leases_ms) if limit is None else limit
    try:
        won = store._step(
            "claiming jobs",
            lambda conn: store._batches.claim(
                conn, leases_ms, limit=most, claim_id=claim_id, owner=owner
            ),
        )
    except Exception as exc:
        if not is_lock_timeout(exc):
            raise
        log_quietly(
            logging.DEBUG,
            "a batch of claims on %s waited out a lock: %s",
            store.url,
            exc,
            on=logger,
        )
        return None
    store._locked.difference_update(won)
    return [Claim(name=name, claim_id=claim_id, lease=leases[name]) for name in won]


def _report_locked(store: JobStore, name: str, exc: BaseException) -> None:
    """Log a claim that timed out on a locked row: WARNING once, DEBUG while it lasts."""
    level = logging.DEBUG if name in store._locked else logging.WARNING
    store._locked.add(name)
    log_quietly(
        level,
        "the row of %s on %s stayed locked by another transaction for %gs; "
        "not claimed this time (%s)",
        name,
        store.url,
        store.statement_timeout,
        scrub(str(getattr(exc, "orig", None) or exc).splitlines()[0][:200], store.engine),
        on=logger,
    )
