"""Triggers reach the job: a process that is not the main instance forwards them.

recurjobs._forward sends, recurjobs._listener answers in the main instance.
The fast tests run the listener in this process (a host that holds the MainDom lock) and talk to
it through ``send_trigger``; the ``multiprocess`` ones put the main instance in a child process,
and the last one runs a real gunicorn with three workers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from datetime import datetime, timedelta, tzinfo
from functools import partial
from pathlib import Path

import pytest
from flask import Flask

from recurjobs import (
    INFINITE,
    CancellationToken,
    Cron,
    JobExecuted,
    JobHost,
    MainDom,
    NextExecution,
    RecurringJob,
    TriggerableJob,
    _forward,
    _listener,
)
from recurjobs._forward import (
    Reply,
    decode_delay,
    job_id,
    send_job_action,
    send_trigger,
    status_from_wire,
    status_to_wire,
)
from recurjobs.flask import RecurJobs
from tests.apps.forward_jobs import Append, Other
from tests.apps.procs import child_env, free_port, lines, python, script, stop_group, wait_until

if sys.platform != "win32":
    import fcntl

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets")

KEY = "forward-test"


class Counted(RecurringJob, TriggerableJob):
    """Runs only when triggered; counts its runs and sets an event at each."""

    def __init__(self) -> None:
        super().__init__(INFINITE, delay=INFINITE)
        self.runs = 0
        self.ran = threading.Event()

    def run(self, token: CancellationToken) -> None:
        self.runs += 1
        self.ran.set()


class Plain(RecurringJob):
    """Not triggerable."""

    def __init__(self) -> None:
        super().__init__(INFINITE, delay=INFINITE)

    def run(self, token: CancellationToken) -> None:
        pass


@pytest.fixture
def hosts() -> Iterator[list[JobHost]]:
    """Hosts a test starts; stopped (and their MainDom released) afterwards."""
    made: list[JobHost] = []
    yield made
    for host in made:
        host.stop()
        if host.gates.main_dom is not None:
            host.gates.main_dom.release()


def main_host(hosts: list[JobHost], directory: Path, *jobs: object) -> JobHost:
    """A started host with ``jobs`` that holds the MainDom lock for KEY in ``directory``."""
    main_dom = MainDom(KEY, directory=str(directory))
    host = JobHost(jobs, main_dom=main_dom).start()
    hosts.append(host)
    assert main_dom.try_acquire()
    return host


def send(host: JobHost, job: object, **kwargs: object) -> Reply:
    """Forward a trigger of ``job`` (registered with ``host``) through the socket."""
    main_dom = host.gates.main_dom
    assert main_dom is not None
    strategy = kwargs.pop("strategy", NextExecution.NONE)
    next_delay = kwargs.pop("next_delay", None)
    return send_trigger(main_dom, job, host.jobs, strategy, next_delay)  # type: ignore[arg-type]


def raw_request(path: str, payload: bytes) -> dict[str, object]:
    """Send one raw line to the listener at ``path`` and decode its one-line answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(path)
        sock.sendall(payload)
        answer = sock.makefile("rb").readline()
    return json.loads(answer)  # type: ignore[no-any-return]


@contextmanager
def foreign_holder(main_dom: MainDom) -> Iterator[None]:
    """Hold ``main_dom``'s lock through a separate open file, as another process without a
    listener would."""
    fd = os.open(main_dom.path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


@contextmanager
def fake_main_instance(path: str, answer: bytes | None) -> Iterator[None]:
    """Listen on ``path`` as a main instance would, reading each request; reply ``answer``, or
    (None) keep the connection open and never answer (a hung process)."""
    kept: list[socket.socket] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(8)
        server.settimeout(0.05)
        done = threading.Event()

        def serve() -> None:
            while not done.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                conn.settimeout(2)
                with suppress(OSError):
                    conn.makefile("rb").readline()
                    if answer is not None:
                        conn.sendall(answer)
                kept.append(conn)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(5)
            for conn in kept:
                conn.close()


# -------------------------------------------------------------------------- pure parts
@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (None, None),
        ("infinite", INFINITE),
        (0, timedelta(0)),
        (2.5, timedelta(seconds=2.5)),
    ],
)
def test_decode_delay(encoded: object, expected: timedelta | None) -> None:
    """The request's next_delay decodes to None, INFINITE or seconds."""
    assert expected == decode_delay(encoded)


@pytest.mark.parametrize("encoded", [-1, "soon", True, float("inf"), float("nan"), [1]])
def test_decode_delay_refuses(encoded: object) -> None:
    """Anything else in next_delay is a ValueError naming it."""
    with pytest.raises(ValueError, match="bad next_delay"):
        decode_delay(encoded)


def test_job_id_is_module_and_qualname() -> None:
    """A job class is named the same way in every process: ``module:qualname``."""
    assert "tests.apps.forward_jobs:Append" == job_id(Append)


def test_socket_path_beside_the_lock_then_short_then_none(tmp_path: Path) -> None:
    """The socket sits beside the lock file, falls back to a short name, else is None."""
    main_dom = MainDom(KEY, directory="/")
    assert main_dom.path[: -len(".lock")] + ".sock" == main_dom.socket_path
    room = 107 if sys.platform.startswith("linux") else 103
    long_dir = tmp_path / ("d" * (room - len(str(tmp_path)) - 30))
    long_dir.mkdir()
    short = MainDom(KEY, directory=str(long_dir)).socket_path
    assert short is not None
    assert (str(long_dir), True) == (os.path.dirname(short), os.path.basename(short)[:3] == "rj-")
    longer = tmp_path / ("e" * (room - len(str(tmp_path)) - 10))
    longer.mkdir()
    assert None is MainDom(KEY, directory=str(longer)).socket_path


