# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Pack and unpack file trees as gzip tarballs: the two halves of the ``mad.engine.sync`` action.

The action runs these functions on the controller, and ships this file's source to the host to run
there with ``python3 -c`` (``main``), so the host needs only Python: no tar, no rsync. Standard library
only, no imports from the collection, and syntax every target Python accepts.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import tarfile

#: What never goes to a host, by file or folder name: the one skip list of the sync, ``generate
#: ansible`` and ``generate k8s`` (caches, VCS data, earlier runs' work folders, compiled files, and
#: credential.json, which only the controller reads).
SKIP_NAMES = ("__pycache__", ".git", ".svn", ".hg", "run_directory", ".ruff_cache", ".pytest_cache",
              "credential.json")
SKIP_SUFFIXES = (".pyc", ".pyo")


def shipped(name):
    """Whether a file or folder called NAME goes to hosts."""
    return name not in SKIP_NAMES and not name.endswith(SKIP_SUFFIXES)


def package_files(root, rel):
    """The files of ROOT/REL (a file or a folder) that a host gets, as paths relative to ROOT (each
    folder sorted, its files before its subfolders).

    Symlinked folders are not walked into; a symlinked file is listed (callers decide whether its
    target stays inside the package)."""
    base = os.path.join(root, rel)
    if not os.path.isdir(base) or os.path.islink(base):
        return [rel] if os.path.isfile(base) and shipped(os.path.basename(rel)) else []
    found = []
    for folder, dirs, names in os.walk(base):
        dirs[:] = sorted(d for d in dirs if shipped(d))
        for name in sorted(names):
            full = os.path.join(folder, name)
            if shipped(name) and os.path.isfile(full):
                found.append(os.path.relpath(full, root).replace(os.sep, "/"))
    return found


def _skip(info):
    return info if all(shipped(part) for part in info.name.split("/")) else None


def pack(out, root, paths=(), prefix=""):
    """Write ROOT's PATHs (all of ROOT when none are given) to the tarball OUT, as PREFIX/PATH.

    OUT ``-`` keeps the tarball in memory and returns it base64-encoded as ``data``. Paths that do not
    exist are skipped and returned; a missing ROOT gives an empty tarball. ``~`` is expanded.
    Returns {"packed": [...], "missing": [...]} (and "data").
    """
    root = os.path.expanduser(root)
    paths = list(paths)
    if not paths and os.path.isdir(root):
        paths = sorted(os.listdir(root))
    packed, missing = [], []
    if out == "-":
        target = io.BytesIO()
    else:
        parent = os.path.dirname(out)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent)
        target = open(out + ".part", "wb")  # noqa: SIM115 - closed below
    with target, tarfile.open(fileobj=target, mode="w:gz", compresslevel=1) as tar:
        for path in paths:
            full = os.path.join(root, path)
            if not os.path.lexists(full):
                missing.append(path)
                continue
            name = os.path.normpath(os.path.join(prefix, path) if prefix else path)
            tar.add(full, arcname=name, filter=_skip)
            packed.append(path)
        tar.close()
        if out == "-":
            return {"packed": packed, "missing": missing,
                    "data": base64.b64encode(target.getvalue()).decode("ascii")}
    os.replace(out + ".part", out)
    return {"packed": packed, "missing": missing}


def unpack(src, dest, remove=True):
    """Extract the tarball SRC (``-``: standard input) into DEST (created if needed), then remove SRC
    unless told not to.

    Members may not leave DEST (absolute paths or ``..`` are refused). A symlink found in DEST where a
    member (or a folder on its way) goes is removed first: the tarball says what is there, and a model
    that planted the link (DEST may be bind-mounted into its container) cannot redirect the extraction
    or block every later sync. ``~`` is expanded.
    Returns {"files": N}.
    """
    dest = os.path.expanduser(dest)
    if not os.path.isdir(dest):
        os.makedirs(dest)
    base = os.path.realpath(dest)
    source = io.BytesIO(sys.stdin.buffer.read()) if src == "-" else open(src, "rb")  # noqa: SIM115
    with source, tarfile.open(fileobj=source) as tar:
        members = tar.getmembers()
        for member in members:
            parts = [part for part in member.name.split("/") if part not in ("", ".")]
            if ".." not in parts and not member.name.startswith("/"):
                for index in range(1, len(parts) + 1):
                    here = os.path.join(base, *parts[:index])
                    if os.path.islink(here):
                        os.unlink(here)
            target = os.path.realpath(os.path.join(base, member.name))
            if target != base and not target.startswith(base + os.sep):
                raise ValueError(f"refusing to extract {member.name} outside {dest}")
        if hasattr(tarfile, "tar_filter"):
            tar.extractall(base, members=members, filter="tar")
        else:  # Python without extraction filters (before 3.8.17/3.9.17/3.10.12/3.11.4)
            tar.extractall(base, members=members)
    if remove and src != "-":
        os.remove(src)
    return {"files": sum(1 for m in members if m.isfile())}


def main(argv):
    """``pack OUT ROOT PREFIX [PATH...]`` or ``unpack SRC DEST`` (``-``: stdout, stdin); prints the result
    as JSON on one line."""
    try:
        if argv[1] == "pack":
            result = pack(argv[2], argv[3], argv[5:], argv[4])
        elif argv[1] == "unpack":
            result = unpack(argv[2], argv[3])
        else:
            raise ValueError(f"unknown command {argv[1]!r}")
    except (OSError, ValueError, tarfile.TarError) as exc:
        sys.stdout.write(json.dumps({"failed": True, "msg": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
