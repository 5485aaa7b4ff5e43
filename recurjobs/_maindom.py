"""MainDom: at most one main instance per machine and key, through an OS file lock.

The kernel drops an ``flock``/``msvcrt.locking`` lock when its process ends, however it ends.
All MainDom objects of a process that use one lock file share one ``_SharedLock``: two
``flock`` calls on two descriptors of one file conflict even inside a single process.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Callable

from recurjobs._guard import log_quietly

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

__all__ = ["MainDom"]

logger = logging.getLogger("recurjobs.maindom")

_MAIN, _NOT_MAIN, _ERROR = "main", "not main", "error"

# The longest Unix socket path the OS takes (sun_path holds 108 bytes on Linux, 104 on the BSDs
# and macOS, including the terminating NUL).
_MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103

if sys.platform == "win32":
    # msvcrt locks a byte range that starts at the current file position, and Windows range
    # locks are mandatory. Locking one byte far past the short owner text keeps that text
    # readable by others, and truncating it never touches the locked byte.
    _OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_BINARY
    _WIN_LOCK_OFFSET = 1 << 20

    def _lock_nonblocking(fd: int) -> bool:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLK):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    # O_NOFOLLOW: the default directory is the shared temp directory; a symlink planted at our
    # predictable file name must not make us truncate some other file.
    _OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW

    def _lock_nonblocking(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _write_owner(fd: int) -> None:
    """Replace the file's text with the holder's pid and host name (debugging aid only)."""
    try:
        text = f"pid={os.getpid()} host={socket.gethostname()}\n".encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, text)
    except OSError as exc:
        log_quietly(
            logging.DEBUG,
            "could not write owner info into the main instance lock file: %s",
            exc,
            on=logger,
        )


class _SharedLock:
    """This process's single hold on one lock file; guarded by ``mutex``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mutex = threading.Lock()
        self.fd: int | None = None
        self.identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the locked file
        self.users = 0  # MainDom objects that acquired in this epoch and have not released
        self.epoch = 0  # bumped whenever the hold ends, so stale users can tell
        self.on_main: Callable[[], None] | None = None  # see on_main() below

    def ensure(self) -> tuple[str, str]:
        """Hold the OS lock if at all possible; returns ``(state, detail)``."""
        if self.fd is not None:
            if self._file_unchanged():
                return _MAIN, "shared"
            log_quietly(
                logging.WARNING,
                "main instance lock file %s was removed or replaced",
                self.path,
                on=logger,
            )
            self.drop(unlock=True)
        try:
            fd = os.open(self.path, _OPEN_FLAGS, 0o600)
        except OSError as exc:
            return _ERROR, str(exc)
        try:
            if not _lock_nonblocking(fd):
                os.lseek(fd, 0, os.SEEK_SET)
                owner = os.read(fd, 512).decode("utf-8", "replace").strip()
                os.close(fd)
                return _NOT_MAIN, owner
            stat = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            return _ERROR, str(exc)
        self.fd, self.identity = fd, (stat.st_dev, stat.st_ino)
        _write_owner(fd)
        return _MAIN, "acquired"

    def _file_unchanged(self) -> bool:
        # The cheap check while holding: a temp-dir cleaner may delete the file, after which a
        # second process could lock a fresh file of the same name.
        try:
            stat = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell; the flock itself is still ours
        return (stat.st_dev, stat.st_ino) == self.identity

    def drop(self, *, unlock: bool) -> None:
        """End this process's hold; ``unlock=False`` only closes (used in a forked child)."""
        fd, self.fd, self.identity = self.fd, None, None
        self.users = 0
        self.epoch += 1
        if fd is not None:
            if unlock:
                with contextlib.suppress(OSError):  # the close below releases it anyway
                    _unlock(fd)
            with contextlib.suppress(OSError):
                os.close(fd)


_registry: dict[str, _SharedLock] = {}
_registry_mutex = threading.Lock()


def _shared_lock_for(path: str) -> _SharedLock:
    with _registry_mutex:
        shared = _registry.get(path)
        if shared is None:
            shared = _registry[path] = _SharedLock(path)
        return shared


def _forget_locks_in_child() -> None:
    # The child shares the parent's open file description. flock(LOCK_UN) here would unlock
    # the parent too; closing the child's descriptor does not, while the parent keeps its own.
    global _registry_mutex
    _registry_mutex = threading.Lock()  # a parent thread may have held it at fork time
    for shared in _registry.values():
        shared.mutex = threading.Lock()
        shared.drop(unlock=False)


if sys.platform != "win32":
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def on_main(main_dom: MainDom, callback: Callable[[], None] | None) -> None:
    """Call ``callback`` after every ``try_acquire()`` in this process that finds it main.

    One callback per lock file, shared by every MainDom of that file (the trigger listener of
    ``_forward.py`` uses it to start when this process becomes main); None removes it. The
    callback must not raise.
    """
    main_dom._shared.on_main = callback


