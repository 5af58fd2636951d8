"""Atomic file writes: readers see the old file or the new one, never a half-written one.

Each write goes to a temporary file in the target's directory (same filesystem, so ``os.replace`` is an
atomic rename), is flushed and fsynced, then replaces the target. An existing target keeps its file mode;
a new file gets the usual ``0o666 & ~umask``. On any error the temporary file is removed and the target
is left untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

_TEMP_TRIES = 100


def _open_temp(directory: Path, name: str) -> tuple[int, Path]:
    """Create a fresh temporary file next to the target; return its descriptor and path.

    ``os.open`` with mode 0o666 lets the process umask apply, unlike ``tempfile.mkstemp`` (always 0o600).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMP_TRIES):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file for {name} in {directory}")


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; best effort, since some filesystems refuse fsync on a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, creating parent directories as needed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        existing_mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        existing_mode = None
    fd, tmp = _open_temp(target.parent, target.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if existing_mode is not None:
            os.chmod(tmp, existing_mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically; the text is written as is (no newline translation)."""
    write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Replace ``path`` with ``obj`` as indented JSON plus a trailing newline, atomically.

    Raises ``TypeError`` or ``ValueError`` (before touching the disk) for anything json cannot encode;
    there is deliberately no ``default=str`` fallback, which would hide bugs.
    """
    text = json.dumps(obj, indent=2) + "\n"
    write_text_atomic(path, text)
