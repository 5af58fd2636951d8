"""An exclusive lock on `<file>.lock` that leaves no lock file behind once nobody holds it.

`filelock` keeps its lock files for good: every perf.csv and every run's ledger had a `.lock` beside it
after a normal run. Removing a lock file is safe only with a check: the holder unlinks the file while it
still holds the lock, and whoever locked the same (now unlinked) file meanwhile sees that the path no
longer names the file it locked, and starts over on the new one. So at most one process holds the lock of
a path at any time, and the file is gone when the last one releases it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from types import TracebackType

_POLL = 0.05


class LockTimeout(TimeoutError):
    """The lock was not acquired within the timeout."""


class PathLock:
    """`with PathLock(path, timeout):` holds an exclusive lock on `path` (a negative timeout: no limit).

    Safe across processes and the threads of one process; not reentrant.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float = -1) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self._fd: int | None = None
        self._thread_lock = threading.Lock()

    def acquire(self) -> None:
        deadline = None if self.timeout < 0 else time.monotonic() + self.timeout
        if not self._thread_lock.acquire(timeout=-1 if deadline is None else max(0.0, self.timeout)):
            raise LockTimeout(f"timed out waiting for {self.path}")
        try:
            self._fd = self._lock_file(deadline)
        except BaseException:
            self._thread_lock.release()
            raise

    def _lock_file(self, deadline: float | None) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeout(f"timed out waiting for {self.path}") from None
                time.sleep(_POLL)
                continue
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # its holder removed it on release: lock the file the path names now

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # still held: nobody can lock this file and miss the removal
            os.close(fd)
        finally:
            self._thread_lock.release()

    def __enter__(self) -> PathLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
