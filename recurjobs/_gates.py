"""The three checks before every run: runtime ready, server role, main instance."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from recurjobs._guard import call_user, log_quietly
from recurjobs._maindom import MainDom
from recurjobs._roles import IgnoreReason, ServerRole
from recurjobs._validate import no_argument_callable

__all__ = ["Gates", "host_gates", "role_service", "role_source"]

logger = logging.getLogger("recurjobs")

RoleSource = Callable[[], ServerRole]


def role_source(value: object) -> RoleSource:
    """Turn ``JobHost(server_role=...)`` (a role or a callable) into a callable."""
    if isinstance(value, ServerRole):
        role = value
        return lambda: role
    if callable(value):
        return no_argument_callable(value, "server_role", " returning a ServerRole")  # type: ignore[return-value]
    raise TypeError(f"server_role must be a ServerRole or a callable returning one, got {value!r}")


def role_service(value: object) -> Any:
    """The ``JobHost(server_role=...)`` with a life of its own, or None.

    A role source with ``start``, ``stop`` and ``join`` (recurjobs.sql.DatabaseServerRoles) is
    started and stopped with the host.
    """
    if all(callable(getattr(value, m, None)) for m in ("start", "stop", "join")):
        return value
    return None


def main_dom_source(value: object) -> MainDom | None:
    """Turn ``JobHost(main_dom=...)`` (None, True, a key or a MainDom) into a MainDom."""
    if value is None or value is False:
        return None
    if value is True:
        return MainDom.automatic()
    if isinstance(value, str):
        if not value:
            raise ValueError(
                f"main_dom must be None, True, a non-empty key or a MainDom, got {value!r}"
            )
        return MainDom(value)
    if isinstance(value, MainDom):
        return value
    raise TypeError(f"main_dom must be None, True, a str key or a MainDom, got {value!r}")


def host_gates(
    runtime_ready: object,
    server_role: ServerRole | RoleSource,
    main_dom: object,
    *,
    elect: bool,
    role: RoleSource,
) -> Gates:
    """The gates of ``JobHost(runtime_ready=..., server_role=..., main_dom=...)``.

    ``role`` is the host's current role. A fixed role without an election (``elect``) is
    handed to the gates as it is instead (no call per run).
    """
    ready = None
    if runtime_ready is not None:
        ready = no_argument_callable(runtime_ready, "runtime_ready")
    fixed = isinstance(server_role, ServerRole) and not elect
    return Gates(
        runtime_ready=ready,  # type: ignore[arg-type]
        server_role=server_role if fixed else role,
        main_dom=main_dom_source(main_dom),
    )


class Gates:
    """Answers "may this job run now?" for the host; re-reads every source at every check.

    A source that is a plain value (``runtime_ready=None``: always ready; a fixed
    ``ServerRole``) is used as it is, without a guarded call: every run of every job asks.
    The sources are given once, at construction; when none needs asking, ``check`` answers
    from the fixed role alone.
    """

    def __init__(
        self,
        *,
        runtime_ready: Callable[[], bool] | None,
        server_role: RoleSource | ServerRole,
        main_dom: MainDom | None,
    ) -> None:
        self.runtime_ready = runtime_ready
        self.server_role = server_role
        self.main_dom = main_dom
        # Nothing to ask at a run (always ready, a fixed role, no main instance): the role.
        self._only_role = (
            server_role
            if runtime_ready is None and isinstance(server_role, ServerRole) and main_dom is None
            else None
        )
        # The last roles asked about with the fixed role alone, and the answer (a job's
        # settings keep their roles object from run to run; the threads share this pair).
        self._answered: tuple[object, IgnoreReason | None] = (None, None)

    def role(self) -> ServerRole:
        """The current role; a source that raises or returns junk counts as UNKNOWN."""
        if isinstance(self.server_role, ServerRole):
            return self.server_role
        role: object = call_user(
            "server_role callable", self.server_role, default=ServerRole.UNKNOWN
        )
        if not isinstance(role, ServerRole):
            log_quietly(
                logging.ERROR,
                "server_role callable returned %r, not a ServerRole",
                role,
                on=logger,
            )
            return ServerRole.UNKNOWN
        return role

    def ready(self) -> bool:
        """Whether the runtime is ready; a callable that raises, or returns a value whose truth
        cannot be told (a numpy array), counts as not ready."""
        if self.runtime_ready is None:
            return True
        return call_user("runtime_ready callable", self._ask_ready, default=False)

    def _ask_ready(self) -> bool:
        assert self.runtime_ready is not None
        return bool(self.runtime_ready())

    def is_main(self) -> bool:
        """Whether this process is the main instance (always, without a MainDom)."""
        return self.main_dom is None or self.main_dom.try_acquire()

    def check(self, roles: Collection[ServerRole]) -> IgnoreReason | None:
        """The first gate that fails for a job allowed in ``roles``, in order, or None."""
        only = self._only_role
        if only is not None:
            asked, answer = self._answered
            if asked is not roles:
                answer = None if only in roles else IgnoreReason.SERVER_ROLE
                self._answered = (roles, answer)
            return answer
        if not self.ready():
            return IgnoreReason.RUNTIME_NOT_READY
        if self.role() not in roles:
            return IgnoreReason.SERVER_ROLE
        if not self.is_main():
            return IgnoreReason.NOT_MAIN_DOM
        return None
