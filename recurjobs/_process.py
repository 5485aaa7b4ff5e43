"""The started hosts of this process: a warning when two of them would run the same jobs, and
a clean slate for them in a forked child.

``JobHost.start()`` reports each host here. They are held weakly: a host is forgotten once
nothing else refers to it.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import TYPE_CHECKING

from recurjobs._guard import log_quietly
from recurjobs._jobs import is_distributed

if TYPE_CHECKING:
    from recurjobs._host import JobHost

__all__ = ["started"]

logger = logging.getLogger("recurjobs")

_started_hosts: weakref.WeakSet[JobHost] = weakref.WeakSet()


def started(host: JobHost) -> None:
    """Note that ``host`` starts: warn if it duplicates another running host, then keep it
    for the fork handler."""
    _warn_if_duplicated(host)
    _started_hosts.add(host)


def _warn_if_duplicated(host: JobHost) -> None:
    """Warn when another running host of this process shares the MainDom key and job classes.

    Both hosts would be "main" (one acquisition is shared per process), so every such job
    would run twice: the usual cause is a module-level ``app = create_app()`` plus a server
    that calls ``create_app()`` again.
    """
    main_dom = host.gates.main_dom
    if main_dom is None:
        return
    mine = {type(job) for job in host.jobs if not is_distributed(job)}
    twice: set[type] = set()
    for other in list(_started_hosts):
        theirs = other.gates.main_dom
        if other is host or not other.running or theirs is None or theirs.key != main_dom.key:
            continue
        twice |= mine & {type(job) for job in other.jobs if not is_distributed(job)}
    if twice:
        names = ", ".join(sorted(kind.__qualname__ for kind in twice))
        log_quietly(
            logging.WARNING,
            "another JobHost in this process already runs %s with main instance key %r: each "
            "of these jobs now runs twice. Create one JobHost per process (for example, do not "
            "call create_app() both at import time and from the server).",
            names,
            main_dom.key,
            on=logger,
        )


def _reset_hosts_in_child() -> None:
    """After a fork, in the child: every started host forgets the parent's threads."""
    for host in list(_started_hosts):
        host._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_hosts_in_child)
