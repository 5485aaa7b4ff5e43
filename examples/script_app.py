"""A plain script with two recurring jobs, a trigger and a status report.

To run:  python examples/script_app.py      (stops by itself after 20 s, or on Ctrl+C)
"""

import os
import time
from datetime import timedelta

from recurjobs import CancellationToken, JobExecuted, JobHost, RecurringJob, TriggerableJob

SECONDS = float(os.environ.get("RECURJOBS_EXAMPLE_SECONDS", "20"))


class Heartbeat(RecurringJob):
    """Prints a line every second, from the start."""

    def __init__(self) -> None:
        super().__init__(timedelta(seconds=1), delay=timedelta(0))

    def run(self, token: CancellationToken) -> None:
        print("heartbeat", time.strftime("%H:%M:%S"), flush=True)


class Export(RecurringJob, TriggerableJob):
    """Pretends to export data every 5 seconds; can also be run on demand."""

    def __init__(self) -> None:
        super().__init__(timedelta(seconds=5), delay=timedelta(seconds=5))

    def run(self, token: CancellationToken) -> None:
        for _ in range(10):  # ten small steps, leaving early when the host stops
            if token.wait(0.02):
                return
        print("export done", flush=True)


def main() -> None:
    host = JobHost([Heartbeat(), Export()])
    host.subscribe(JobExecuted, lambda n: print(f"  ({type(n.job).__name__}: {n.duration})"))
    with host:
        print("triggered export:", host.trigger(Export), flush=True)  # runs at once
        try:
            time.sleep(SECONDS)
        except KeyboardInterrupt:
            pass
        for status in host.status():
            print(f"{status.name}: {status.runs} runs, last outcome {status.last_outcome}")


if __name__ == "__main__":
    main()
