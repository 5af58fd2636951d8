"""Tie a cluster run's ansible-playbook processes and its secrets file to the CLI that started them.

ansible-runner starts ``ansible-playbook`` in a session of its own (a pty), so neither Ctrl-C nor the
death of the CLI reaches it, nor its workers, nor the ssh masters they leave behind. Every process of
one play carries a random token in its environment (:data:`TOKEN_ENV`, inherited by every child, the
ssh masters included), which finds all of them in ``/proc`` and nothing else:

* on Ctrl-C or SIGTERM the CLI stops them itself (:func:`stop_processes`);
* on ``kill -9`` of the CLI a watchdog process (:func:`watch`, started in a session of its own so Ctrl-C
  leaves it alone) sees its stdin pipe from the CLI close without a ``done`` line, stops them and removes
  the run's secrets dir;
* a later CLI on the same run (``--resume``) finds the earlier play in ``runs/<run_id>/play.json`` and
  cleans up what is left (:meth:`PlayGuard.acquire`); ``runs/<run_id>/play.lock`` says whether the CLI
  that wrote it still lives.

Secrets dirs live under a private base (``$XDG_RUNTIME_DIR/madengine/secrets`` or
``~/.cache/madengine/secrets``, mode 0700), one ``mkdtemp`` dir per play named after the CLI's pid: any
later run removes the dirs of CLIs that are gone. Standard library only: the watchdog imports this file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

#: Environment variable that marks every process of one play (ansible-playbook, workers, ssh).
TOKEN_ENV = "MADENGINE_PLAY"
RECORD = "play.json"
LOCK = "play.lock"
#: How long processes get between SIGTERM and SIGKILL.
GRACE_S = 3.0


def new_token() -> str:
    return secrets.token_hex(8)


def play_processes(token: str) -> list[int]:
    """The pids of this user's processes whose environment holds ``TOKEN_ENV=token``."""
    needle = f"{TOKEN_ENV}={token}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry.name}/environ", "rb") as handle:
            if needle in handle.read().split(b"\0"):
                found.append(int(entry.name))
    return found


def stop_processes(token: str, grace: float = GRACE_S) -> None:
    """SIGTERM every process of the play, SIGKILL what is left after ``grace`` seconds."""
    pids = play_processes(token)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = play_processes(token)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def secrets_base() -> Path:
    """The private dir (0700, owned by this user) that holds every play's secrets dir."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    root = Path(runtime) if runtime and os.path.isdir(runtime) else Path.home() / ".cache"
    base = root / "madengine" / "secrets"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = base.lstat()
    if info.st_uid != os.getuid() or not base.is_dir() or base.is_symlink():
        raise PermissionError(f"{base} is not a private directory of this user")
    os.chmod(base, 0o700)
    return base


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_secret_dirs(base: Path) -> None:
    """Remove secrets dirs whose CLI (the pid their name starts with) is gone: a killed run's leftovers."""
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            pid = entry.name.split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)


def make_secret_dir() -> Path:
    base = secrets_base()
    sweep_secret_dirs(base)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))


def remove_secret_dir(path: str | Path | None) -> None:
    """Remove a secrets dir, but only one under the private base (a record could name anything)."""
    if not path:
        return
    path = Path(path)
    with contextlib.suppress(OSError):
        if path.parent.resolve() == secrets_base().resolve():
            shutil.rmtree(path, ignore_errors=True)


class RunInProgressError(RuntimeError):
    """Another live CLI holds the run's lock."""


class PlayGuard:
    """The lock and pid record of one run's plays (``runs/<run_id>/play.lock`` and ``play.json``)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._lock: IO[str] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    def acquire(self) -> None:
        """Take the run's lock; raises RunInProgressError when a live CLI holds it. Then stop and remove
        whatever an earlier, killed CLI of this run left: its play's processes and its secrets dir."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.run_dir / LOCK, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunInProgressError(str(self._record().get("cli_pid") or "?")) from None
        self._lock = handle
        earlier = self._record()
        if earlier.get("token"):
            stop_processes(str(earlier["token"]))
        remove_secret_dir(earlier.get("secret_dir"))
        if earlier.get("control_dir"):
            shutil.rmtree(str(earlier["control_dir"]), ignore_errors=True)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _record(self) -> dict:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads((self.run_dir / RECORD).read_text())
            return data if isinstance(data, dict) else {}
        return {}

    def start_play(self, ident: str, token: str, secret_dir: Path, control_dir: Path) -> None:
        """Record the play (for a later CLI) and start its watchdog (for a killed CLI)."""
        record = {"cli_pid": os.getpid(), "ident": ident, "token": token, "secret_dir": str(secret_dir),
                  "control_dir": str(control_dir), "started": time.time()}
        tmp = self.run_dir / f".{RECORD}.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.run_dir / RECORD)
        self._watchdog = subprocess.Popen(
            [sys.executable, __file__, token, str(secret_dir), str(control_dir)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
            env={k: v for k, v in os.environ.items() if k != TOKEN_ENV})

    def end_play(self) -> None:
        """The CLI cleans up itself: the watchdog may go."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        with contextlib.suppress(OSError):
            assert watchdog.stdin is not None
            watchdog.stdin.write(b"done\n")
            watchdog.stdin.close()
        try:
            watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()


def watch(token: str, secret_dir: str, control_dir: str) -> None:
    """The watchdog: wait for the CLI's pipe to close; without ``done`` the CLI died, so clean up."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    data = sys.stdin.buffer.read()
    if b"done" in data:
        return
    stop_processes(token)
    # Directly, not through remove_secret_dir: its base comes from this process's environment.
    shutil.rmtree(secret_dir, ignore_errors=True)
    shutil.rmtree(control_dir, ignore_errors=True)


if __name__ == "__main__":
    watch(*sys.argv[1:4])
