"""Child process for tests/test_forward.py: one host with an ``Append`` job and a MainDom.

``python -m tests.apps.forward_child DIRECTORY KEY OUT MODE``:

- ``main``: start the host, take the MainDom lock (which starts the trigger listener), print
  ``main``; then serve until SIGTERM, stop the host and exit 0. Exits by itself after 60 s.
- ``trigger``: start the host, print the result of ``host.trigger(Append)``, stop, exit.
"""

from __future__ import annotations

import signal
import sys
import threading

from recurjobs import JobHost, MainDom
from tests.apps.forward_jobs import Append

_LIFETIME_SECONDS = 60.0


def main(argv: list[str]) -> int:
    directory, key, out, mode = argv
    main_dom = MainDom(key, directory=directory)
    host = JobHost([Append(out)], main_dom=main_dom).start()
    if mode == "trigger":
        print(host.trigger(Append), flush=True)
        host.stop()
        return 0
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    while not main_dom.try_acquire():
        if stopping.wait(0.02):
            break
    print("main", flush=True)
    stopping.wait(_LIFETIME_SECONDS)
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
