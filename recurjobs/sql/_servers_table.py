"""The election's tables and statements: who is alive (``<prefix>servers``), who publishes
(``<prefix>leases``).

The publisher is whoever holds the single ``publisher`` row of the leases table. Taking or
renewing it is one guarded UPDATE (``_claims.guarded_update``)::

    UPDATE <prefix>leases
       SET holder = :identity, token = :token, renewed_ms = <db now>, lease_ms = :stale_ms
     WHERE name = 'publisher'
       AND (token = :token OR token IS NULL
            OR <db now> - COALESCE(renewed_ms, 0) > COALESCE(lease_ms, 0))

The row holds one token, so the database can never name two publishers; the guard is judged
by the database on its own clock, so no host clock takes part. The lease lasts the *holder's*
``stale_timeout`` (``lease_ms``, written with each renewal), so a server configured with a
shorter timeout cannot cut a lease short that its holder still counts on. ``token`` is random
per :class:`~recurjobs.sql.DatabaseServerRoles` instance (``holder`` is only informational), so
even two processes misconfigured with the same identity cannot both hold the lease.

MySQL reports matched rows here, not changed ones (SQLAlchemy sets ``CLIENT.FOUND_ROWS``, see
``_claims``), so a renewal in the same millisecond as the previous one still counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    true,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from recurjobs.sql._bounds import bounded_waits
from recurjobs.sql._claims import guarded_update
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._shared import exclusive
from recurjobs.sql._tables import create_tables

__all__ = ["PUBLISHER", "ServerTables", "Touched", "bounded_waits"]

PUBLISHER = "publisher"
"""The name of the lease row whose holder is the scheduling publisher."""


@dataclass(frozen=True)
class Touched:
    """What one touch learned: whether we hold the lease, how many servers are alive, and
    which rows have outlived the retention."""

    holds_lease: bool
    active: int
    expired: tuple[str, ...]


class ServerTables:
    """The servers and leases tables of one prefix, and the statements of the election."""

    def __init__(self, metadata: MetaData, prefix: str) -> None:
        self.servers = Table(
            f"{prefix}servers",
            metadata,
            Column("identity", String(255), primary_key=True),
            Column("address", String(255), nullable=True),
            # Epoch milliseconds by the database clock.
            Column("registered_ms", BigInteger, nullable=False),
            Column("last_seen_ms", BigInteger, nullable=False),
            # False once the server stopped cleanly (it no longer counts as alive).
            Column("active", Boolean, nullable=False, default=True),
        )
        self.leases = Table(
            f"{prefix}leases",
            metadata,
            Column("name", String(64), primary_key=True),
            Column("holder", String(255), nullable=True),  # identity, for people and tools
            Column("token", String(64), nullable=True),  # what the guard compares
            Column("renewed_ms", BigInteger, nullable=True),
            Column("lease_ms", BigInteger, nullable=True),  # the holder's stale_timeout
        )

    def create(self, engine: Engine) -> None:
        """Create the tables and the free ``publisher`` row unless they exist.

        Safe when servers race: ``create_tables`` tolerates tables created meanwhile, and an
        ``IntegrityError`` on the row means another server inserted it first.
        """
        create_tables(engine, self.servers.metadata)
        try:
            with exclusive(engine), engine.begin() as conn:
                query = select(self.leases.c.name).where(self.leases.c.name == PUBLISHER)
                if conn.execute(query).first() is None:
                    conn.execute(insert(self.leases).values(name=PUBLISHER))
        except IntegrityError:
            pass

    def touch(
        self,
        conn: Connection,
        *,
        identity: str,
        address: str | None,
        token: str,
        stale_ms: int,
        retention_ms: int,
        campaign: bool = True,
    ) -> Touched:
        """Renew (or take) the lease if we may, mark ourselves alive and count the living.
        Without ``campaign`` (this server may not publish now: a process that is not its
        machine's main instance), the lease is given back if it is ours, and not taken; our
        row is kept seen but inactive, so we are not counted as a live server (the main
        instance of a lone machine is SINGLE, however many processes it runs).

        Lock order is lease row, then our own row; :meth:`resign` keeps the same order.
        """
        now = db_now_ms()
        lease, servers = self.leases.c, self.servers.c
        if campaign:
            may_hold = or_(
                lease.token == token,
                lease.token.is_(None),
                now - func.coalesce(lease.renewed_ms, 0) > func.coalesce(lease.lease_ms, 0),
            )
            held = guarded_update(
                conn,
                self.leases,
                and_(lease.name == PUBLISHER, may_hold),
                {"holder": identity, "token": token, "renewed_ms": now, "lease_ms": stale_ms},
            )
        else:
            guarded_update(
                conn,
                self.leases,
                and_(lease.name == PUBLISHER, lease.token == token),
                {"holder": None, "token": None},
            )
            held = False
        seen = {"last_seen_ms": now, "active": campaign, "address": address}
        if not guarded_update(conn, self.servers, servers.identity == identity, seen):
            conn.execute(insert(self.servers).values(identity=identity, registered_ms=now, **seen))
        alive = and_(servers.active == true(), now - servers.last_seen_ms <= stale_ms)
        count = conn.execute(select(func.count()).select_from(self.servers).where(alive))
        expired = conn.execute(select(servers.identity).where(self._expired(retention_ms)))
        return Touched(held, int(count.scalar_one()), tuple(expired.scalars()))

    def resign(self, conn: Connection, *, identity: str, token: str) -> None:
        """Give the lease back (if still ours) and mark our row inactive."""
        lease = self.leases.c
        guarded_update(
            conn,
            self.leases,
            and_(lease.name == PUBLISHER, lease.token == token),
            {"holder": None, "token": None, "renewed_ms": None, "lease_ms": None},
        )
        guarded_update(conn, self.servers, self.servers.c.identity == identity, {"active": False})

    def prune(self, conn: Connection, identity: str, retention_ms: int) -> bool:
        """Delete the row of ``identity`` if it is still unseen for longer than the retention."""
        where = and_(self.servers.c.identity == identity, self._expired(retention_ms))
        return conn.execute(delete(self.servers).where(where)).rowcount == 1

    def _expired(self, retention_ms: int) -> ColumnElement[bool]:
        return db_now_ms() - self.servers.c.last_seen_ms > retention_ms
