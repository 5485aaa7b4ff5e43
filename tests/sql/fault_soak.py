"""The fault-injection soak: host processes, proxies, a chaos loop, and the analysis of the log.

:func:`run_soak` starts one :class:`~tests.faultproxy.FaultProxy` per worker slot in front of
the database and one ``fault_worker.py`` process per slot (connecting through its proxy), then
for ``seconds`` injects faults at random points: reset every connection, stall for
``stall_seconds``, refuse for ``refuse_seconds`` (each on one slot's proxy or on all of them),
``kill -9`` a worker and start a replacement, ``SIGSTOP`` a worker for a few seconds, and stop a
worker gracefully (SIGTERM: ``host.stop()``) and start a replacement. Then a quiet phase of
``max period + max_execution_time + 2 * poll + margin``; then SIGTERM to every worker.

:func:`analyse` reads the shared log and checks the promises:

* no two runs of one job overlap (across processes). A run killed by ``kill -9`` has no end
  line: it counts as running until the kill. A SIGSTOPped run counts as running while it is
  stopped; the stops are kept shorter than a lease minus one heartbeat interval, so no other
  host may take such a run over while it is stopped;
* after the last fault ended, no job waits longer than
  ``period + max_execution_time + 2 * poll`` for its next start;
* a host whose link and process were healthy never loses a lease, and while one host holds a
  claimed row locked (``lockhold``) the other jobs are still claimed within their bound;
* no exception escapes any thread; ``host.stop(stop_timeout)`` always returns within
  ``stop_timeout`` + 2 s.

Everything is bounded: workers end themselves (lifetime, parent gone, stop() guard), the harness
kills every worker's process group in a ``finally``, and proxies close themselves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import make_url

from tests.faultproxy import FaultProxy

__all__ = ["Fault", "Report", "SoakConfig", "analyse", "reanalyse", "run_soak"]

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("fault_worker.py")
FAULT_KINDS = ("drop", "stall", "refuse", "lockhold", "kill", "sigstop", "longstop", "restart")
STOP_SLACK = 2.0  # stop(timeout) may overrun its timeout by this much and still count as bounded
# Only a claim writes this column: holding the COMMIT after it keeps a claimed row locked.
CLAIM_MARKER = b"last_attempted_run"
LOCKHOLD_ARMED = 10.0  # a lockhold waits this long at most for a claim to hold
# A host frozen past its lease may run on this long after it wakes (its watchdog must cancel
# the run at once: the claim could not be renewed in time).
WAKE_SLACK = 0.5
# A history row of a run matches the logged run when its start and end are this close (s).
HISTORY_SLACK = 1.0
_WEIGHTS = {
    "drop": 2,
    "stall": 2,
    "refuse": 1,
    "lockhold": 2,
    "kill": 2,
    "sigstop": 2,
    "longstop": 1,
    "restart": 1,
}


@dataclass(frozen=True)
class SoakConfig:
    """What one soak runs: backend, database, phase lengths, jobs and fault sizes."""

    backend: str
    url: str
    table_prefix: str
    directory: Path
    seconds: float = 180.0
    workers: int = 4
    # (name, period, shortest run, longest run), seconds. The long ones outlast
    # max_execution_time, so they live on heartbeats, which the faults interrupt.
    jobs: tuple[tuple[str, float, float, float], ...] = (
        ("j0", 2.0, 0.1, 1.5),
        ("j1", 2.0, 0.1, 1.5),
        ("j2", 2.5, 0.1, 1.5),
        ("j3", 2.5, 0.1, 1.5),
        ("j4", 3.0, 0.1, 1.5),
        ("j5", 3.0, 0.1, 1.5),
        ("long0", 2.0, 2.0, 6.0),
        ("long1", 3.0, 2.0, 6.0),
    )
    poll: float = 0.5
    max_execution_time: float = 3.0
    max_concurrent_jobs: int = 8
    stall_seconds: float = 10.0
    lockhold_seconds: float = 10.0
    refuse_seconds: float = 30.0
    sigstop_seconds: tuple[float, float] = (1.0, 3.0)
    chaos_interval: tuple[float, float] = (2.0, 6.0)
    stop_timeout: float = 10.0
    margin: float = 3.0
    seed: int = 0
    faults: tuple[str, ...] = FAULT_KINDS
    # Faults injected first, one at a time and with nothing else going on, before the random ones.
    opening: tuple[str, ...] = ()
    # The hosts record run history; afterwards no run (job, claim id) may have two rows.
    history: bool = True

    def bound(self, period: float) -> float:
        """The promised longest wait of a job after the faults stopped."""
        return period + self.max_execution_time + 2 * self.poll

    @property
    def quiet(self) -> float:
        """Length of the quiet phase after the last fault."""
        return max(self.bound(j[1]) for j in self.jobs) + self.margin

    @property
    def longest_lease(self) -> float:
        return max(j[1] for j in self.jobs) + self.max_execution_time

    def period(self, job: str) -> float:
        return next(j[1] for j in self.jobs if j[0] == job)


@dataclass
class Fault:
    """One injected fault: what, on which slot(s), when it began and ended, whom it hit."""

    kind: str
    target: str  # "all" or "w<N>"
    begin: float
    end: float
    pids: tuple[int, ...] = ()
    note: str = ""

    def hits(self, pid: int, slot: str) -> bool:
        return self.target in ("all", slot) if not self.pids else pid in self.pids

    def text(self, t0: float) -> str:
        span = f"{self.begin - t0:7.2f}-{self.end - t0:7.2f}"
        who = f" pid {','.join(map(str, self.pids))}" if self.pids else ""
        note = f" ({self.note})" if self.note else ""
        return f"{span} {self.kind:8} {self.target}{who}{note}"


@dataclass
class Worker:
    slot: str
    proc: subprocess.Popen[bytes]
    out: IO[bytes]
    stopped_until: float = 0.0  # SIGSTOPped until (time.time()), 0: running
    terminating_since: float = 0.0  # SIGTERM sent at (graceful restart)
    ended_at: float = 0.0


@dataclass
class Run:
    job: str
    pid: int
    start: float
    end: float
    how: str  # executed | cancelled | killed | unended


@dataclass
class Report:
    """What the soak saw and which promises broke (``broken`` empty: all kept)."""

    config: SoakConfig
    t0: float
    chaos_end: float
    faults_end: float
    quiet_end: float
    faults: list[Fault]
    slots: dict[int, str]
    runs: dict[str, list[Run]] = field(default_factory=dict)
    overlaps: list[str] = field(default_factory=list)
    frozen_overlaps: list[tuple[str, float]] = field(default_factory=list)
    lock_stalls: list[str] = field(default_factory=list)
    late_claims: list[tuple[str, float]] = field(default_factory=list)
    """(job, time) of each claim confirmed too late to run: a held COMMIT held that row."""
    takeovers: list[tuple[str, str, float, float]] = field(default_factory=list)
    recoveries: list[tuple[str, float]] = field(default_factory=list)
    lock_windows: int = 0
    gaps: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    deaths: list[str] = field(default_factory=list)
    stops: list[tuple[int, float, str, str]] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)
    lost: list[tuple[str, int, float, bool]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    start_failures: int = 0
    exits: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    history_rows: int | None = None  # rows of run history the hosts wrote (None: history off)
    history_twice: list[tuple[str, int]] = field(default_factory=list)
    history_strays: list[str] = field(default_factory=list)
    history_missing: list[str] = field(default_factory=list)

    def rel(self, t: float) -> float:
        return t - self.t0

    def summary_row(self) -> dict[str, str]:
        """The figures of one backend's soak, for a one-line table."""
        c = self.config
        kinds = Counter(f.kind for f in self.faults)
        runs = sum(len(r) for r in self.runs.values())
        worst = max(self.gaps.items(), key=lambda kv: kv[1][0] - kv[1][1], default=None)
        gap = f"{worst[1][0]:.1f} s ({worst[0]}; bound {worst[1][1]:.1f} s)" if worst else "n/a"
        stop_max = max((s[1] for s in self.stops), default=math.nan)
        false_stops = sum(1 for s in self.stops if s[2] != "True")
        healthy_lost = sum(1 for x in self.lost if x[3])
        return {
            "backend": c.backend,
            "chaos": f"{self.rel(self.chaos_end):.0f} s",
            "faults": " ".join(f"{k} {kinds[k]}" for k in FAULT_KINDS if kinds[k]),
            "runs": str(runs),
            "overlapping runs": f"{len(self.overlaps)}"
            + (
                f" (+{len(self.frozen_overlaps)} by hosts frozen past their lease, which ran "
                f"on {max(x[1] for x in self.frozen_overlaps) * 1000:.0f} ms at most after waking)"
                if self.frozen_overlaps
                else ""
            ),
            "longest gap after faults": gap,
            "jobs stalled by one locked row": f"{len(self.lock_stalls)} "
            f"(in {self.lock_windows} holds)",
            "thread deaths": str(len(self.deaths)),
            "stop() max": f"{stop_max:.2f} s (n={len(self.stops)}, False {false_stops}, "
            f"hung {len(self.hung)})",
            "lease losses (link healthy)": f"{len(self.lost)} ({healthy_lost})",
            "history rows (runs twice, matching no run, missing)": "off"
            if self.history_rows is None
            else f"{self.history_rows} ({len(self.history_twice)}, "
            f"{len(self.history_strays)} matching no run, {len(self.history_missing)} missing)",
            "verdict": "ok" if not self.broken else f"BROKEN ({len(self.broken)})",
        }

    def details(self) -> str:
        """Everything a reader needs to chase a failure: faults, gaps, overlaps, stops."""
        c = self.config
        lines = [
            f"# {c.backend}: seed {c.seed}, {c.workers} workers, chaos {c.seconds:g} s, "
            f"quiet {c.quiet:.1f} s; times in s from the chaos start",
            f"faults ended at {self.rel(self.faults_end):.2f}, quiet phase ended at "
            f"{self.rel(self.quiet_end):.2f}",
            "## faults",
            *(f.text(self.t0) for f in self.faults),
            "## longest gap per job after the faults stopped (from, length, bound)",
        ]
        for job, (length, bound, begin) in sorted(self.gaps.items()):
            flag = "  <-- over the bound" if length > bound else ""
            lines.append(f"{job}: from {self.rel(begin):7.2f}  {length:5.2f} s / {bound:.2f}{flag}")
        lines.append("## overlapping runs")
        lines.extend(self.overlaps or ["none"])
        lines.append(
            f"## runs of hosts frozen (SIGSTOP) past their lease, overlapped by a takeover "
            f"(expected while frozen; after waking at most {WAKE_SLACK} s allowed)"
        )
        lines.extend(f"{text} ({after:.3f} s after waking)" for text, after in self.frozen_overlaps)
        lines.append(
            f"## lockholds checked ({self.lock_windows}): other jobs idle past their bound "
            "while one host held a claimed row locked"
        )
        lines.extend(self.lock_stalls or ["none"])
        lines.append("## takeovers: a run cut short by its host's fault, next start elsewhere")
        lines.extend(
            f"{job} after {kind}: {latency:.2f} s (lease {lease:.1f} s)"
            for job, kind, latency, lease in self.takeovers
        )
        lines.append("## first run in the cluster after an all-hosts fault ended")
        lines.extend(f"{what}: {after:.2f} s" for what, after in self.recoveries)
        lines.append("## lease losses (job, pid, slot, t, host's own link and process healthy?)")
        lines.extend(
            f"{job} pid {pid} {self.slots.get(pid, '?')} at {self.rel(t):.2f} healthy={ok}"
            for job, pid, t, ok in self.lost
        )
        lines.append("## stop() calls (pid, seconds, result, when)")
        lines.extend(f"pid {p} {s:.3f} s {r} {w}" for p, s, r, w in self.stops)
        lines.extend(["## stop() hung", *(self.hung or ["none"])])
        lines.extend(["## thread deaths", *(self.deaths or ["none"])])
        lines.append(f"## start() failures: {self.start_failures}")
        lines.append(f"## run history rows: {self.history_rows}; runs with several rows")
        lines.extend([f"{claim}: {n} rows" for claim, n in self.history_twice] or ["none"])
        lines.append(f"## history rows matching no logged run (within {HISTORY_SLACK} s)")
        lines.extend(self.history_strays or ["none"])
        lines.append("## logged runs of cleanly stopped hosts with no history row")
        lines.extend(self.history_missing or ["none"])
        lines.append("## ERROR log records (count, message)")
        lines.extend(f"{n} x {m}" for m, n in self.errors.most_common(15))
        lines.extend(["## worker exits", *self.exits])
        lines.extend(["## broken promises", *(self.broken or ["none"])])
        return "\n".join(lines)


