"""The three checks before every run: runtime ready, server role, main instance."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from recurjobs._guard import call_user
from recurjobs._maindom import MainDom
from recurjobs._roles import IgnoreReason, ServerRole

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
    """Answers "may this job run now?" for the host; re-reads every source at every check.

    A source that is a plain value (``runtime_ready=None``: always ready; a fixed
    ``ServerRole``) is used as it is, without a guarded call: every run of every job asks.
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

    def role(self) -> ServerRole:
        """The current role; a source that raises or returns junk counts as UNKNOWN."""
        if isinstance(self.server_role, ServerRole):
            return self.server_role
        role: object = call_user(
            "server_role callable", self.server_role, default=ServerRole.UNKNOWN
        )
        if not isinstance(role, ServerRole):
            logger.error("server_role callable returned %r, not a ServerRole", role)
            return ServerRole.UNKNOWN
        return role

    def ready(self) -> bool:
        """Whether the runtime is ready; a callable that raises counts as not ready."""
        if self.runtime_ready is None:
            return True
        return bool(call_user("runtime_ready callable", self.runtime_ready, default=False))

    def is_main(self) -> bool:
        """Whether this process is the main instance (always, without a MainDom)."""
        return self.main_dom is None or self.main_dom.try_acquire()

    def check(self, roles: Collection[ServerRole]) -> IgnoreReason | None:
        """The first gate that fails for a job allowed in ``roles``, in order, or None."""
        if not self.ready():
            return IgnoreReason.RUNTIME_NOT_READY
        if self.role() not in roles:
            return IgnoreReason.SERVER_ROLE
        if not self.is_main():
            return IgnoreReason.NOT_MAIN_DOM
        return None
