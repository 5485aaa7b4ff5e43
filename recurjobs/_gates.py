"""The three checks before every run: runtime ready, server role, main instance (SPEC 4)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from recurjobs._maindom import MainDom
from recurjobs._roles import DEFAULT_SERVER_ROLES, IgnoreReason, ServerRole

__all__ = ["Gates", "role_source"]

logger = logging.getLogger("recurjobs")

RoleSource = Callable[[], ServerRole]


def role_source(value: object) -> RoleSource:
    """Turn ``JobHost(server_role=...)`` (a role or a callable) into a callable."""
    if isinstance(value, ServerRole):
        role = value
        return lambda: role
    if callable(value):
        return value
    raise TypeError(f"server_role must be a ServerRole or a callable returning one, got {value!r}")


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


class Gates:
    """Answers "may this job run now?" for the host; re-reads every source at every check."""

    def __init__(
        self,
        *,
        runtime_ready: Callable[[], bool],
        server_role: RoleSource,
        main_dom: MainDom | None,
    ) -> None:
        self.runtime_ready = runtime_ready
        self.server_role = server_role
        self.main_dom = main_dom

    def role(self) -> ServerRole:
        """The current role; a source that raises or returns junk counts as UNKNOWN."""
        try:
            role: object = self.server_role()
        except Exception:
            logger.exception("server_role callable failed; treating the role as UNKNOWN")
            return ServerRole.UNKNOWN
        if not isinstance(role, ServerRole):
            logger.error("server_role callable returned %r, not a ServerRole", role)
            return ServerRole.UNKNOWN
        return role

    def ready(self) -> bool:
        """Whether the runtime is ready; a callable that raises counts as not ready."""
        try:
            return bool(self.runtime_ready())
        except Exception:
            logger.exception("runtime_ready callable failed; treating the runtime as not ready")
            return False

    def check(self, job: object) -> IgnoreReason | None:
        """The first gate that fails for ``job``, in SPEC order, or None when it may run."""
        if not self.ready():
            return IgnoreReason.RUNTIME_NOT_READY
        roles = getattr(job, "server_roles", DEFAULT_SERVER_ROLES)
        if self.role() not in roles:
            return IgnoreReason.SERVER_ROLE
        if self.main_dom is not None and not self.main_dom.try_acquire():
            return IgnoreReason.NOT_MAIN_DOM
        return None
