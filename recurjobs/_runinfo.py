"""What the run on this thread is: started by a schedule or a manual trigger, and (for a
distributed run) whether its claim was lost. Read by the run history.

The recurring loop and the distributed run threads say it here just before a run; the history
recorder reads it while the run's notifications are published, on the same thread. A
thread-local keeps the run threads free of any knowledge of history.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["MANUAL", "SCHEDULE", "begin_run", "current_trigger", "lease_lost"]

SCHEDULE = "schedule"
MANUAL = "manual"

_local = threading.local()


def _never() -> bool:
    return False


def begin_run(*, manual: bool, lost: Callable[[], bool] = _never) -> None:
    """Say, for this thread's next run, whether a trigger (not the schedule) started it and,
    for a distributed run, how to tell that its claim was lost."""
    _local.trigger = MANUAL if manual else SCHEDULE
    _local.lost = lost


def current_trigger() -> str:
    """``"manual"`` or ``"schedule"`` for the run this thread is doing (default: schedule)."""
    trigger: str = getattr(_local, "trigger", SCHEDULE)
    return trigger


def lease_lost() -> bool:
    """Whether the distributed run on this thread lost its claim (False for recurring runs)."""
    return bool(getattr(_local, "lost", _never)())
