"""Tests for recurjobs._maindom.MainDom: one main instance per machine and key."""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from recurjobs._maindom import MainDom

if sys.platform != "win32":
    import fcntl

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="exercises POSIX flock")

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "maindom_worker.py"
LOGGER = "recurjobs.maindom"

MakeMainDom = Callable[[str], MainDom]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[MakeMainDom]:
    """MainDom objects in tmp_path, all released at teardown."""
    made: list[MainDom] = []

    def factory(key: str) -> MainDom:
        main_dom = MainDom(key, directory=str(tmp_path))
        made.append(main_dom)
        return main_dom

    yield factory
    for main_dom in made:
        main_dom.release()


@contextmanager
def foreign_holder(path: str) -> Iterator[None]:
    """Hold the lock through a separate open file, exactly as another process would."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def can_lock_from_outside(path: str) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def messages(caplog: pytest.LogCaptureFixture, prefix: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_once(directory: Path, key: str) -> str:
    """Ask a brand-new process whether it can become main; returns its answer."""
    done = subprocess.run(
        [sys.executable, str(WORKER), str(directory), key, "once"],
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return done.stdout.strip()


class Workers:
    """Polling worker processes whose state lines arrive on one queue as (index, line)."""

    def __init__(self, directory: Path, key: str, count: int) -> None:
        self.events: queue.Queue[tuple[int, str]] = queue.Queue()
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(WORKER), str(directory), key, "poll"],
                env=worker_env(),
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        for index, proc in enumerate(self.procs):
            threading.Thread(target=self._pump, args=(index, proc), daemon=True).start()

    def _pump(self, index: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.events.put((index, line.strip()))

    def next_event(self, deadline: float) -> tuple[int, str]:
        try:
            return self.events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail("no worker reported in time")

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def test_key_must_be_a_str() -> None:
    """A non-str key is a TypeError naming the parameter and the value."""
    with pytest.raises(TypeError, match=r"key must be a non-empty str, got int: 42"):
        MainDom(42)  # type: ignore[arg-type]


def test_key_must_not_be_empty() -> None:
    """An empty key is a ValueError naming the parameter and the value."""
    with pytest.raises(ValueError, match=r"key must be a non-empty str, got ''"):
        MainDom("")


def test_directory_must_be_a_str_or_none() -> None:
    """A directory that is neither str nor None is a TypeError naming the parameter."""
    with pytest.raises(TypeError, match=r"directory must be a str or None, got bytes: b'/tmp'"):
        MainDom("k", directory=b"/tmp")  # type: ignore[arg-type]


def test_directory_must_not_be_empty() -> None:
    """An empty directory string is a ValueError rather than a silent cwd-relative path."""
    with pytest.raises(ValueError, match=r"directory must be a non-empty str or None, got ''"):
        MainDom("k", directory="")


def test_default_directory_is_the_temp_directory() -> None:
    """Without a directory the lock file lives in tempfile.gettempdir()."""
    expected = os.path.realpath(tempfile.gettempdir())
    assert expected == os.path.dirname(MainDom("k").path)


def test_lock_file_name_is_a_hash_of_the_key(tmp_path: Path) -> None:
    """Any key, even one full of path syntax, becomes a fixed safe file name in the directory."""
    key = "../../etc/passwd\n\0 spaces/and:colons"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    expected = os.path.join(os.path.realpath(tmp_path), f"recurjobs-maindom-{digest}.lock")
    main_dom = MainDom(key, directory=str(tmp_path))
    assert expected == main_dom.path
    assert key == main_dom.key


def test_lock_file_is_private_even_with_a_permissive_umask(make: MakeMainDom) -> None:
    """The lock file is created with mode 0600 whatever the umask allows."""
    main_dom = make("k")
    old_umask = os.umask(0)
    try:
        assert True is main_dom.try_acquire()
    finally:
        os.umask(old_umask)
    assert 0o600 == stat.S_IMODE(os.stat(main_dom.path).st_mode)


def test_lock_file_holds_only_pid_and_host(make: MakeMainDom) -> None:
    """After acquiring, the lock file says which pid on which host holds it, nothing more."""
    main_dom = make("k")
    main_dom.try_acquire()
    expected = f"pid={os.getpid()} host={socket.gethostname()}\n"
    assert expected == Path(main_dom.path).read_text()


def test_free_lock_makes_main(make: MakeMainDom) -> None:
    """is_main is False until try_acquire succeeds on a free lock, then True."""
    main_dom = make("k")
    before = main_dom.is_main
    acquired = main_dom.try_acquire()
    assert (False, True, True) == (before, acquired, main_dom.is_main)
    assert True is main_dom.try_acquire()
    assert False is can_lock_from_outside(main_dom.path)


def test_lock_held_elsewhere_means_not_main_without_raising(make: MakeMainDom) -> None:
    """While another holder has the file locked, try_acquire returns False and never raises."""
    main_dom = make("k")
    with foreign_holder(main_dom.path):
        assert False is main_dom.try_acquire()
        assert False is main_dom.is_main
    assert True is main_dom.try_acquire()


def test_same_key_objects_share_one_acquisition(make: MakeMainDom) -> None:
    """Two same-key objects in one process are both main; the OS lock goes with the last one."""
    first, second = make("shared"), make("shared")
    assert True is first.try_acquire()
    assert True is second.try_acquire()
    first.release()
    assert (False, True) == (first.is_main, second.is_main)
    assert False is can_lock_from_outside(second.path)
    second.release()
    assert True is can_lock_from_outside(second.path)


def test_object_that_never_acquired_does_not_hold_the_shared_lock(make: MakeMainDom) -> None:
    """A same-key object reports is_main only after its own try_acquire, not via another's."""
    first, second = make("shared"), make("shared")
    first.try_acquire()
    assert False is second.is_main
    second.release()
    assert True is first.is_main


