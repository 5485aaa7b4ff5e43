"""Server roles and the reasons a run can be ignored."""

from __future__ import annotations

import enum

__all__ = ["DEFAULT_SERVER_ROLES", "IgnoreReason", "ServerRole"]


class ServerRole(enum.Enum):
    """The part a server plays in a cluster; gates recurring jobs (``job.server_roles``)."""

    UNKNOWN = "unknown"
    """Not known yet (for instance before the first election round)."""
    SINGLE = "single"
    """The only server: runs everything."""
    SUBSCRIBER = "subscriber"
    """One of several servers, not the one that runs scheduled work."""
    SCHEDULING_PUBLISHER = "scheduling_publisher"
    """The one server of several that runs scheduled work."""


DEFAULT_SERVER_ROLES: frozenset[ServerRole] = frozenset(
    {ServerRole.SINGLE, ServerRole.SCHEDULING_PUBLISHER}
)


class IgnoreReason(enum.Enum):
    """Which gate stopped a run (carried by ``JobIgnored.reason``)."""

    RUNTIME_NOT_READY = "runtime_not_ready"
    SERVER_ROLE = "server_role"
    NOT_MAIN_DOM = "not_main_dom"
    PAUSED = "paused"
    """The job is paused (``JobHost.pause``); checked before the three gates."""