# ------------------------------------------------------------------ listener, in-process
def test_forwarded_trigger_runs_the_job_once(tmp_path: Path, hosts: list[JobHost]) -> None:
    """A request through the socket triggers the main instance's job: accepted, one run."""
    job = Counted()
    host = main_host(hosts, tmp_path, job)
    executed: list[object] = []
    host.subscribe(JobExecuted, lambda n: executed.append(n.job))
    assert Reply(True, "accepted", os.getpid()) == send(host, job)
    assert job.ran.wait(5)
    host.stop()
    assert [job] == executed


def test_socket_is_owner_only_and_removed_at_stop(tmp_path: Path, hosts: list[JobHost]) -> None:
    """The socket file has mode 0o600 while listening and is gone after stop()."""
    host = main_host(hosts, tmp_path, Counted())
    path = host.gates.main_dom.socket_path  # type: ignore[union-attr]
    assert path is not None
    info = os.lstat(path)
    assert (True, 0o600) == (stat.S_ISSOCK(info.st_mode), stat.S_IMODE(info.st_mode))
    host.stop()
    assert False is os.path.exists(path)
    assert [] == [t for t in threading.enumerate() if t.name == "recurjobs-trigger-listener"]


NOBODY = 65534  # the uid and gid a child drops to, to stand for another local user


def become_nobody() -> None:
    """In a forked child of root: drop to uid and gid NOBODY, with no supplementary groups."""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def as_other_user(directory: Path, name: str, payload: bytes) -> str:
    """From a forked child that drops root for uid and gid NOBODY, send ``payload`` to the
    socket ``name`` in ``directory``; the answer line, or the name of the error it met.

    The child enters ``directory`` before it drops root, so only that directory (not its
    parents) must let the other user through; its credentials are those of its connect().
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, which never returns
        try:
            os.close(read_end)
            os.chdir(directory)
            become_nobody()
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(3)
                    sock.connect(name)
                    time.sleep(0.1)  # a listener that answered before reading has closed
                    sock.sendall(payload)
                    answer = sock.makefile("rb").readline().decode()
            except OSError as exc:
                answer = type(exc).__name__
            os.write(write_end, answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="a peer of another user needs root to make (setuid) and SO_PEERCRED to be told",
)
def test_a_peer_of_another_user_is_refused_by_the_mode_and_by_its_uid(
    tmp_path: Path, hosts: list[JobHost]
) -> None:
    """Another local user (a child that dropped root for uid 65534) cannot connect: the socket
    is mode 0600. With the mode opened to everyone (a file system that ignores it), the
    listener still refuses that peer by its uid (SO_PEERCRED) and the job does not run; the
    same request from our own user is accepted."""
    job = Counted()
    host = main_host(hosts, tmp_path, job)
    path = host.gates.main_dom.socket_path  # type: ignore[union-attr]
    assert path is not None
    request = {"job": job_id(Counted), "index": 0, "count": 1, "strategy": "NONE"}
    payload = json.dumps({**request, "next_delay": None, "expires": time.time() + 30}).encode()
    os.chmod(tmp_path, 0o711)  # let the other user reach the socket's directory
    by_mode = as_other_user(tmp_path, os.path.basename(path), payload + b"\n")
    os.chmod(path, 0o666)
    by_uid = json.loads(as_other_user(tmp_path, os.path.basename(path), payload + b"\n"))
    refused_runs = job.runs
    own = raw_request(path, payload + b"\n")
    assert "PermissionError" == by_mode
    assert (False, "refused: the sender runs as another user") == (
        by_uid["accepted"],
        by_uid["reason"],
    )
    assert (0, True, True) == (refused_runs, own["accepted"], job.ran.wait(5))


def test_start_takes_a_free_lock_and_listens_at_once(tmp_path: Path, hosts: list[JobHost]) -> None:
    """start() takes a free lock at once, so triggers reach it before any run (delay INFINITE)."""
    job = Counted()
    main_dom = MainDom(KEY, directory=str(tmp_path))
    host = JobHost([job], main_dom=main_dom).start()
    hosts.append(host)
    assert (True, True) == (main_dom.is_main, os.path.exists(str(main_dom.socket_path)))
    assert True is send(host, job).accepted


def test_refusals_name_the_reason(tmp_path: Path, hosts: list[JobHost]) -> None:
    """Unknown job, different registrations, not triggerable, expired or bad requests: refused."""
    mine = Counted()
    host = main_host(hosts, tmp_path, mine, Plain())
    stranger = JobHost([Other(), Counted(), Counted()])  # never started: only builds requests
    main_dom = host.gates.main_dom
    assert main_dom is not None
    unknown = send_trigger(main_dom, stranger.jobs[0], stranger.jobs, NextExecution.NONE, None)
    assert (False, "no job tests.apps.forward_jobs:Other is registered") == (
        unknown.accepted,
        unknown.reason[: len("no job tests.apps.forward_jobs:Other is registered")],
    )
    twice = send_trigger(main_dom, stranger.jobs[2], stranger.jobs, NextExecution.NONE, None)
    assert (False, True) == (twice.accepted, "registered 1 times" in twice.reason)
    plain = send(host, host.jobs[1])
    assert (False, True) == (plain.accepted, "TriggerableJob" in plain.reason)
    path = main_dom.socket_path
    assert path is not None
    request = {"job": job_id(Counted), "index": 0, "count": 1, "strategy": "NONE"}
    late = {**request, "next_delay": None, "expires": time.time() - 1}
    answer = raw_request(path, json.dumps(late).encode() + b"\n")
    assert (False, "the request arrived after its sender stopped waiting") == (
        answer["accepted"],
        answer["reason"],
    )
    bad = raw_request(
        path, json.dumps({**request, "next_delay": -3, "expires": 1e12}).encode() + b"\n"
    )
    assert False is bad["accepted"]
    garbage = raw_request(path, b"not json\n")
    assert (False, "bad request b'not json\\n'") == (garbage["accepted"], garbage["reason"])
    assert 0 == mine.runs
    assert Reply(True, "accepted", os.getpid()) == send(host, mine)  # the listener lives on


def test_hosts_of_one_process_share_one_listener(tmp_path: Path, hosts: list[JobHost]) -> None:
    """Two hosts on one key share the listener: a request finds the host that has the job,
    and the socket stays until the last of them stops."""
    first, second = Counted(), Other()
    host_a = main_host(hosts, tmp_path, first)
    host_b = main_host(hosts, tmp_path, second)
    path = host_a.gates.main_dom.socket_path  # type: ignore[union-attr]
    assert path is not None
    assert True is send(host_b, second).accepted
    assert True is send(host_a, first).accepted
    host_a.stop()
    assert (True, True) == (os.path.exists(path), send(host_b, second).accepted)
    host_b.stop()
    assert False is os.path.exists(path)


def test_same_job_class_in_two_hosts_is_refused(tmp_path: Path, hosts: list[JobHost]) -> None:
    """When two hosts of the main instance have the job's class, the trigger is refused."""
    host_a = main_host(hosts, tmp_path, Counted())
    main_host(hosts, tmp_path, Counted())
    reply = send(host_a, host_a.jobs[0])
    assert (False, True) == (reply.accepted, "several hosts" in reply.reason)


