# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""The one rule for files of a MAD package: a card's paths stay inside the package, after symlinks.

A model card (and the data config) names files of the package: ``scripts``, ``dockerfile``,
``dockercontext``, relative data paths; ``multiple_results`` names a file of the run directory. Every
consumer (the local run, the cluster planner and sync, the host's run, ``generate ansible``, ``generate
k8s``, the build) asks :func:`inside` or :func:`card_problems` here, so none of them can send, copy,
bind or read a file from outside the package.

Files a model wrote (the package is bind-mounted writable at ``/myworkspace``, the run directory at
``/myworkspace/run_directory``) are read by the host with :func:`read_beneath`, which follows no
symlink and opens no FIFO or device; :func:`copy_tree` copies a scripts folder into a run directory
without following a symlink that leaves the package (such a link is copied as a link, so inside the
container it points into the container's own file system, never the host's).

Standard library only: this runs on the controller and on target hosts.
"""

from __future__ import annotations

import errno
import os
import stat

from ansible_collections.mad.engine.plugins.module_utils._runspec import script_location

#: Read at most this much of a model-written file (a multiple_results CSV, the keep-alive status).
READ_LIMIT = 64 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class OutsideError(ValueError):
    """A path leaves the MAD package (or the run directory)."""


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def inside(root: str, path: str, what: str = "path") -> str:
    """``path`` (relative to ``root``, or absolute) as a normalised path relative to ``root``.

    Raises OutsideError when it leaves ``root``: an absolute path elsewhere, ``..`` going above it, or a
    symlink on the way (the path itself included) that points outside. The path need not exist: the
    part that exists is resolved, the rest is taken as written. ``what`` names it in the message
    (``model x: scripts``).
    """
    text = str(path or "").strip()
    root_abs = os.path.normpath(os.path.abspath(os.path.expanduser(root)))
    root_real = os.path.realpath(root_abs)
    full = os.path.normpath(text if os.path.isabs(text) else os.path.join(root_abs, text))
    if _under(full, root_abs):
        rel = os.path.relpath(full, root_abs)
    elif _under(full, root_real):
        rel = os.path.relpath(full, root_real)
    else:
        raise OutsideError(f"{what} {text!r} is outside the MAD package {root_abs}: a card's paths must "
                           "stay inside the package (write them relative to it, without '..' above it)")
    # Both the path as the kernel resolves it (symlinks first, then '..') and the normalised one the
    # caller goes on with.
    for candidate in (text if not os.path.isabs(text) else rel, rel):
        resolved = os.path.realpath(os.path.join(root_real, candidate))
        if not _under(resolved, root_real):
            raise OutsideError(f"{what} {text!r} resolves to {resolved}, outside the MAD package {root_abs} "
                               "(through a symlink): a card's paths must stay inside the package")
    return rel


def card_problems(model: dict, mad_dir: str, fields: tuple[str, ...] = ("scripts", "multiple_results")) -> list[str]:
    """Why the card's paths of ``fields`` break the rule (empty: they keep to it).

    ``scripts`` (its folder and the script in it), ``dockerfile`` (the prefix's folder), ``dockercontext``:
    inside ``mad_dir`` after symlinks. ``multiple_results``: a file name relative to the run directory,
    which may not leave it.
    """
    name = model.get("name")
    problems = []
    for field in fields:
        value = str(model.get(field) or "").strip()
        if not value:
            continue
        where = f"model {name}: {field}"
        try:
            if field == "scripts":
                folder, script = script_location(model)
                for path in (value, folder, os.path.join(folder, script)):  # the card's value named first
                    inside(mad_dir, path, where)
            elif field == "dockerfile":
                inside(mad_dir, os.path.dirname(value) or ".", where)
            elif field == "multiple_results":
                rel = os.path.normpath(value)
                if os.path.isabs(value) or rel == os.pardir or rel.startswith(os.pardir + os.sep):
                    raise OutsideError(f"{where} {value!r} is outside the run directory: it names the file "
                                       "the script writes in its run directory (e.g. \"perf.csv\")")
            else:
                inside(mad_dir, value, where)
        except OutsideError as exc:
            problems.append(str(exc))
    return problems


def open_beneath(root: str, rel: str, directory: bool = False) -> int:
    """A read-only file descriptor of ``root/rel`` reached without following any symlink below ``root``.

    ``rel`` is relative and has no ``..``. Only a regular file (or, with ``directory``, a folder) is
    opened: a FIFO a model left there cannot block the reader. Raises OSError (ELOOP for a symlink,
    EINVAL for another kind of file); the caller closes the descriptor.
    """
    parts = [part for part in os.path.normpath(rel).split(os.sep) if part not in ("", ".")]
    if os.path.isabs(rel) or os.pardir in parts:
        raise OSError(errno.EINVAL, f"{rel!r} is not a path below {root}")
    fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = _FILE_FLAGS if last and not directory else _DIR_FLAGS
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(os.path.join(root, *parts[:index + 1])):
                    raise OSError(errno.ELOOP, "is a symlink, not followed", os.path.join(root, *parts[:index + 1])) \
                        from None
                raise
            os.close(fd)
            fd = child
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)):
            raise OSError(errno.EINVAL, "is not a regular file", os.path.join(root, *parts))
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_beneath(root: str, rel: str, limit: int = READ_LIMIT) -> bytes:
    """The bytes of the regular file ``root/rel`` (at most ``limit``), following no symlink below ``root``."""
    fd = open_beneath(root, rel)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit)


def copy_tree(root: str, rel: str, dest: str) -> None:
    """Copy the folder ``root/rel`` of the MAD package to ``dest`` (created; must not exist).

    A symlink whose target stays inside ``root`` is copied as what it points to (as ``shutil.copytree``
    does); one that leaves ``root``, dangles or loops is copied as the symlink itself, never followed.
    FIFOs, sockets and devices are skipped. Files keep their permission bits and times. Every open
    follows no symlink, so a link swapped in meanwhile (a running model writes into the package) cannot
    redirect the copy. Raises OutsideError when ``rel`` itself leaves ``root``, OSError otherwise.
    """
    root_real = os.path.realpath(root)
    rel = inside(root_real, rel, "scripts folder")
    resolved = os.path.relpath(os.path.realpath(os.path.join(root_real, rel)), root_real)
    fd = open_beneath(root_real, resolved, directory=True)
    try:
        _copy_dir(fd, os.path.join(root_real, resolved), dest, root_real, set())
    finally:
        os.close(fd)


def _copy_dir(src_fd: int, src_path: str, dest: str, root: str, stack: set[tuple[int, int]]) -> None:
    info = os.fstat(src_fd)
    stack = stack | {(info.st_dev, info.st_ino)}
    os.makedirs(dest)
    with os.scandir(src_fd) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        target = os.path.join(dest, name)
        st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            link = os.readlink(name, dir_fd=src_fd)
            resolved = os.path.realpath(os.path.join(src_path, name))
            fd = None
            if _under(resolved, root) and os.path.exists(resolved):
                try:
                    fd = open_beneath(root, os.path.relpath(resolved, root), directory=os.path.isdir(resolved))
                except OSError:
                    fd = None
            if fd is None:
                os.symlink(link, target)
                continue
            fst = os.fstat(fd)
            if stat.S_ISDIR(fst.st_mode) and (fst.st_dev, fst.st_ino) in stack:
                os.close(fd)
                os.symlink(link, target)  # a loop: keep the link
                continue
            _copy_fd(fd, resolved, target, root, stack, fst)
        elif stat.S_ISDIR(st.st_mode):
            fd = os.open(name, _DIR_FLAGS, dir_fd=src_fd)
            _copy_fd(fd, os.path.join(src_path, name), target, root, stack, os.fstat(fd))
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(name, _FILE_FLAGS, dir_fd=src_fd)
            _copy_fd(fd, os.path.join(src_path, name), target, root, stack, os.fstat(fd))
    os.chmod(dest, stat.S_IMODE(info.st_mode) | stat.S_IWUSR | stat.S_IXUSR)
    os.utime(dest, ns=(info.st_atime_ns, info.st_mtime_ns))


def _copy_fd(fd: int, src_path: str, target: str, root: str, stack: set[tuple[int, int]], st: os.stat_result) -> None:
    """Copy the open ``fd`` (a folder or a regular file; closed here) to ``target``."""
    try:
        if stat.S_ISDIR(st.st_mode):
            _copy_dir(fd, src_path, target, root, stack)
            return
        if not stat.S_ISREG(st.st_mode):
            return
        with os.fdopen(os.dup(fd), "rb") as source, open(target, "xb") as out:
            while True:
                chunk = source.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        os.chmod(target, stat.S_IMODE(st.st_mode))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)
