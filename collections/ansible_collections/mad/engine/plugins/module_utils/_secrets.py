# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Keep a model's secrets out of its log: the values of its secret env vars, masked as they stream.

A model can print a credential it was given (a debug `env`, a URL with a token). Its log, the live
output and the rows parsed from the log must not show it, so every secret value of the container's
environment is replaced by ``******`` before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO

from ansible_collections.mad.engine.plugins.module_utils._runspec import MASK, SECRET_ENV_LABEL, is_secret_env

#: Shorter values are not masked: replacing every "abc" of a log would garble it and hide little.
MIN_SECRET_LEN = 4


def secret_values(body: Mapping[str, Any]) -> list[str]:
    """The values of the create body's secret env vars (see ``is_secret_env``), longest first."""
    labels = body.get("Labels") or {}
    keys = [k for k in str(labels.get(SECRET_ENV_LABEL, "")).split(",") if k]
    values = set()
    for item in body.get("Env") or []:
        key, _, value = str(item).partition("=")
        if len(value) >= MIN_SECRET_LEN and is_secret_env(key, keys):
            values.add(value)
    return sorted(values, key=len, reverse=True)


def mask_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class MaskingWriter:
    """A binary log file that masks ``secrets``, also when one arrives split over several writes.

    Only the shortest tail that could still grow into a secret is held back; ``close()`` writes it (it
    is not a secret) but leaves the file itself open.
    """

    def __init__(self, raw: BinaryIO, secrets: Iterable[str]) -> None:
        self._raw = raw
        self._secrets = [s.encode() for s in secrets]
        self._mask = MASK.encode()
        self._pending = b""

    def write(self, data: bytes) -> int:
        if not self._secrets:
            return self._raw.write(data)
        buf = self._pending + bytes(data)
        for secret in self._secrets:
            buf = buf.replace(secret, self._mask)
        keep = self._partial_tail(buf)
        self._pending = buf[len(buf) - keep:] if keep else b""
        self._raw.write(buf[: len(buf) - keep])
        return len(data)

    def _partial_tail(self, buf: bytes) -> int:
        """Length of the longest end of ``buf`` that is the start of a secret (not a whole one)."""
        best = 0
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(buf)), best, -1):
                if buf.endswith(secret[:size]):
                    best = size
                    break
        return best

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        """Write what was held back."""
        if self._pending:
            self._raw.write(self._pending)
            self._pending = b""
        self._raw.flush()
