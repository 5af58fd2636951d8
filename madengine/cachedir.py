"""Where madengine keeps what it can rebuild: ``$XDG_CACHE_HOME/madengine`` (``~/.cache/madengine``)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """The folder of madengine's caches (image tarballs, SLURM executors, discovery memos)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "madengine"