def test_different_keys_are_independent(make: MakeMainDom) -> None:
    """Holding one key has no effect on another key."""
    one, other = make("one"), make("other")
    with foreign_holder(one.path):
        assert (False, True) == (one.try_acquire(), other.try_acquire())


def test_concurrent_threads_all_share_the_acquisition(make: MakeMainDom) -> None:
    """Many threads acquiring the same key at once all succeed through one OS lock."""
    objects = [make("k") for _ in range(8)]
    barrier = threading.Barrier(len(objects))
    results: list[bool] = []

    def acquire(main_dom: MainDom) -> None:
        barrier.wait()
        results.append(main_dom.try_acquire())

    threads = [threading.Thread(target=acquire, args=(obj,)) for obj in objects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert [True] * len(objects) == results
    assert False is can_lock_from_outside(objects[0].path)


def test_release_is_idempotent_and_frees_the_lock(make: MakeMainDom) -> None:
    """release() may be called any number of times, before or after acquiring."""
    main_dom = make("k")
    main_dom.release()
    main_dom.try_acquire()
    main_dom.release()
    main_dom.release()
    assert False is main_dom.is_main
    assert True is can_lock_from_outside(main_dom.path)


def test_release_keeps_the_lock_file(make: MakeMainDom) -> None:
    """The lock file is never deleted, because deleting a locked file races with other lockers."""
    main_dom = make("k")
    main_dom.try_acquire()
    main_dom.release()
    assert True is os.path.exists(main_dom.path)


def test_removed_lock_file_is_noticed_at_the_next_check(
    make: MakeMainDom, caplog: pytest.LogCaptureFixture
) -> None:
    """If the lock file is deleted and someone locks a new one, the old holder stops being main."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    main_dom = make("k")
    main_dom.try_acquire()
    os.remove(main_dom.path)
    with foreign_holder(main_dom.path):
        assert False is main_dom.try_acquire()
        assert False is main_dom.is_main
    assert 1 == len(messages(caplog, "main instance lock file"))
    assert True is main_dom.try_acquire()


def test_not_main_is_logged_once_until_the_state_changes(
    make: MakeMainDom, caplog: pytest.LogCaptureFixture
) -> None:
    """'not main' logs once per object, 'acquired' once, and 'not main' again after losing."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    main_dom = make("k")
    with foreign_holder(main_dom.path):
        for _ in range(3):
            main_dom.try_acquire()
    for _ in range(3):
        main_dom.try_acquire()
    main_dom.release()
    with foreign_holder(main_dom.path):
        main_dom.try_acquire()
    assert 2 == len(messages(caplog, "not the main instance"))
    assert [f"acquired main instance lock {main_dom.path}"] == messages(caplog, "acquired")


def test_unusable_directory_returns_false_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An OS error while acquiring is logged once as a warning and reported as not main."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    main_dom = MainDom("k", directory=str(tmp_path / "missing"))
    assert [False, False] == [main_dom.try_acquire(), main_dom.try_acquire()]
    assert 1 == len(messages(caplog, "cannot use main instance lock"))


def test_symlink_at_the_lock_path_is_refused(tmp_path: Path) -> None:
    """A symlink planted at the lock file name is not followed, so its target is not touched."""
    target = tmp_path / "precious"
    target.write_text("keep me")
    main_dom = MainDom("k", directory=str(tmp_path))
    os.symlink(target, main_dom.path)
    assert False is main_dom.try_acquire()
    assert "keep me" == target.read_text()


def test_check_raises_for_an_unusable_directory(tmp_path: Path) -> None:
    """check() turns a directory that cannot hold the lock file into a clear RuntimeError."""
    (tmp_path / "file").write_text("")
    directory = str(tmp_path / "file" / "sub")
    main_dom = MainDom("k", directory=directory)
    with pytest.raises(RuntimeError) as info:
        main_dom.check()
    expected = f"main_dom lock directory {directory!r} is not writable: "
    assert expected == str(info.value)[: len(expected)]
    assert isinstance(info.value.__cause__, OSError)


def test_check_passes_for_a_writable_directory(make: MakeMainDom) -> None:
    """check() is silent when the lock file can be created, and does not acquire anything."""
    main_dom = make("k")
    main_dom.check()
    assert (False, True) == (main_dom.is_main, can_lock_from_outside(main_dom.path))


def test_repr_shows_path_and_state_but_not_the_key(tmp_path: Path) -> None:
    """repr() names the lock file and whether it is held, never the key itself."""
    main_dom = MainDom("database-password-123", directory=str(tmp_path))
    assert f"MainDom(path={main_dom.path!r}, is_main=False)" == repr(main_dom)


def test_automatic_key_is_stable_for_the_same_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies of one script started in one directory share a lock file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["app.py"])
    first = MainDom.automatic(str(tmp_path))
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "app.py"), "--flag"])
    assert first.path == MainDom.automatic(str(tmp_path)).path


