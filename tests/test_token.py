"""CancellationToken: polled, waited on, cancelled from another thread.

A token makes its event only when somebody first waits (a host holds one token per job, and
most are only polled); a cancel that races that first wait must still wake it.
"""

from __future__ import annotations

import threading

import pytest

from recurjobs import CancellationToken, JobCancelled
from recurjobs.testing import ManualClock


class _CancelledMidWait(CancellationToken):
    """Cancelled by another thread at the worst moment: after ``wait()`` has read "not
    cancelled", before the event it sleeps on exists."""

    __slots__ = ()

    def _waitable(self) -> threading.Event:
        canceller = threading.Thread(target=self.cancel)
        canceller.start()
        canceller.join()
        return super()._waitable()


@pytest.mark.parametrize("timeout", [5.0, None])
def test_a_cancel_landing_inside_the_first_wait_still_wakes_it(timeout: float | None) -> None:
    """The event made after the cancel comes out set: the wait returns True at once instead
    of sleeping its whole timeout (or for ever)."""
    token = _CancelledMidWait()
    woke: list[bool] = []
    thread = threading.Thread(target=lambda: woke.append(token.wait(timeout)), daemon=True)
    thread.start()
    thread.join(2)
    assert [True] == woke


def test_cancel_wakes_a_thread_waiting_without_a_timeout() -> None:
    token = CancellationToken()
    woke: list[bool] = []
    thread = threading.Thread(target=lambda: woke.append(token.wait()), daemon=True)
    thread.start()
    while thread.is_alive() and token._event is None:  # its first wait made the event
        threading.Event().wait(0.001)
    token.cancel()
    thread.join(10)
    assert [True] == woke


def test_a_token_reads_as_cancelled_everywhere_once_cancelled(clock: ManualClock) -> None:
    """Before: not cancelled, a zero wait times out, raise_if_cancelled passes. After: every
    read says cancelled and every wait returns True at once (the manual clock never moves)."""
    token = CancellationToken(clock)
    assert (False, False) == (token.is_cancelled(), token.wait(0))
    token.raise_if_cancelled()
    token.cancel()
    token.cancel()  # a second cancel changes nothing
    assert (True, True, True) == (token.is_cancelled(), token.wait(5), token.wait())
    with pytest.raises(JobCancelled):
        token.raise_if_cancelled()
    assert "CancellationToken(cancelled=True)" == repr(token)
