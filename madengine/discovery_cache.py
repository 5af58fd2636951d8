"""Discovery's caches: the memo of parsed ``models.json`` files, so a large MAD package is not
re-validated at every command, and the folder of compiled ``get_models_json.py`` generators (written by
:mod:`madengine.discover_worker`, keyed the same way).

A file's models are a pure function of its bytes, its folder and madengine's own code, so the memo is
keyed by exactly that: the file's place in the package, a BLAKE2 hash of its content and a fingerprint
of the modules that turn cards into models. A changed file (whatever its timestamps say) or another
madengine misses and is parsed again; nothing is trusted from a stat. One file per MAD package under
``$XDG_CACHE_HOME/madengine/discovery`` (``~/.cache/...``), written atomically, holding one entry per
``models.json``. ``MADENGINE_DISCOVERY_CACHE=0`` turns both off. marshal, not pickle: loading a memo
runs no code.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import sys
import time
from pathlib import Path
from typing import Any

from madengine.cachedir import cache_home
from madengine.model import Model

CACHE_ENV = "MADENGINE_DISCOVERY_CACHE"
#: A package's memo is dropped when no discovery has rewritten it for this long.
PRUNE_DAYS = 30
_FORMAT = 1
_fingerprint: bytes | None = None


def _code_fingerprint() -> bytes:
    """The hash of the modules whose code decides what a card becomes."""
    global _fingerprint
    if _fingerprint is None:
        digest = hashlib.blake2b(f"{_FORMAT} {sys.version}".encode(), digest_size=16)
        here = Path(__file__).resolve().parent
        for name in ("model.py", "discover.py", "discovery_cache.py", "jsonfile.py"):
            digest.update((here / name).read_bytes())
        _fingerprint = digest.digest()
    return _fingerprint


def cache_file(root: Path) -> Path | None:
    """Where the memo of the package at ``root`` lives (None: turned off)."""
    base = _cache_base()
    if base is None:
        return None
    return base / "discovery" / (hashlib.blake2b(str(root).encode(), digest_size=12).hexdigest() + ".marshal")


def _cache_base() -> Path | None:
    if os.environ.get(CACHE_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return None
    return cache_home()


def _private_dir(folder: Path) -> bool:
    """Make ``folder`` (0700) if missing; whether it is this user's and no one else may write there.
    What discovery reads back from a cache decides models and runs code: nobody else's files."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return False
    return info.st_uid == os.geteuid() and not info.st_mode & 0o022


def generator_code_cache() -> str | None:
    """The folder of the generators' compiled code (:mod:`madengine.discover_worker`; None: off, or
    a folder others may write to)."""
    base = _cache_base()
    if base is None or not _private_dir(base / "generators"):
        return None
    return str(base / "generators")


class DiscoveryCache:
    """The memo of one MAD package: :meth:`get` at each models.json, :meth:`save` once at the end."""

    def __init__(self, root: Path) -> None:
        self.path = cache_file(root)
        self.entries: dict[str, tuple[bytes, list[dict[str, Any]], list[tuple[str, Any]]]] = {}
        self.dirty = False
        if self.path is not None and not _private_dir(self.path.parent):
            self.path = None
        if self.path is None:
            return
        try:
            stored = marshal.loads(self.path.read_bytes())
            if stored["format"] == _FORMAT and stored["code"] == _code_fingerprint():
                self.entries = stored["files"]
        except Exception:  # noqa: BLE001 - absent, unreadable, or another format: start empty
            self.entries = {}

    def key(self, data: bytes) -> bytes:
        """What a file's entry is stored under: its content's hash (nothing to hash when turned off)."""
        return hashlib.blake2b(data, digest_size=16).digest() if self.path is not None else b""

    def get(self, where: str, key: bytes) -> tuple[list[Model], list[tuple[str, Any]]] | None:
        """The models (fresh objects) and warned-about keys stored for ``where`` with this content."""
        entry = self.entries.get(where)
        if entry is None or entry[0] != key:
            return None
        # The entry's own dicts become the models' (each loaded fresh from the file by this instance);
        # discovery saves before it hands a model out, so a caller's change never reaches the file.
        models = []
        new = object.__new__
        for fields in entry[1]:
            model = new(Model)
            model.__dict__ = fields
            models.append(model)
        return models, entry[2]

    def put(self, where: str, key: bytes, models: list[Model], warnings: list[tuple[str, Any]]) -> None:
        if self.path is not None:
            self.entries[where] = (key, [dict(vars(m)) for m in models], warnings)
            self.dirty = True

    def save(self) -> None:
        """Write the memo if anything was added (atomically: a concurrent run reads one or the other)."""
        if self.path is None:
            return
        if not self.dirty:
            with contextlib.suppress(OSError):  # in use: not to be pruned (touched once a day at most)
                if self.entries and self.path.stat().st_mtime < time.time() - 86400:
                    os.utime(self.path)
            return
        with contextlib.suppress(OSError, ValueError):  # a cache that cannot be written is no cache
            partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            partial.write_bytes(marshal.dumps({"format": _FORMAT, "code": _code_fingerprint(),
                                               "files": self.entries}))
            os.replace(partial, self.path)
            self.dirty = False
            stale = time.time() - PRUNE_DAYS * 86400
            code = generator_code_cache()
            # Packages not discovered for a month; generators compiled a month ago (recompiled if used).
            for other in [*self.path.parent.glob("*.marshal"), *(Path(code).glob("*.code") if code else [])]:
                with contextlib.suppress(OSError):
                    if other.stat().st_mtime < stale:
                        other.unlink()
