"""Several worker processes share one distributed job; each period exactly one runs it.

To run:  python examples/distributed_workers.py [WORKERS]      (default 3 workers, 20 s)
"""

import multiprocessing
import os
import sys
import tempfile
import time
from datetime import timedelta

from recurjobs import CancellationToken, DistributedJob, DistributedJobSettings, JobHost

SECONDS = float(os.environ.get("RECURJOBS_EXAMPLE_SECONDS", "20"))


class Invoice(DistributedJob):
    """Runs once a second in the whole cluster, on whichever worker claims it."""

    name = "send-invoices"
    period = timedelta(seconds=1)

    def execute(self, token: CancellationToken) -> None:
        # One write per line: the workers share one output pipe.
        print(f"worker {os.getpid()} sends the invoices\n", end="", flush=True)
        token.wait(0.2)


def worker(database: str) -> None:
    fast = DistributedJobSettings(poll_period=timedelta(seconds=0.1), delay=timedelta(0))
    with JobHost([Invoice()], database=database, distributed=fast):
        time.sleep(SECONDS)


def main(workers: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        database = f"sqlite:///{os.path.join(folder, 'jobs.db')}"
        spawn = multiprocessing.get_context("spawn")
        procs = [spawn.Process(target=worker, args=(database,)) for _ in range(workers)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        print("all workers stopped; exit codes:", [p.exitcode for p in procs])


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
