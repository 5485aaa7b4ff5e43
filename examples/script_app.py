"""A plain script with two recurring jobs, a trigger and a status report.

To run:  python examples/script_app.py      (stops by itself after 20 s, or on Ctrl+C)
"""

import logging
import os
import sys
import time
from datetime import timedelta

from recurjobs import CancellationToken, JobExecuted, JobHost, RecurringJob, TriggerableJob

SECONDS = float(os.environ.get("RECURJOBS_EXAMPLE_SECONDS", "20"))
say = logging.getLogger("example").info  # logging keeps lines from threads whole


class Heartbeat(RecurringJob):
    """Prints a line every second, from the start."""

    def __init__(self) -> None:
        super().__init__(timedelta(seconds=1), delay=timedelta(0))

    def run(self, token: CancellationToken) -> None:
        say("heartbeat %s", time.strftime("%H:%M:%S"))


class Export(RecurringJob, TriggerableJob):
    """Pretends to export data every 5 seconds; can also be run on demand."""

    def __init__(self) -> None:
        super().__init__(timedelta(seconds=5), delay=timedelta(seconds=5))

    def run(self, token: CancellationToken) -> None:
        for _ in range(10):  # ten small steps, leaving early when the host stops
            if token.wait(0.02):
                return
        say("export done")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    host = JobHost([Heartbeat(), Export()])
    host.subscribe(JobExecuted, lambda n: say("  (%s: %s)", type(n.job).__name__, n.duration))
    with host:
        say("triggered export: %s", host.trigger(Export))  # runs at once
        try:
            time.sleep(SECONDS)
        except KeyboardInterrupt:
            pass
    for status in host.status():  # after the stop, so no job prints any more
        say("%s: %d runs, last outcome %s", status.name, status.runs, status.last_outcome)


if __name__ == "__main__":
    main()
