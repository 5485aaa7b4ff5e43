"""Subprocess helper for tests/test_maindom.py: compete for one MainDom lock and say how it went.

Usage: ``python tests/maindom_worker.py DIRECTORY KEY MODE`` with the repository root on
PYTHONPATH.

- ``once``: try once, print ``main`` or ``not-main``, exit.
- ``poll``: try every 50 ms and print the state each time it changes (so the first line is the
  first result); keep holding once main. Exits by itself after 60 s so it can never linger.
"""

from __future__ import annotations

import sys
import time

from recurjobs._maindom import MainDom

_POLL_SECONDS = 0.05
_LIFETIME_SECONDS = 60.0


def main(argv: list[str]) -> int:
    directory, key, mode = argv
    main_dom = MainDom(key, directory=directory)
    if mode == "once":
        print("main" if main_dom.try_acquire() else "not-main", flush=True)
        return 0
    deadline = time.monotonic() + _LIFETIME_SECONDS
    reported = ""
    while time.monotonic() < deadline:
        state = "main" if main_dom.try_acquire() else "not-main"
        if state != reported:
            print(state, flush=True)
            reported = state
        time.sleep(_POLL_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