class MainDom:
    """One main instance per machine and key, decided by an OS lock on a file.

    ``try_acquire()`` never blocks and never raises; a process that is not main simply asks
    again later, and wins once the holder releases or dies. The lock file is never deleted.
    """

    def __init__(self, key: str, *, directory: str | None = None) -> None:
        if not isinstance(key, str):
            raise TypeError(f"key must be a non-empty str, got {type(key).__name__}: {key!r}")
        if not key:
            raise ValueError(f"key must be a non-empty str, got {key!r}")
        if directory is None:
            directory = tempfile.gettempdir()
        elif not isinstance(directory, str):
            raise TypeError(
                f"directory must be a str or None, got {type(directory).__name__}: {directory!r}"
            )
        elif not directory:
            raise ValueError(f"directory must be a non-empty str or None, got {directory!r}")
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        self._key = key
        self._directory = os.path.realpath(directory)
        self._path = os.path.join(self._directory, f"recurjobs-maindom-{digest}.lock")
        self._digest = digest
        self._shared = _shared_lock_for(self._path)
        self._epoch: int | None = None  # the shared lock's epoch when this object acquired
        self._reported: str | None = None  # last state logged, so each state logs once

    @classmethod
    def automatic(cls, directory: str | None = None) -> MainDom:
        """A MainDom keyed by host name, working directory and main script."""
        argv0 = sys.argv[0] if getattr(sys, "argv", None) else ""
        script = sys.executable if argv0 in ("", "-c") else os.path.realpath(argv0)
        key = "\n".join(("recurjobs-automatic", socket.gethostname(), os.getcwd(), script))
        return cls(key, directory=directory)

    @property
    def key(self) -> str:
        return self._key

    @property
    def path(self) -> str:
        """Absolute path of the lock file."""
        return self._path

    @property
    def socket_path(self) -> str | None:
        """Where the main instance listens for triggers forwarded by other processes.

        Beside the lock file with ``.sock`` for ``.lock``; a shorter name in the same directory
        when that path is too long for a Unix socket address; None when even that is too long.
        """
        for name in (f"recurjobs-maindom-{self._digest}.sock", f"rj-{self._digest[:16]}.sock"):
            path = os.path.join(self._directory, name)
            if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
                return path
        return None

    @property
    def is_main(self) -> bool:
        """Whether this object holds the lock now (reads state only, no system calls)."""
        shared = self._shared
        return self._epoch is not None and self._epoch == shared.epoch and shared.fd is not None

    def check(self) -> None:
        """Raise ``RuntimeError`` unless the lock file can be created and opened for writing."""
        try:
            fd = os.open(self._path, _OPEN_FLAGS, 0o600)
        except OSError as exc:
            raise RuntimeError(
                f"main_dom lock directory {self._directory!r} is not writable: {exc}"
            ) from exc
        os.close(fd)

    def try_acquire(self) -> bool:
        """Become (or stay) main if possible; False when another process holds the lock."""
        shared = self._shared
        with shared.mutex:
            state, detail = shared.ensure()
            if state == _MAIN and self._epoch != shared.epoch:
                shared.users += 1
                self._epoch = shared.epoch
            self._report(state, detail)
            hook = shared.on_main if state == _MAIN else None
        if hook is not None:
            hook()
        return state == _MAIN

    def release(self) -> None:
        """Stop wanting the lock; the OS lock goes when no same-file MainDom still holds it."""
        shared = self._shared
        with shared.mutex:
            if self._epoch is not None and self._epoch == shared.epoch:
                shared.users -= 1
                if shared.users == 0:
                    shared.drop(unlock=True)
                    log_quietly(
                        logging.INFO,
                        "released main instance lock %s",
                        self._path,
                        on=logger,
                    )
            self._epoch = None
            self._reported = None

    def _report(self, state: str, detail: str) -> None:
        if state == self._reported:
            return
        self._reported = state
        if state == _MAIN and detail == "acquired":
            log_quietly(logging.INFO, "acquired main instance lock %s", self._path, on=logger)
        elif state == _MAIN:
            log_quietly(
                logging.DEBUG,
                "sharing main instance lock %s held by this process",
                self._path,
                on=logger,
            )
        elif state == _NOT_MAIN:
            owner = detail or "owner unknown"
            log_quietly(
                logging.INFO,
                "not the main instance: %s is held by %r",
                self._path,
                owner,
                on=logger,
            )
        else:
            log_quietly(
                logging.WARNING,
                "cannot use main instance lock %s: %s",
                self._path,
                detail,
                on=logger,
            )

    def __repr__(self) -> str:
        return f"MainDom(path={self._path!r}, is_main={self.is_main})"