def test_automatic_key_differs_by_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same script run from another directory is another app with its own lock."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setattr(sys, "argv", ["/srv/app.py"])
    monkeypatch.chdir(tmp_path / "a")
    first = MainDom.automatic(str(tmp_path))
    monkeypatch.chdir(tmp_path / "b")
    assert first.path != MainDom.automatic(str(tmp_path)).path


def test_automatic_key_uses_the_interpreter_without_a_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With argv[0] empty or '-c' the interpreter path stands in for the script."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["-c"])
    from_c = MainDom.automatic(str(tmp_path))
    monkeypatch.setattr(sys, "argv", [""])
    interactive = MainDom.automatic(str(tmp_path))
    expected = "\n".join(("recurjobs-automatic", socket.gethostname(), os.getcwd(), sys.executable))
    assert [expected, expected] == [from_c.key, interactive.key]


@pytest.mark.multiprocess
@pytest.mark.timeout(30)
def test_one_of_three_processes_is_main_and_another_takes_over_after_kill(tmp_path: Path) -> None:
    """Across real processes exactly one is main, and after kill -9 a waiting one takes over."""
    workers = Workers(tmp_path, "cluster-of-three", 3)
    try:
        deadline = time.monotonic() + 20
        first_states: dict[int, str] = {}
        while len(first_states) < 3:
            index, line = workers.next_event(deadline)
            first_states.setdefault(index, line)
        holders = [index for index, state in first_states.items() if state == "main"]
        assert 1 == len(holders)
        assert 2 == list(first_states.values()).count("not-main")

        os.kill(workers.procs[holders[0]].pid, signal.SIGKILL)
        workers.procs[holders[0]].wait(timeout=10)
        index, line = workers.next_event(time.monotonic() + 10)
        assert ("main", True) == (line, index != holders[0])
        assert "not-main" == run_once(tmp_path, "cluster-of-three")
    finally:
        workers.close()
    assert "main" == run_once(tmp_path, "cluster-of-three")


@pytest.mark.multiprocess
@pytest.mark.timeout(30)
def test_forked_child_is_not_main_and_leaves_the_parent_lock_alone(make: MakeMainDom) -> None:
    """A forked child is never main, and its exit does not unlock the parent's lock."""
    parent = make("forked")
    assert True is parent.try_acquire()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_fd)
            fresh = MainDom("forked", directory=os.path.dirname(parent.path))
            seen = (parent.is_main, parent.try_acquire(), fresh.try_acquire())
            os.write(write_fd, repr(seen).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_fd, "rb") as pipe:
        answers = pipe.read().decode()
    assert ("(False, False, False)", 0) == (answers, os.waitstatus_to_exitcode(status))
    assert True is parent.is_main
    directory = Path(parent.path).parent
    assert "not-main" == run_once(directory, "forked")
    parent.release()
    assert "main" == run_once(directory, "forked")
