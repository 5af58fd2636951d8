# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Keep a model's secrets out of its log: the values of its secret env vars, masked as they stream.

A model can print a credential it was given (a debug `env`, a URL with a token). Its log and its live
lines must not show it, so the log pump replaces every secret value of the container's environment by
``******`` before anything is written or shown. Performance lines are parsed from that log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._runspec import MASK, SECRET_ENV_LABEL

#: Shorter values are not masked: replacing every "abc" of a log would garble it and hide little.
MIN_SECRET_LEN = 4
#: Env names whose value is masked in logs, besides the credential keys: the last word of the name
#: says secret (HF_TOKEN, DB_PASSWORD, AWS_SECRET_ACCESS_KEY), unlike MAX_NUM_BATCHED_TOKENS or
#: TOKENIZERS_PARALLELISM, whose values (8192, false) would garble every log and number they appear in.
_SECRET_NAME = re.compile(r"(^|_)(PASS|PASSWD|PASSWORD|SECRET|TOKEN|KEY|APIKEY|CREDENTIALS?|AUTH)$|MAD_SECRETS",
                          re.IGNORECASE)
_NOT_SECRET = re.compile(r"[0-9.]+|true|false|yes|no|on|off|none|null", re.IGNORECASE)
#: A line longer than this without a line break is written in pieces (masked, all but a possible
#: secret start): a progress bar with carriage returns only must not wait for the end of the run.
MAX_HELD = 64 * 1024


def secret_values(body: Mapping[str, Any]) -> list[str]:
    """The values to mask in a container's output, longest first: every credential env value (named by
    the create body's ``madengine.secret_env`` label) and the values of secret-named env vars."""
    labels = body.get("Labels") or {}
    credential_keys = {k for k in str(labels.get(SECRET_ENV_LABEL, "")).split(",") if k}
    values = set()
    for item in body.get("Env") or []:
        key, value = str(item).partition("=")[::2]
        if len(value) < MIN_SECRET_LEN:
            continue
        if key in credential_keys or (_SECRET_NAME.search(key) and not _NOT_SECRET.fullmatch(value)):
            values.add(value)
            # The log is masked line by line: each line of a multi-line secret (a PEM key) on its own too.
            values.update(line for line in re.split(r"[\r\n]+", value) if len(line) >= MIN_SECRET_LEN)
    return sorted(values, key=lambda v: (-len(v), v))


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced; pass them longest first (a secret inside another)."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class LineMasker:
    """One output stream's bytes in, masked bytes out, a line once it is complete (at ``\n`` or ``\r``):
    a secret split over several reads is whole when it is masked, and a line of stdout is never cut by
    a stderr frame in the log (which would also cut a performance line). Keep one per stream."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = [s.encode() for s in secrets]
        self._longest = max((len(s) for s in self._secrets), default=0)
        self._held = b""

    def _mask(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret, MASK.encode())
        return data

    def feed(self, data: bytes) -> bytes:
        buf = self._held + data
        cut = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
        if cut == 0 and len(buf) > MAX_HELD:
            # No line break for a long while: pass all but a tail that may hold the start of a secret.
            masked = self._mask(buf)
            cut = len(masked) - max(0, self._longest - 1)
            self._held = masked[cut:]
            return masked[:cut]
        self._held = buf[cut:]
        return self._mask(buf[:cut])

    def flush(self) -> bytes:
        """The unterminated rest (masked), as a line of its own: another stream's rest may follow it."""
        rest, self._held = self._held, b""
        return self._mask(rest) + b"\n" if rest else b""
