"""One connection for everyone: the in-memory SQLite database.

An in-memory SQLite database exists only inside the connection that made it, so its engine's
pool (``StaticPool``) hands that same connection to every caller at once. Two threads using it
together share one transaction: a history read that ends (and so rolls back) in the middle of a
claim undoes the claim, and a job stops running without a word. Every recurjobs use of such an
engine therefore holds :func:`exclusive` for the whole use: the stores' steps, history reads,
the election, the dashboard and the start-up checks. Other engines are not affected.

The lock belongs to the engine's pool, which every engine derived from it shares
(``engine.execution_options()``), so the stores, the history reader and the election of one host
all take the same lock. It is reentrant: a thread that already holds it is never blocked by it.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator

from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import Pool

__all__ = ["exclusive", "in_memory", "is_shared", "shared_lock"]

_locks: weakref.WeakKeyDictionary[Pool, threading.RLock] = weakref.WeakKeyDictionary()
_registry = threading.Lock()


def in_memory(url: URL) -> bool:
    """Whether ``url`` is an in-memory SQLite database (``sqlite://``, ``sqlite:///:memory:``)."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def is_shared(engine: Engine) -> bool:
    """Whether ``engine`` is an in-memory SQLite database (one connection every user shares)."""
    return in_memory(engine.url)


def shared_lock(engine: Engine) -> threading.RLock | None:
    """The lock every use of ``engine``'s one connection holds; None for any other engine."""
    if not is_shared(engine):
        return None
    with _registry:
        lock = _locks.get(engine.pool)
        if lock is None:
            lock = _locks[engine.pool] = threading.RLock()
        return lock


@contextlib.contextmanager
def exclusive(engine: Engine) -> Iterator[None]:
    """Hold ``engine``'s shared-connection lock for the block (nothing for other engines)."""
    lock = shared_lock(engine)
    if lock is None:
        yield
        return
    with lock:
        yield