def test_instances_are_matched_by_position(tmp_path: Path, hosts: list[JobHost]) -> None:
    """With two instances of one class, a request for the second runs the second."""
    first, second = Counted(), Counted()
    host = main_host(hosts, tmp_path, first, second)
    twin = JobHost([Counted(), Counted()])  # the same code in another process
    main_dom = host.gates.main_dom
    assert main_dom is not None
    reply = send_trigger(main_dom, twin.jobs[1], twin.jobs, NextExecution.NONE, None)
    assert True is reply.accepted
    assert second.ran.wait(5)
    assert (0, 1) == (first.runs, second.runs)


def test_a_never_started_host_forwards_to_the_main_instance(
    tmp_path: Path, hosts: list[JobHost]
) -> None:
    """A web process whose host is not started (its jobs run in a worker process of their own)
    triggers through the main instance: accepted there, one run there; after stop(), a host no
    longer forwards."""
    job = Counted()
    main_host(hosts, tmp_path, job)
    web = JobHost([Counted()], main_dom=MainDom(KEY, directory=str(tmp_path)))
    assert web.trigger(Counted)
    assert job.ran.wait(5)
    assert 1 == job.runs
    web.start()
    web.stop()
    assert False is web.trigger(Counted)


@pytest.mark.parametrize("twice", [False, True], ids=["unknown-job", "in-two-hosts"])
def test_a_refusal_is_logged_by_the_sender_with_the_main_instance_s_reason(
    tmp_path: Path, hosts: list[JobHost], caplog: pytest.LogCaptureFixture, twice: bool
) -> None:
    """A trigger the main instance refuses (a job it does not have, or has in two hosts) is
    False in the sending process, with one warning there that carries the main instance's
    reason; nothing runs."""
    job = Counted()
    main_host(hosts, tmp_path, job, Plain())
    if twice:
        main_host(hosts, tmp_path, Counted())
    sent: type[Counted | Other] = Counted if twice else Other
    web = JobHost([sent()], main_dom=MainDom(KEY, directory=str(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="recurjobs.forward"):
        accepted = web.trigger(sent)
    reason = (
        f"{job_id(Counted)} is registered with several hosts in the main instance"
        if twice
        else f"no job {job_id(Other)} is registered in the main instance"
    )
    assert (False, 0) == (accepted, job.runs)
    assert [f"trigger of {job_id(sent)} was not run: {reason}"] == [
        r.getMessage() for r in caplog.records if r.name == "recurjobs.forward"
    ]


@pytest.mark.parametrize("main", ["none", "hung"])
def test_a_never_started_host_is_false_when_no_main_instance_answers(
    tmp_path: Path, main: str
) -> None:
    """A never-started host whose trigger no main instance answers (none listens, or one
    hangs) gets False within about 1 s, and runs nothing itself."""
    job = Counted()
    web = JobHost([job], main_dom=MainDom(KEY, directory=str(tmp_path)))
    path = web.gates.main_dom.socket_path  # type: ignore[union-attr]
    assert path is not None
    listening = fake_main_instance(path, None) if main == "hung" else nullcontext()
    with listening:
        began = time.monotonic()
        accepted = web.trigger(Counted)
        took = time.monotonic() - began
    assert (False, True, 0) == (accepted, took < 1.5, job.runs), took


def test_a_refused_forwarded_trigger_says_why(tmp_path: Path, hosts: list[JobHost]) -> None:
    """The main instance refuses a trigger of a paused job, and its reply says so."""
    job = Counted()
    host = main_host(hosts, tmp_path, job)
    assert host.pause(job)
    assert Reply(False, "the main instance refused it: the job is paused", os.getpid()) == send(
        host, job
    )


def test_not_main_and_nobody_listening_is_false_at_once(
    tmp_path: Path, hosts: list[JobHost], caplog: pytest.LogCaptureFixture
) -> None:
    """When the lock holder has no listener, trigger() is False at once, nothing runs, and one
    warning says why."""
    job = Counted()
    main_dom = MainDom(KEY, directory=str(tmp_path))
    host = JobHost([job], main_dom=main_dom)
    hosts.append(host)
    with foreign_holder(main_dom), caplog.at_level(logging.WARNING, logger="recurjobs.forward"):
        host.start()
        started = time.monotonic()
        assert False is host.trigger(Counted)
        elapsed = time.monotonic() - started
    assert (True, 0) == (elapsed < 0.5, job.runs)
    warning = f"trigger of {job_id(Counted)} was not run: no main instance listens on "
    assert [warning] == [r.getMessage()[: len(warning)] for r in caplog.records]


def test_main_instance_dying_mid_request_is_false_at_once(tmp_path: Path) -> None:
    """A main instance that reads the request and then goes away without answering gives
    False at once, not after the timeout."""
    main_dom = MainDom(KEY, directory=str(tmp_path))
    path = main_dom.socket_path
    assert path is not None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)

        def die_after_reading() -> None:
            conn, _ = server.accept()
            conn.recv(4096)
            conn.close()

        thread = threading.Thread(target=die_after_reading)
        thread.start()
        started = time.monotonic()
        reply = send_trigger(main_dom, Counted(), (), NextExecution.NONE, None)
        elapsed = time.monotonic() - started
        thread.join()
    assert (False, True) == (reply.accepted, elapsed < 0.5)
    assert "closed before answering" in reply.reason


def test_becoming_main_later_starts_the_listener(tmp_path: Path, hosts: list[JobHost]) -> None:
    """A process that becomes main when the holder goes starts listening then."""
    job = Counted()
    main_dom = MainDom(KEY, directory=str(tmp_path))
    host = JobHost([job], main_dom=main_dom)
    hosts.append(host)
    path = main_dom.socket_path
    assert path is not None
    with foreign_holder(main_dom):
        host.start()
        assert (False, False) == (host.trigger(Counted), os.path.exists(path))
    assert True is host.trigger(Counted)  # main now: runs here, and listens
    assert job.ran.wait(5)
    job.ran.clear()
    assert (True, True) == (os.path.exists(path), send(host, job).accepted)
    assert job.ran.wait(5)
    assert 2 == job.runs


def test_trigger_during_delivery_is_not_forwarded_to_itself(
    tmp_path: Path, hosts: list[JobHost]
) -> None:
    """While the listener delivers, a lost lock makes trigger() False instead of a self-call."""
    _forward.delivering.active = True
    try:
        main_dom = MainDom(KEY, directory=str(tmp_path))
        reply = send_trigger(main_dom, Counted(), (), NextExecution.NONE, None)
    finally:
        _forward.delivering.active = False
    assert (False, True) == (reply.accepted, "lost the main instance lock" in reply.reason)


def test_without_unix_sockets_triggers_are_false_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where AF_UNIX is missing (Windows) forwarding is off: False and one warning."""
    monkeypatch.setattr(_forward, "SUPPORTED", False)
    monkeypatch.setattr(_listener, "_warned_unsupported", False)
    job = Counted()
    main_dom = MainDom(KEY, directory=str(tmp_path))
    host = JobHost([job], main_dom=main_dom)
    with caplog.at_level(logging.WARNING, logger="recurjobs.forward"):
        try:
            with foreign_holder(main_dom):
                host.start()
                assert False is host.trigger(Counted)
        finally:
            host.stop()
    assert 2 == len([r for r in caplog.records if r.levelno == logging.WARNING])
    assert "needs Unix sockets" in caplog.text


def test_occupied_socket_path_is_left_alone(
    tmp_path: Path, hosts: list[JobHost], caplog: pytest.LogCaptureFixture
) -> None:
    """Something that is not a socket at the socket path is never removed; the main instance
    warns once and still runs its own jobs; others get False."""
    main_dom = MainDom(KEY, directory=str(tmp_path))
    path = main_dom.socket_path
    assert path is not None
    os.mkdir(path)
    job = Counted()
    with caplog.at_level(logging.WARNING, logger="recurjobs.forward"):
        host = main_host(hosts, tmp_path, job)
        assert True is host.trigger(Counted)
    assert job.ran.wait(5)
    assert (True, False) == (os.path.isdir(path), send(host, job).accepted)
    assert 1 == caplog.text.count("is not a socket is in the way")


def test_a_socket_that_could_not_be_made_is_retried_after_5_s_not_before(
    tmp_path: Path, hosts: list[JobHost], caplog: pytest.LogCaptureFixture
) -> None:
    """After a failed attempt (the path taken), the main instance's checks do not try again
    for 5 s; the first check after that listens, without a second warning."""
    main_dom = MainDom(KEY, directory=str(tmp_path))
    path = main_dom.socket_path
    assert path is not None
    os.mkdir(path)
    job = Counted()
    with caplog.at_level(logging.WARNING, logger="recurjobs.forward"):
        host = main_host(hosts, tmp_path, job)
        listener = _listener._listeners[main_dom.path]
        wait = listener.retry_at - time.monotonic()
        os.rmdir(path)
        assert True is host.trigger(Counted)  # a check of the gates, within the 5 s
        assert job.ran.wait(5)
        retried_early = os.path.exists(path)
        listener.retry_at = time.monotonic()  # stands for the 5 s having passed
        job.ran.clear()
        assert True is host.trigger(Counted)
        assert job.ran.wait(5)
    assert (True, False) == (4.0 < wait <= 5.0, retried_early)
    assert (True, True) == (os.path.exists(path), send(host, job).accepted)
    assert 1 == caplog.text.count("triggers from other processes will return False")


def test_a_directory_too_long_for_a_socket_is_one_warning_and_own_jobs_run(
    tmp_path: Path, hosts: list[JobHost], caplog: pytest.LogCaptureFixture
) -> None:
    """No socket path fits (directory too long): the main instance warns once and runs its own
    triggers; another host's trigger is False, saying why."""
    room = 107 if sys.platform.startswith("linux") else 103
    longer = tmp_path / ("e" * (room - len(str(tmp_path)) - 10))
    longer.mkdir()
    job = Counted()
    with caplog.at_level(logging.WARNING, logger="recurjobs.forward"):
        host = main_host(hosts, longer, job)
        assert True is host.trigger(Counted)
        assert job.ran.wait(5)
        web = JobHost([Counted()], main_dom=MainDom(KEY, directory=str(longer)))
        forwarded = web.trigger(Counted)
    too_long = "is too long for a Unix socket"
    assert (None, False) == (host.gates.main_dom.socket_path, forwarded)  # type: ignore[union-attr]
    assert [True, True] == [
        too_long in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    ]
    assert "triggers from other processes will return False" in caplog.records[0].getMessage()


# ------------------------------------------------------------------------- Flask command
def command_app(tmp_path: Path) -> Flask:
    """A Flask app whose host is not started, with the main instance lock of ``KEY`` in
    ``tmp_path``: what `flask recurjobs ...` commands run with."""
    app = Flask("command")
    app.config.update(
        RECURJOBS_AUTOSTART=False,
        RECURJOBS_MAIN_DOM=KEY,
        RECURJOBS_MAIN_DOM_DIRECTORY=str(tmp_path),
    )
    RecurJobs(app, jobs=[Counted()])
    return app


def test_flask_trigger_command_forwards_to_the_main_instance(
    tmp_path: Path, hosts: list[JobHost]
) -> None:
    """`flask recurjobs trigger NAME` for a recurring job is accepted by the main instance."""

    job = Counted()
    main_host(hosts, tmp_path, job)
    app = command_app(tmp_path)
    result = app.test_cli_runner().invoke(args=["recurjobs", "trigger", "Counted"])
    assert (0, f"triggered Counted: the main instance (pid {os.getpid()}) accepted it\n") == (
        result.exit_code,
        result.output,
    )
    assert job.ran.wait(5)


def test_status_pause_and_resume_reach_the_main_instance(
    tmp_path: Path, hosts: list[JobHost]
) -> None:
    """A process whose jobs run in the main instance (here a host never started) reads their
    status from it and pauses and resumes them there; what the dashboard mounted in a web
    worker shows and does."""
    from recurjobs.dashboard._actions import remote_statuses

    job = Counted()
    main = main_host(hosts, tmp_path, job)
    web = JobHost([Counted()], main_dom=MainDom(KEY, directory=str(tmp_path)))
    assert web.trigger(Counted)
    assert job.ran.wait(5)
    wait_until(lambda: main.status()[0].runs == 1, 5, "the run counted")
    statuses = remote_statuses(web)
    assert statuses is not None
    assert [("Counted", "recurring", 1, True)] == [
        (s.name, s.kind, s.runs, s.alive) for s in statuses
    ]
    assert send_job_action(web.gates.main_dom, web.jobs[0], web.jobs, "pause").accepted  # type: ignore[arg-type]
    assert (True, True) == (main.status()[0].paused, remote_statuses(web)[0].paused)  # type: ignore[index]
    assert False is web.trigger(Counted)  # refused there: the job is paused
    assert send_job_action(web.gates.main_dom, web.jobs[0], web.jobs, "resume").accepted  # type: ignore[arg-type]
    assert False is main.status()[0].paused


@pytest.mark.parametrize("action", ["trigger", "pause", "resume"])
def test_a_trigger_the_sender_gave_up_on_never_runs(
    tmp_path: Path, hosts: list[JobHost], action: str
) -> None:
    """The main instance's host is busy (its lock held until the sender has given up, as
    while adding a job whose database is slow): the sender gets False after its 1 s, not when
    the lock is released, and the trigger, pause or resume is never carried out later."""
    job = Counted()
    main = main_host(hosts, tmp_path, job)
    if action == "resume":
        assert main.pause(job)
    web = JobHost([Counted()], main_dom=MainDom(KEY, directory=str(tmp_path)))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with main._lock:
            held.set()
            release.wait(5.0)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    began = time.monotonic()
    if action == "trigger":
        done = web.trigger(Counted)
    else:
        main_dom = web.gates.main_dom
        assert main_dom is not None
        done = send_job_action(main_dom, web.jobs[0], web.jobs, action).accepted
    took = time.monotonic() - began
    release.set()  # only now: a sender waiting for the lock would have taken 5 s
    holder.join(5)
    ran = job.ran.wait(0.5)  # time for a late delivery to show
    assert (False, True) == (done, 0.8 <= took < 3.0), took
    assert (False, action == "resume") == (ran, main.status()[0].paused)


class _Own(tzinfo):
    """A zone of one's own: no name a Cron could be made from again."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "OWN"


class OwnZone(RecurringJob):
    """A calendar job in a zone no name stands for."""

    def __init__(self) -> None:
        super().__init__(Cron("0 3 * * *", tz=_Own()), delay=INFINITE)

    def run(self, token: CancellationToken) -> None:
        pass


def test_a_status_that_cannot_be_read_back_hides_only_that_job(
    tmp_path: Path, hosts: list[JobHost]
) -> None:
    """One job's calendar is in a zone no name stands for: the others' status still comes from
    the main instance; that one's comes from this process."""
    from recurjobs.dashboard._actions import remote_statuses

    job = Counted()
    main_host(hosts, tmp_path, job, OwnZone())
    web = JobHost([Counted(), OwnZone()], main_dom=MainDom(KEY, directory=str(tmp_path)))
    assert web.trigger(Counted)
    assert job.ran.wait(5)
    wait_until(lambda: hosts[0].status()[0].runs == 1, 5, "the run counted")
    statuses = remote_statuses(web)
    assert statuses is not None
    assert [("Counted", 1, True), ("OwnZone", 0, False)] == [
        (s.name, s.runs, s.alive) for s in statuses
    ]


def test_a_forwarded_trigger_runs_the_gates_without_the_hosts_lock(
    tmp_path: Path, hosts: list[JobHost]
) -> None:
    """runtime_ready takes an application lock; another thread holds that lock while it asks
    the host for its status. A forwarded trigger meanwhile must not hold the host's lock
    while it runs the gate: both finish, the trigger is accepted."""
    app_lock = threading.Lock()

    def ready() -> bool:
        with app_lock:
            return True

    job = Counted()
    main_dom = MainDom(KEY, directory=str(tmp_path))
    main = JobHost([job], main_dom=main_dom, runtime_ready=ready).start()
    hosts.append(main)
    assert main_dom.try_acquire()
    web = JobHost([Counted()], main_dom=MainDom(KEY, directory=str(tmp_path)))
    statuses: list[object] = []

    def status_under_the_app_lock() -> None:
        with app_lock:
            time.sleep(0.3)
            statuses.append(main.status())

    other = threading.Thread(target=status_under_the_app_lock)
    other.start()
    time.sleep(0.1)
    assert web.trigger(Counted)
    other.join(5)
    assert (False, 1) == (other.is_alive(), len(statuses))
    assert job.ran.wait(5)


@pytest.mark.parametrize(
    "main",
    [
        pytest.param("none", id="none-listens"),
        pytest.param("hung", id="hung"),
        pytest.param("older", id="older-version"),
    ],
)
def test_without_an_answer_a_worker_shows_its_own_view_and_reports_not_done(
    tmp_path: Path, main: str
) -> None:
    """No main instance listens, one hangs, or an older one does not know the status request:
    the dashboard's status falls back to this process's own view (None) and a pause asked of
    the main instance reports that it was not done, each within about 1 s."""
    from recurjobs.dashboard._actions import remote_statuses

    web = JobHost([Counted()], main_dom=MainDom(KEY, directory=str(tmp_path)))
    path = web.gates.main_dom.socket_path  # type: ignore[union-attr]
    assert path is not None
    older = b'{"accepted": false, "reason": "bad request", "pid": 1}\n'
    listening = (
        fake_main_instance(path, None if main == "hung" else older)
        if main != "none"
        else nullcontext()
    )
    with listening:
        began = time.monotonic()
        statuses = remote_statuses(web)
        status_took = time.monotonic() - began
        began = time.monotonic()
        reply = send_job_action(web.gates.main_dom, web.jobs[0], web.jobs, "pause")  # type: ignore[arg-type]
        pause_took = time.monotonic() - began
    expected = {
        "none": "no main instance listens",
        "hung": "the main instance did not answer within 1 s",
        "older": "bad request",
    }[main]
    assert (None, False, expected) == (statuses, reply.accepted, reply.reason[: len(expected)])
    assert (True, True) == (status_took < 1.5, pause_took < 1.5), (status_took, pause_took)


def test_status_wire_round_trip() -> None:
    """A status with a calendar, a period, times and counters comes back equal."""
    from datetime import UTC, datetime

    from recurjobs import Cron
    from recurjobs._status import JobStatus

    at = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    for period in (Cron("0 3 * * *", tz="Europe/Amsterdam"), timedelta(minutes=5), INFINITE):
        status = JobStatus("J", "recurring", period, at, at, "failed", 3, 1, True, True, True)
        assert status == status_from_wire(json.loads(json.dumps(status_to_wire(status))))


def test_flask_pause_command_pauses_a_recurring_job_in_the_main_instance(
    tmp_path: Path, hosts: list[JobHost]
) -> None:
    """`flask recurjobs pause NAME` for a recurring job pauses it where it runs."""

    main = main_host(hosts, tmp_path, Counted())
    app = command_app(tmp_path)
    runner = app.test_cli_runner()
    paused = runner.invoke(args=["recurjobs", "pause", "Counted"])
    was = main.status()[0].paused
    resumed = runner.invoke(args=["recurjobs", "resume", "Counted"])
    assert (0, f"paused Counted in the main instance (pid {os.getpid()})\n", True) == (
        paused.exit_code,
        paused.output,
        was,
    )
    assert (0, False) == (resumed.exit_code, main.status()[0].paused)


def test_flask_trigger_command_without_a_main_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no main instance listening, the command fails at once with one line and exit
    code 1."""
    # The sender's wait for an answer made long (30 s instead of 1 s), so that "at once" is
    # told from "waited" by a wide margin even on a busy machine.
    send = _forward.send_trigger
    monkeypatch.setattr(_forward, "send_trigger", partial(send, timeout=30.0))
    app = command_app(tmp_path)
    started = time.monotonic()
    result = app.test_cli_runner().invoke(args=["recurjobs", "trigger", "Counted"])
    elapsed = time.monotonic() - started
    assert (1, 1) == (result.exit_code, len(result.output.splitlines()))
    assert "Error: Counted was not triggered: no main instance listens on" in result.output
    assert elapsed < 15  # at once: not the sender's (here 30 s) wait for an answer


# ------------------------------------------------------------------ real child processes
class Child:
    """A ``tests.apps.forward_child`` process; ``out`` is the job's record file."""

    def __init__(self, tmp_path: Path, mode: str, name: str = "child") -> None:
        self.out = tmp_path / f"{name}.txt"
        command = [python(), "-m", "tests.apps.forward_child", str(tmp_path), KEY]
        self.proc = subprocess.Popen(
            [*command, str(self.out), mode],
            env=child_env(tmp_path),
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid

    def first_line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(20)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Child processes a test starts; killed afterwards if still alive."""
    made: list[Child] = []
    yield made
    for child in made:
        with_signal = child.proc.poll() is None
        if with_signal:
            os.kill(child.pid, signal.SIGCONT)
        child.kill()


def start_child(children: list[Child], tmp_path: Path, mode: str, name: str = "child") -> Child:
    """Start a child; for ``main`` wait until it holds the lock and listens."""
    child = Child(tmp_path, mode, name)
    children.append(child)
    if mode == "main":
        assert "main" == child.first_line()
    return child


def parent_host(hosts: list[JobHost], tmp_path: Path) -> tuple[JobHost, Path]:
    """This process's host on KEY with an Append job writing to parent.txt (not main)."""
    out = tmp_path / "parent.txt"
    host = JobHost([Append(str(out))], main_dom=MainDom(KEY, directory=str(tmp_path))).start()
    hosts.append(host)
    return host, out


@pytest.mark.slow
@pytest.mark.multiprocess
def test_trigger_from_another_process_runs_once_in_the_main_instance(
    tmp_path: Path, hosts: list[JobHost], children: list[Child]
) -> None:
    """trigger() in a non-main process is True and the main child runs the job exactly once."""
    main = start_child(children, tmp_path, "main")
    host, out = parent_host(hosts, tmp_path)
    assert True is host.trigger(Append)
    wait_until(lambda: lines(main.out), 10, "the child's run")
    assert 0 == main.stop()
    assert ([f"run {main.pid}", f"closed {main.pid}"], []) == (lines(main.out), lines(out))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_main_instance_triggered_by_a_child(
    tmp_path: Path, hosts: list[JobHost], children: list[Child]
) -> None:
    """The other direction: a child's trigger() reaches this process, the main instance."""
    host, out = parent_host(hosts, tmp_path)
    assert host.gates.main_dom is not None and host.gates.main_dom.try_acquire()
    child = start_child(children, tmp_path, "trigger")
    assert ("True", 0) == (child.first_line(), child.proc.wait(20))
    wait_until(lambda: lines(out), 10, "the run here")
    assert ([f"run {os.getpid()}"], [f"closed {child.pid}"]) == (lines(out), lines(child.out))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_hung_main_instance_gives_false_after_one_second_and_no_late_run(
    tmp_path: Path, hosts: list[JobHost], children: list[Child]
) -> None:
    """A main instance that does not answer (SIGSTOP) makes trigger() False after about 1 s,
    and the queued request is refused when it wakes up, so it never runs late."""
    main = start_child(children, tmp_path, "main")
    host, _ = parent_host(hosts, tmp_path)
    os.kill(main.pid, signal.SIGSTOP)
    _, status = os.waitpid(main.pid, os.WUNTRACED)  # returns once it is stopped
    assert os.WIFSTOPPED(status)
    try:
        started = time.monotonic()
        accepted = host.trigger(Append)
        elapsed = time.monotonic() - started
    finally:
        os.kill(main.pid, signal.SIGCONT)
    assert (False, True) == (accepted, 0.9 <= elapsed < 1.5)
    assert True is host.trigger(Append)  # answered after the stale request was refused
    wait_until(lambda: lines(main.out), 10, "the run")
    assert 0 == main.stop()
    assert [f"run {main.pid}", f"closed {main.pid}"] == lines(main.out)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_stale_socket_of_a_killed_main_instance(
    tmp_path: Path, hosts: list[JobHost], children: list[Child]
) -> None:
    """A main instance killed with SIGKILL leaves its socket: senders get False at once, and
    the next main instance replaces the socket and gets the triggers."""
    first = start_child(children, tmp_path, "main", "first")
    host, out = parent_host(hosts, tmp_path)
    main_dom = host.gates.main_dom
    assert main_dom is not None and main_dom.socket_path is not None
    first.kill()
    assert True is os.path.exists(main_dom.socket_path)  # nobody removed it
    started = time.monotonic()
    reply = send_trigger(main_dom, host.jobs[0], host.jobs, NextExecution.NONE, None)
    assert (False, True) == (reply.accepted, time.monotonic() - started < 0.5)
    assert "stale socket" in reply.reason
    second = start_child(children, tmp_path, "main", "second")
    assert True is host.trigger(Append)
    wait_until(lambda: lines(second.out), 10, "the second main's run")
    assert 0 == second.stop()
    assert ([], [f"run {second.pid}", f"closed {second.pid}"], []) == (
        lines(first.out),
        lines(second.out),
        lines(out),
    )


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
def test_unwritable_directory(tmp_path: Path, hosts: list[JobHost], children: list[Child]) -> None:
    """When the main instance cannot create its socket, others' triggers are False at once."""
    main_dom = MainDom(KEY, directory=str(tmp_path))
    main_dom.check()  # the lock file exists; the directory then turns read-only
    tmp_path.chmod(0o500)
    try:
        main = start_child(children, tmp_path, "main")
        host, _ = parent_host(hosts, tmp_path)
        started = time.monotonic()
        assert False is host.trigger(Append)
        assert time.monotonic() - started < 0.5
        main.stop()
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.multiprocess
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="as root: a forked child drops to another user, for whom the directory is read-only",
)
def test_unwritable_directory_as_another_user() -> None:
    """The same as test_unwritable_directory where the tests run as root: a forked child that
    drops root for uid 65534 becomes main in a directory it may not write (the lock file
    writable). It warns once, runs its own trigger, and this process's trigger is False at
    once."""
    directory = Path(tempfile.mkdtemp(prefix="rj-ro-", dir="/tmp"))  # reachable by any user
    lock = MainDom(KEY, directory=str(directory))
    lock.check()  # the lock file exists...
    os.chmod(lock.path, 0o666)  # ...and the other user may lock it
    directory.chmod(0o555)  # but not create the socket beside it
    to_parent, from_child = os.pipe()
    to_child, from_parent = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, which never returns
        try:
            os.close(to_parent)
            os.close(from_parent)
            become_nobody()
            warnings: list[str] = []
            handler = logging.Handler(logging.WARNING)
            handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
            logging.getLogger("recurjobs.forward").addHandler(handler)
            job = Counted()
            child = JobHost([job], main_dom=MainDom(KEY, directory=str(directory))).start()
            own = child.trigger(Counted) and job.ran.wait(5)
            report = {"main": child.gates.main_dom.is_main, "own": own, "warnings": warnings}  # type: ignore[union-attr]
            os.write(from_child, json.dumps(report).encode() + b"\n")
            os.read(to_child, 1)  # the parent has sent its trigger
            child.stop()
        finally:
            os._exit(0)
    os.close(from_child)  # a child that dies early then ends the parent's read
    os.close(to_child)
    try:
        with os.fdopen(to_parent, "rb") as pipe:
            report = json.loads(pipe.readline())
        web = JobHost([Counted()], main_dom=MainDom(KEY, directory=str(directory)))
        began = time.monotonic()
        forwarded = web.trigger(Counted)
        took = time.monotonic() - began
    finally:
        os.close(from_parent)  # the child stops its host and exits
        os.waitpid(pid, 0)
        directory.chmod(0o755)
        shutil.rmtree(directory)
    assert (True, True) == (report["main"], report["own"])
    warned = "Permission denied; triggers from other processes will return False"
    assert ([True], True) == ([warned in w for w in report["warnings"]], forwarded is False)
    assert took < 0.5, took


# ---------------------------------------------------------------------------- gunicorn
@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.timeout(90)
def test_gunicorn_every_accepted_trigger_runs_once(tmp_path: Path) -> None:
    """Under gunicorn with 3 workers, web requests that trigger a job reach it.

    Exact invariant. Phase 1 sends 45 requests one after another and waits for each run before
    the next request: every answer is True and there are exactly 45 runs, all in one worker
    (the main instance), while the answers come from all three workers. Phase 2 sends 30
    requests at once over 6 connections, where triggers that arrive before the job's loop picks
    up the previous one coalesce into one run (allowed): every answer is True, each request's
    ticket (written before it triggers) is taken by exactly one run that started after the
    ticket was written, so no accepted trigger is lost, and there are between 1 and 30 runs,
    never more runs than accepted triggers.
    """
    out, port = tmp_path / "runs.txt", free_port()
    tickets = tmp_path / "tickets"
    tickets.mkdir()
    env = child_env(tmp_path, RECURJOBS_TEST_OUT=str(out), RECURJOBS_TEST_TICKETS=str(tickets))
    command = [script("gunicorn"), "-w", "3", "-b", f"127.0.0.1:{port}"]
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--graceful-timeout", "10", "tests.apps.flask_trigger_app:create_app()"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def trigger(ticket: str) -> tuple[bool, int]:
        url = f"http://127.0.0.1:{port}/trigger?ticket={ticket}"
        request = urllib.request.Request(url, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        return bool(answer["accepted"]), int(answer["pid"])

    def runs() -> list[tuple[int, list[str]]]:
        found = []
        for line in lines(out):
            _, pid, *taken = line.split()
            found.append((int(pid), taken))
        return found

    try:
        wait_until(lambda: _answers(port), 30, "gunicorn to answer")
        wait_until(lambda: len(_worker_pids(port)) == 3, 30, "three workers answering")
        answers = []
        for n in range(45):
            answers.append(trigger(f"a{n}"))
            wait_until(lambda n=n: len(runs()) == n + 1, 10, f"run {n + 1}")  # type: ignore[misc]
        with ThreadPoolExecutor(6) as pool:
            burst = list(pool.map(trigger, [f"b{n}" for n in range(30)]))
        wait_until(lambda: not any(tickets.iterdir()), 10, "every ticket taken")
    finally:
        stop_group(proc)
    everything = runs()
    # Every answer True; the main instance (where the runs are) did not answer them all, so
    # forwarded triggers were among them (which workers answer is the kernel's choice).
    main_pids = {pid for pid, _ in everything}
    forwarded = [pid for _, pid in answers if pid not in main_pids]
    assert ([True] * 45, True) == ([a for a, _ in answers], len(forwarded) > 0)
    assert [[f"a{n}"] for n in range(45)] == [taken for _, taken in everything[:45]]
    assert [True] * 30 == [a for a, _ in burst]
    later = everything[45:]
    taken = sorted(t for _, ts in later for t in ts)
    assert (sorted(f"b{n}" for n in range(30)), True) == (taken, 1 <= len(later) <= 30)
    assert 1 == len({pid for pid, _ in everything})


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/pid", timeout=2):
            return True
    except OSError:
        return False


def _worker_pids(port: int) -> set[int]:
    """The pids that answered 30 quick concurrent requests."""

    def one(_: int) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/pid", timeout=5) as response:
            return int(response.read())

    with ThreadPoolExecutor(6) as pool:
        return set(pool.map(one, range(30)))


