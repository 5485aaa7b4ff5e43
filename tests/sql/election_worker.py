"""Subprocess helper for tests/sql/test_election.py: one server taking part in the election.

Usage: ``python tests/sql/election_worker.py URL PREFIX INTERVAL STALE [SKEW_MINUTES]`` with the
repository root on PYTHONPATH. INTERVAL and STALE are seconds (touch_interval, stale_timeout);
SKEW_MINUTES moves this process's wall clock (time-machine, ticking) before anything starts.

Output, one flushed line each: ``identity <ID>`` first, then ``<ROLE> <at>`` for every
``ServerRoleChanged`` (``at`` is the notification's ISO time, so the skew shows), and
``stopped`` after a clean stop. A ``stop`` line on stdin, or the end of stdin, stops the
election cleanly; the process exits by itself after 60 s so it can never linger.
"""

from __future__ import annotations

import sys
import threading
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta

import time_machine

from recurjobs._notifications import Publisher, ServerRoleChanged
from recurjobs.sql._election import DatabaseServerRoles

_LIFETIME_SECONDS = 60.0


def _wait_for_stop(stop: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()


def main(argv: list[str]) -> int:
    url, prefix, interval, stale = argv[:4]
    skew = timedelta(minutes=float(argv[4])) if len(argv) > 4 else None
    travel: AbstractContextManager[object] = nullcontext()
    if skew is not None:
        travel = time_machine.travel(datetime.now(UTC) + skew, tick=True)
    with travel:
        roles = DatabaseServerRoles(
            url,
            table_prefix=prefix,
            touch_interval=timedelta(seconds=float(interval)),
            stale_timeout=timedelta(seconds=float(stale)),
        )
        print(f"identity {roles.identity}", flush=True)
        publisher = Publisher()

        def report(change: ServerRoleChanged) -> None:
            print(f"{change.new.name} {change.at.isoformat()}", flush=True)

        publisher.subscribe(ServerRoleChanged, report)
        stop = threading.Event()
        threading.Thread(target=_wait_for_stop, args=(stop,), daemon=True).start()
        roles.start(publisher=publisher)
        stop.wait(_LIFETIME_SECONDS)
        roles.stop()
        ended = roles.join(10.0)
        print("stopped" if ended else "stuck", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