# ------------------------------------------------------------------------------ harness
class _Soak:
    def __init__(self, config: SoakConfig) -> None:
        self.c = config
        self.rng = random.Random(config.seed)
        self.log_path = config.directory / "runs.log"
        self.proxies: dict[str, FaultProxy] = {}
        self.workers: dict[str, Worker] = {}
        self.all_procs: list[Worker] = []
        self.faults: list[Fault] = []
        self.death_time: dict[int, float] = {}
        self.slots: dict[int, str] = {}
        self.respawn_at: dict[str, float] = {}
        self.generation = Counter[str]()
        self.exits: list[str] = []
        self.up: set[int] = set()  # pids that logged "up" (their host started)
        self._log_offset = 0

    # ------------------------------------------------------------------ workers
    def spawn(self, slot: str) -> None:
        c = self.c
        self.generation[slot] += 1
        config = {
            "url": self.proxies[slot].proxied_url(c.url),
            "prefix": c.table_prefix,
            "jobs": [list(j) for j in c.jobs],
            "poll": c.poll,
            "max_execution_time": c.max_execution_time,
            "max_concurrent_jobs": c.max_concurrent_jobs,
            "log": str(self.log_path),
            "slot": slot,
            "lifetime": c.seconds + c.quiet + c.stop_timeout + 120.0,
            "stop_timeout": c.stop_timeout,
            "history": c.history,
        }
        out = open(c.directory / f"{slot}.{self.generation[slot]}.out", "wb")  # noqa: SIM115
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: killpg reaches everything it made
        )
        worker = Worker(slot, proc, out)
        self.workers[slot] = worker
        self.all_procs.append(worker)
        self.slots[proc.pid] = slot

    def signal(self, worker: Worker, signum: int) -> None:
        try:
            os.killpg(worker.proc.pid, signum)
        except ProcessLookupError:
            pass

    def reap(self) -> None:
        """Notice workers that exited; respawn gracefully restarted ones."""
        now = time.time()
        for slot, w in list(self.workers.items()):
            code = w.proc.poll()
            if code is None:
                if w.terminating_since and now > w.terminating_since + self.c.stop_timeout + 15:
                    self.exits.append(
                        f"{slot} pid {w.proc.pid}: still alive 15 s after stop's timeout; killed"
                    )
                    self.kill(w, now)
                continue
            if w.ended_at:
                continue
            w.ended_at = now
            self.death_time.setdefault(w.proc.pid, now)
            if w.terminating_since:
                self.faults.append(
                    Fault("restart", slot, w.terminating_since, now, (w.proc.pid,), f"exit {code}")
                )
                self.exits.append(f"{slot} pid {w.proc.pid}: restarted, exit {code}")
                self.spawn(slot)
            elif code != -signal.SIGKILL:
                self.exits.append(f"{slot} pid {w.proc.pid}: exited by itself with {code}")
                self.spawn(slot)

    def kill(self, w: Worker, now: float) -> None:
        self.signal(w, signal.SIGKILL)
        self.signal(w, signal.SIGCONT)
        w.proc.wait(10)
        w.ended_at = now
        self.death_time[w.proc.pid] = now

    # -------------------------------------------------------------------- chaos
    def chaos(self, until: float) -> None:
        c = self.c
        for kind in c.opening:  # alone, one after the other, so each is judged undisturbed
            self.inject(kind, time.time(), until)
            while self.pending() and time.time() < until:  # bounded by the chaos phase
                self.housekeep(time.time())
                time.sleep(0.05)
        kinds = [k for k in c.faults if k in _WEIGHTS]
        next_fault = time.time() + self.rng.uniform(*c.chaos_interval) / 2
        hard_end = until + c.stop_timeout + 60.0  # pending work ends long before; never later
        while True:
            now = time.time()
            self.housekeep(now)
            if (now >= until and not self.pending()) or now >= hard_end:
                return
            if now >= next_fault and now < until and kinds:
                kind = self.rng.choices(kinds, weights=[_WEIGHTS[k] for k in kinds])[0]
                self.inject(kind, now, until)
                next_fault = now + self.rng.uniform(*c.chaos_interval)
            time.sleep(0.05)

    def pending(self) -> bool:
        return (
            bool(self.respawn_at)
            or any(p.holding and p.running for p in self.proxies.values())
            or any(
                w.stopped_until or (w.terminating_since and not w.ended_at)
                for w in self.workers.values()
            )
        )

    def read_up(self) -> None:
        """Learn from the log's new lines which workers have started their host."""
        if not self.log_path.exists():
            return
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._log_offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            if line.startswith("up "):
                self.up.add(int(line.split(" ")[2]))

    def housekeep(self, now: float) -> None:
        self.read_up()
        for w in self.workers.values():
            if w.stopped_until and now >= w.stopped_until:
                self.signal(w, signal.SIGCONT)
                w.stopped_until = 0.0
        for slot, at in list(self.respawn_at.items()):
            if now >= at:
                del self.respawn_at[slot]
                self.spawn(slot)
        self.reap()

    def healthy_workers(self) -> list[Worker]:
        return [
            w
            for s, w in self.workers.items()
            if w.proc.poll() is None
            and not w.stopped_until
            and not w.terminating_since
            and s not in self.respawn_at
        ]

    def inject(self, kind: str, now: float, until: float) -> None:
        c = self.c
        if kind == "lockhold":  # a host "paused" between a claim's UPDATE and its COMMIT
            slot = self.rng.choice(sorted(self.proxies))
            seconds = c.lockhold_seconds
            proxy = self.proxies[slot]
            if proxy.state() != "pass" or proxy.holding or now + seconds > until:
                return
            self.proxies[slot].hold_commit(seconds, after=CLAIM_MARKER, within=LOCKHOLD_ARMED)
            self.faults.append(Fault("lockhold", slot, now, now + LOCKHOLD_ARMED + seconds))
            return
        if kind in ("drop", "stall", "refuse"):
            idle = [s for s, p in self.proxies.items() if p.state() == "pass"]
            target = "all" if self.rng.random() < 0.4 else self.rng.choice(sorted(self.proxies))
            if (target == "all" and len(idle) < len(self.proxies)) or (
                target != "all" and target not in idle
            ):
                return
            proxies = list(self.proxies.values()) if target == "all" else [self.proxies[target]]
            if any(p.holding for p in proxies):
                return
            if kind == "drop":
                dropped = sum(p.drop() for p in proxies)
                self.faults.append(Fault("drop", target, now, now, note=f"{dropped} connections"))
                return
            seconds = c.stall_seconds if kind == "stall" else c.refuse_seconds
            if now + seconds > until:
                return
            for p in proxies:
                if kind == "stall":
                    p.stall(seconds)
                else:
                    p.refuse(seconds)
            self.faults.append(Fault(kind, target, now, now + seconds))
            return
        candidates = self.healthy_workers()
        if not candidates:
            return
        w = self.rng.choice(candidates)
        if kind == "kill":
            self.kill(w, now)
            self.faults.append(Fault("kill", w.slot, now, now, (w.proc.pid,)))
            self.respawn_at[w.slot] = now + self.rng.uniform(0.0, 2.0)
        elif kind == "sigstop":
            seconds = min(self.rng.uniform(*c.sigstop_seconds), max(0.0, until - now))
            if seconds < 0.5:
                return
            self.signal(w, signal.SIGSTOP)
            w.stopped_until = now + seconds
            self.faults.append(Fault("sigstop", w.slot, now, now + seconds, (w.proc.pid,)))
        elif kind == "longstop":  # frozen past its lease: another host may take over
            seconds = self.rng.uniform(c.longest_lease + 1, c.longest_lease + 3)
            if now + seconds > until:
                return
            self.signal(w, signal.SIGSTOP)
            w.stopped_until = now + seconds
            self.faults.append(Fault("longstop", w.slot, now, now + seconds, (w.proc.pid,)))
        elif kind == "restart":  # a graceful stop (only of a host that started)
            if now + c.stop_timeout + 5 > until or w.proc.pid not in self.up:
                return
            self.signal(w, signal.SIGTERM)
            w.terminating_since = now

    # -------------------------------------------------------------------- phases
    def run(self) -> Report:
        c = self.c
        url = make_url(c.url)
        if url.host is None or url.port is None:
            raise ValueError(f"the database URL needs a host and a port, got {c.url!r}")
        slots = [f"w{i}" for i in range(c.workers)]
        lifetime = c.seconds + c.quiet + c.stop_timeout + 300.0
        try:
            for slot in slots:
                self.proxies[slot] = FaultProxy((url.host, url.port), lifetime=lifetime).start()
            for slot in slots:
                self.spawn(slot)
            self.wait_up(len(slots), 30.0)
            t0 = time.time()
            self.chaos(t0 + c.seconds)
            chaos_end = time.time()
            self.refine_lockholds()
            faults_end = max([f.end for f in self.faults] + [t0])
            quiet_end = max(chaos_end, faults_end) + c.quiet
            while time.time() < quiet_end:
                self.reap()
                time.sleep(0.1)
            quiet_end = time.time()
            self.terminate_all()
            history = _history_rows(c) if c.history else None
        finally:
            self.cleanup()
        record = {
            "t0": t0,
            "chaos_end": chaos_end,
            "faults_end": faults_end,
            "quiet_end": quiet_end,
            "faults": [dataclasses.asdict(f) for f in self.faults],
            "slots": self.slots,
            "death_time": self.death_time,
            "exits": self.exits,
            "history": history,
        }
        (c.directory / "soak.json").write_text(json.dumps(record))
        return reanalyse(c)

    def refine_lockholds(self) -> None:
        """Replace each lockhold's armed window by when its COMMIT was really held."""
        used: set[float] = set()
        for f in self.faults:
            if f.kind != "lockhold":
                continue
            held = [
                t
                for t, what in self.proxies[f.target].log
                if what.startswith("holding a COMMIT") and f.begin <= t <= f.end and t not in used
            ]
            if held:
                used.add(held[0])
                f.begin, f.end = held[0], held[0] + self.c.lockhold_seconds
                f.note = "a claim's COMMIT held"
            else:
                f.end = f.begin  # it did nothing
                f.note = f"armed {LOCKHOLD_ARMED:g} s, but no claim came through"

    def wait_up(self, count: int, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log_path.exists():
                text = self.log_path.read_text(errors="replace")
                if sum(1 for line in text.splitlines() if line.startswith("up ")) >= count:
                    return
            self.reap()
            time.sleep(0.1)

    def terminate_all(self) -> None:
        """SIGTERM every worker (host.stop()) and wait for them, bounded; kill what is left."""
        live = [w for w in self.workers.values() if w.proc.poll() is None]
        for w in live:
            self.signal(w, signal.SIGCONT)
            self.signal(w, signal.SIGTERM)
        deadline = time.time() + self.c.stop_timeout + 15.0
        for w in live:
            try:
                code = w.proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                self.exits.append(f"{w.slot} pid {w.proc.pid}: did not exit after SIGTERM; killed")
                self.kill(w, time.time())
                continue
            w.ended_at = time.time()
            self.death_time.setdefault(w.proc.pid, w.ended_at)
            self.exits.append(f"{w.slot} pid {w.proc.pid}: final stop, exit {code}")

    def cleanup(self) -> None:
        """Kill every process group we started and close every proxy, whatever happened."""
        for w in self.all_procs:
            if w.proc.poll() is None:
                self.signal(w, signal.SIGKILL)
                self.signal(w, signal.SIGCONT)
                try:
                    w.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            w.out.close()
        for p in self.proxies.values():
            p.close()


def reanalyse(config: SoakConfig) -> Report:
    """Analyse a finished soak again from its directory (``runs.log`` and ``soak.json``)."""
    record = json.loads((config.directory / "soak.json").read_text())
    return analyse(
        config,
        config.directory / "runs.log",
        t0=record["t0"],
        chaos_end=record["chaos_end"],
        faults_end=record["faults_end"],
        quiet_end=record["quiet_end"],
        faults=[Fault(**{**f, "pids": tuple(f["pids"])}) for f in record["faults"]],
        slots={int(pid): slot for pid, slot in record["slots"].items()},
        death_time={int(pid): t for pid, t in record["death_time"].items()},
        exits=record["exits"],
        history=record.get("history"),
    )


def run_soak(config: SoakConfig) -> Report:
    """Run one soak against one backend and return its analysed report."""
    config.directory.mkdir(parents=True, exist_ok=True)
    return _Soak(config).run()


# ----------------------------------------------------------------------------- analysis
def analyse(
    c: SoakConfig,
    log_path: Path,
    *,
    t0: float,
    chaos_end: float,
    faults_end: float,
    quiet_end: float,
    faults: list[Fault],
    slots: dict[int, str],
    death_time: dict[int, float],
    exits: list[str],
    history: dict[str, Any] | None = None,
) -> Report:
    """Check the promises against the shared log (see the module docstring)."""
    report = Report(c, t0, chaos_end, faults_end, quiet_end, faults, slots, exits=exits)
    if history is not None:
        report.history_rows = int(history["rows"])
        report.history_twice = [(str(k), int(n)) for k, n in history["twice"]]
    starts: dict[tuple[str, int, str], float] = {}
    ends: dict[tuple[str, int, str], tuple[float, str]] = {}
    stopping: dict[int, float] = {}
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    for line in lines:
        f = line.split(" ")
        kind = f[0]
        try:
            if kind == "start":
                starts[(f[1], int(f[3]), f[2])] = float(f[2])
            elif kind == "end":
                ends[(f[1], int(f[4]), f[2])] = (float(f[3]), f[5])
            elif kind == "lost":
                pid, t = int(f[3]), float(f[2])
                report.lost.append((f[1], pid, t, _healthy(faults, pid, slots, t, c)))
            elif kind == "death":
                report.deaths.append(
                    f"{_rel(float(f[1]), t0)} pid {f[2]} ({slots.get(int(f[2]), '?')}) thread "
                    f"{f[3]}: {' '.join(f[4:])}"
                )
            elif kind == "error":
                report.errors[" ".join(f[3:])[:160]] += 1
            elif kind == "stopping":
                stopping[int(f[2])] = float(f[1])
            elif kind == "stopped":
                pid = int(f[2])
                when = "final" if float(f[1]) >= quiet_end - 1 else "during chaos"
                report.stops.append((pid, float(f[3]), f[4], when))
                stopping.pop(pid, None)
            elif kind == "hung":
                report.hung.append(f"pid {f[2]} stop() still running at {_rel(float(f[1]), t0)}")
            elif kind == "start-failed":
                report.start_failures += 1
            elif kind == "late":
                report.late_claims.append((f[1], float(f[2])))
        except (IndexError, ValueError):
            report.errors[f"unparsable log line: {line[:100]}"] += 1
    for pid, t in stopping.items():
        if not any(h.startswith(f"pid {pid} ") for h in report.hung):
            report.hung.append(f"pid {pid}: stop() began at {_rel(t, t0)} and never returned")

    runs: dict[str, list[Run]] = defaultdict(list)
    for key, start in starts.items():
        job, pid, _ = key
        if key in ends:
            end, how = ends[key]
        elif pid in death_time:
            end, how = death_time[pid], "killed"
        else:
            end, how = quiet_end, "unended"
        runs[job].append(Run(job, pid, start, end, how))
    report.runs = {job: sorted(r, key=lambda x: x.start) for job, r in runs.items()}
    _find_overlaps(report)
    _find_gaps(report)
    _find_lock_stalls(report)
    _find_recoveries(report)

    for message in report.overlaps:
        report.broken.append(f"overlap: {message.splitlines()[0]}")
    for job, (length, bound, begin) in sorted(report.gaps.items()):
        if length > bound:
            report.broken.append(
                f"{job} waited {length:.2f} s > {bound:.2f} s from {_rel(begin, t0)} after the "
                "faults stopped"
            )
    report.broken.extend(f"one locked row stalled other jobs: {s}" for s in report.lock_stalls)
    report.broken.extend(
        f"{job} lost its lease on pid {pid} ({slots.get(pid, '?')}) at {_rel(t, t0)} although "
        "no fault touched that host's link or process (a heartbeat waited behind something)"
        for job, pid, t, healthy in report.lost
        if healthy
    )
    report.broken.extend(f"thread death: {d}" for d in report.deaths)
    for pid, seconds, result, when in report.stops:
        if seconds > c.stop_timeout + STOP_SLACK:
            report.broken.append(
                f"stop({c.stop_timeout:g}) took {seconds:.2f} s on pid {pid} ({when}), {result}"
            )
    report.broken.extend(f"stop() unbounded: {h}" for h in report.hung)
    report.broken.extend(
        f"history: the run {claim} has {n} rows (a batch written twice)"
        for claim, n in report.history_twice
    )
    if history is not None:
        logged: Logged = defaultdict(list)
        for key, start in starts.items():
            end_of = ends.get(key)
            logged[(key[0], key[1])].append((start, None if end_of is None else end_of[0]))
        report.history_strays = _history_strays(history.get("all", []), logged, report)
        report.broken.extend(f"history: {stray}" for stray in report.history_strays)
        report.history_missing = _history_missing(history.get("all", []), logged, report)
        report.broken.extend(f"history: {missing}" for missing in report.history_missing)
    return report


Logged = dict[tuple[str, int], list[tuple[float, float | None]]]  # (job, pid) -> (start, end)


def _history_strays(rows: list[list[Any]], logged: Logged, r: Report) -> list[str]:
    """The history rows of runs on hosts no fault touched that match no logged run of that job
    on that host: its start, and its end when the row has one, within HISTORY_SLACK seconds
    (the history's times are on the database clock, the log's on the host's: one machine)."""
    strays: list[str] = []
    for job, host, started_ms, ended_ms in rows:
        pid = _pid_of(host)
        if pid is None:
            strays.append(f"{job}: a row with the host {host!r}, which names no process")
            continue
        started = started_ms / 1000
        ended = None if ended_ms is None else ended_ms / 1000
        times = [started] if ended is None else [started, ended]
        if not all(_healthy(r.faults, pid, r.slots, t, r.config) for t in times):
            continue
        if not any(_fits(run, started, ended) for run in logged.get((job, pid), [])):
            end_text = "open" if ended is None else f"ended {r.rel(ended):.3f}"
            strays.append(
                f"{job} on pid {pid} ({r.slots.get(pid, '?')}) started {r.rel(started):.3f}, "
                f"{end_text}: no logged run of that job on that host matches"
            )
    return strays


def _history_missing(rows: list[list[Any]], logged: Logged, r: Report) -> list[str]:
    """The logged runs of hosts whose final stop() returned True (everything queued was
    written) that have no history row: started within HISTORY_SLACK seconds, same job, same
    host."""
    flushed = {pid for pid, _, result, when in r.stops if when == "final" and result == "True"}
    starts: dict[tuple[str, int], list[float]] = defaultdict(list)
    for job, host, started_ms, _ in rows:
        pid = _pid_of(host)
        if pid in flushed:
            starts[(job, pid)].append(started_ms / 1000)
    missing: list[str] = []
    for (job, pid), runs in sorted(logged.items()):
        if pid not in flushed:
            continue
        for start, _ in runs:
            if not any(abs(start - s) <= HISTORY_SLACK for s in starts.get((job, pid), [])):
                missing.append(
                    f"{job} on pid {pid} ({r.slots.get(pid, '?')}) started {r.rel(start):.3f}: "
                    "no history row, although its host stopped cleanly"
                )
    return missing


def _pid_of(host: object) -> int | None:
    """The process id in a host identity (``name:pid:suffix``)."""
    try:
        return int(str(host).split(":")[-2])
    except (IndexError, ValueError):
        return None


def _fits(run: tuple[float, float | None], started: float, ended: float | None) -> bool:
    """Whether a history row (``started``, ``ended``) is the logged ``run`` (start, end)."""
    start, end = run
    if abs(start - started) > HISTORY_SLACK:
        return False
    return ended is None or (end is not None and abs(end - ended) <= HISTORY_SLACK)


def _history_rows(c: SoakConfig) -> dict[str, Any]:
    """The run history the hosts wrote: how many rows, and every run (job and claim id: a batch
    of claims shares one id) with more than one."""
    from sqlalchemy import MetaData, create_engine, func, select

    from recurjobs.sql._history_table import runs_table

    runs = runs_table(MetaData(), c.table_prefix)
    engine = create_engine(c.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(runs)).scalar_one()
            count = func.count().label("n")
            twice = (
                select(runs.c.job, runs.c.claim_id, count)
                .where(runs.c.claim_id.is_not(None))
                .group_by(runs.c.job, runs.c.claim_id)
                .having(func.count() > 1)
            )
            every = select(runs.c.job, runs.c.host, runs.c.started_ms, runs.c.ended_ms)
            rows_all = [
                [j, h, int(s), None if e is None else int(e)] for j, h, s, e in conn.execute(every)
            ]
            found = conn.execute(twice).all()
            shown = []
            for job, claim, n in found:
                same = select(runs).where(runs.c.job == job, runs.c.claim_id == claim)
                rows_of = [
                    " ".join(f"{k}={v}" for k, v in r._mapping.items() if k != "error")
                    for r in conn.execute(same.order_by(runs.c.id))
                ]
                shown.append([f"{job} {claim}: " + " | ".join(rows_of), int(n)])
            return {"rows": int(rows), "twice": shown, "all": rows_all}
    finally:
        engine.dispose()


def _rel(t: float, t0: float) -> str:
    return f"t={t - t0:.2f}"


def _healthy(faults: list[Fault], pid: int, slots: dict[int, str], t: float, c: SoakConfig) -> bool:
    """Whether no fault touched this host's link or process in the lease before ``t``."""
    lease = c.longest_lease
    slot = slots.get(pid, "?")
    return not any(
        f.hits(pid, slot) and f.begin <= t and f.end >= t - lease
        for f in faults
        if f.kind != "kill"  # a kill of another process does not touch this one
    )


def _find_overlaps(report: Report) -> None:
    c, t0 = report.config, report.t0
    for job, runs in report.runs.items():
        lease = c.period(job) + c.max_execution_time
        for i, a in enumerate(runs):
            for b in runs[i + 1 :]:
                if b.start >= a.end:
                    break
                window = (a.start - lease, b.end)
                frozen = next(
                    (
                        f
                        for f in report.faults
                        if f.kind == "longstop"
                        and a.pid in f.pids
                        and a.start <= f.begin <= b.start <= f.end + 1.0
                    ),
                    None,
                )
                near = [
                    f.text(t0) for f in report.faults if f.end >= window[0] and f.begin <= window[1]
                ]
                text = (
                    f"{job}: pid {a.pid} ({report.slots.get(a.pid, '?')}) ran "
                    f"{a.start - t0:.2f}-{a.end - t0:.2f} ({a.how}) and pid {b.pid} "
                    f"({report.slots.get(b.pid, '?')}) ran {b.start - t0:.2f}-{b.end - t0:.2f} "
                    f"({b.how}): {min(a.end, b.end) - b.start:.2f} s together\n"
                    + "\n".join(f"    fault near: {n}" for n in near)
                )
                if frozen is not None:
                    after = max(0.0, min(a.end, b.end) - max(frozen.end, b.start))
                    if after <= WAKE_SLACK:
                        report.frozen_overlaps.append((text.splitlines()[0], after))
                        continue
                    text = f"{text}\n    (frozen until {frozen.end - t0:.2f}, ran on {after:.2f} s)"
                report.overlaps.append(text)


def _find_gaps(report: Report) -> None:
    c = report.config
    begin, end = report.faults_end, report.quiet_end
    for job, period, _, _ in c.jobs:
        # Idle time: from the faults' end (or a run's end) to the next start, and from the
        # last run's end to the end of the quiet phase.
        longest, at = _idle_within(report.runs.get(job, []), begin, end)
        report.gaps[job] = (longest, c.bound(period), at)


def _idle_within(runs: list[Run], begin: float, end: float) -> tuple[float, float]:
    """The longest stretch of [begin, end] no run covers, and where it starts."""
    free_from, longest, at = begin, 0.0, begin
    for run in runs:
        if run.end <= begin or run.start >= end:
            continue
        if run.start - free_from > longest:
            longest, at = run.start - free_from, free_from
        free_from = max(free_from, run.end)
    if end - free_from > longest:
        longest, at = end - free_from, free_from
    return longest, at


def _find_lock_stalls(report: Report) -> None:
    """While one host holds a claimed row locked, the other jobs must still be claimed.

    Checked for every held COMMIT that no other fault disturbed (only kills, drops, restarts and
    short SIGSTOPs may overlap it: the bound allows for those). The held rows' jobs are not
    judged: a batch claim may hold several rows, and each of them is reported by its host as a
    claim confirmed too late to run once the COMMIT is let go (``late`` records). Without such a
    record, the job with the longest idle time in the window is taken to be the held row's.
    """
    c, t0 = report.config, report.t0
    harmless = {"drop", "kill", "sigstop", "restart"}
    for hold in report.faults:
        if hold.kind != "lockhold" or not hold.note.startswith("a claim"):
            continue
        window = (hold.begin - c.longest_lease, hold.end)
        if any(
            f is not hold
            and f.kind not in harmless
            and not (f.kind == "lockhold" and not f.note.startswith("a claim"))  # never held
            and f.end >= window[0]
            and f.begin <= window[1]
            for f in report.faults
        ):
            continue
        report.lock_windows += 1
        idle = {
            job: _idle_within(report.runs.get(job, []), hold.begin, hold.end) for job, *_ in c.jobs
        }
        held = {
            job
            for job, t in report.late_claims
            if hold.begin <= t <= hold.end + c.longest_lease and job in idle
        } or {max(idle, key=lambda j: idle[j][0])}
        for job, (length, at) in sorted(idle.items()):
            if job not in held and length > c.bound(c.period(job)):
                report.lock_stalls.append(
                    f"{job} idle {length:.2f} s from {at - t0:.2f} while {hold.target} held a "
                    f"claim's COMMIT {hold.begin - t0:.2f}-{hold.end - t0:.2f} (bound "
                    f"{c.bound(c.period(job)):.2f} s; held rows: {', '.join(sorted(held))})"
                )


def _find_recoveries(report: Report) -> None:
    """Informational figures: how soon a job interrupted by a fault ran again elsewhere, and how
    soon the cluster ran anything after a fault that hit every host."""
    c, t0 = report.config, report.t0
    for fault in report.faults:
        if fault.kind in ("kill", "longstop"):
            for job, runs in report.runs.items():
                cut = [
                    r for r in runs if r.pid in fault.pids and r.start <= fault.begin < r.end + 0.01
                ]
                if not cut:
                    continue
                later = [r.start for r in runs if r.pid not in fault.pids and r.start > fault.begin]
                if later:
                    lease = c.period(job) + c.max_execution_time
                    report.takeovers.append((job, fault.kind, min(later) - fault.begin, lease))
        elif fault.target == "all" and fault.kind in ("stall", "refuse"):
            first = min(
                (r.start for runs in report.runs.values() for r in runs if r.start > fault.end),
                default=math.inf,
            )
            what = f"{fault.kind} {fault.end - fault.begin:g} s ending at {fault.end - t0:.2f}"
            report.recoveries.append((what, first - fault.end))
