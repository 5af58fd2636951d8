"""Copy a folder of this checkout as git tracks it, never what a user's earlier runs left in it.

A user who ran the README's first command has ``examples/MAD/perf.csv``, ``build_manifest.json``,
``runs/`` and logs in the tree; a test that copied them would see rows it did not make. Outside a git
checkout (an unpacked sdist) the files ``.gitignore`` names as run artefacts are left out instead.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

#: What a run writes into a MAD package (kept in step with .gitignore).
RUN_ARTEFACTS = ("perf.csv", "perf.csv.lock", "build_manifest.json", "*.live.log", "*.sysenv.json", "runs",
                 "run_directory", "__pycache__", ".ruff_cache", ".pytest_cache", "*.pyc", "*.run_directory",
                 "k8s", "execution_config.json")


def tracked_files(src: Path) -> list[str] | None:
    """The paths under ``src`` (relative to it) that git tracks, or None outside a git checkout."""
    try:
        done = subprocess.run(["git", "-C", str(src), "ls-files", "-z", "--", "."], capture_output=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return [p for p in done.stdout.decode().split("\0") if p]


def copy_tracked(src: Path, dest: Path) -> Path:
    """Copy ``src`` to ``dest`` (which must not exist) with only its tracked files; returns ``dest``."""
    files = tracked_files(src)
    if files is None:
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*RUN_ARTEFACTS))
        return dest
    dest.mkdir(parents=True)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target, follow_symlinks=False)
    return dest
