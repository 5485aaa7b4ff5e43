"""The direct line from the run threads to the run history.

The recurring loop and the distributed run threads tell a :class:`RunSink` about every run
they do, with plain values, when one is attached to the host's publisher
(``Publisher.sink``; the run history attaches its recorder there). Notifications would carry
the same facts, but building a notification object, reading the clock for it and dispatching
it through the handler list costs more than recording the run itself; a host at 2,000 runs/s
notices. Without history, ``Publisher.sink`` is None and a run pays one attribute read.

A sink's methods run on the run threads: they must be quick, must not block and must not
raise (the recorder only appends to a bounded queue).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["MANUAL", "SCHEDULE", "RunSink"]

SCHEDULE = "schedule"
MANUAL = "manual"


class RunSink(Protocol):
    """What the run threads report (see the module docstring)."""

    def recurring(
        self,
        job: object,
        manual: bool,
        started_ms: float,
        ended_ms: float,
        outcome: str,
        error: BaseException | None,
        /,
    ) -> None:
        """A recurring run ended (host-clock times in epoch milliseconds, not rounded;
        ``outcome`` as in the history table). Positional: it is called at every run of every
        job."""

    def claimed(self, job: object, *, claim_id: str, manual: bool) -> object:
        """A distributed run was claimed and begins; returns a handle for :meth:`ended`."""

    def ended(self, handle: object, *, outcome: str, error: BaseException | None) -> None:
        """The distributed run of ``handle`` ended with ``outcome`` (``lease_lost`` when its
        claim was lost and the run canceled)."""
