# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""The one secret rule, and keeping secrets out of everything a run writes or shows.

:func:`is_secret_name` decides which names hold secrets, for every executor and every file: the
manifest, the execution config, the bundle, the k8s objects, the console, a container's log. It is
strict on purpose: the last word of the name says secret (``HF_TOKEN``, ``DB_PASSWORD``,
``AWS_SECRET_ACCESS_KEY``, ``apiKey``) or the name is a ``MAD_SECRETS*`` variable, unlike
``MAX_NUM_BATCHED_TOKENS`` or ``TOKENIZERS_PARALLELISM``: masking those would drop a normal setting.

A model can print a credential it was given (a debug `env`, a URL with a token). Its log and its live
lines must not show it, so the log pump replaces every secret value of the container's environment by
``******`` before anything is written or shown. Performance lines are parsed from that log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "******"
#: Label listing (by name only) the env keys that hold credentials, so logs can mask them.
SECRET_ENV_LABEL = "madengine.secret_env"
#: Shorter values are not masked: replacing every "abc" of a log would garble it and hide little.
MIN_SECRET_LEN = 4
#: The last word of a secret name (after splitting on ``_ - .`` and camelCase).
_SECRET_WORD = re.compile(r"PASS|PASSWD|PASSWORD|PASSPHRASE|SECRETS?|TOKEN|KEY|APIKEY|CREDENTIALS?|AUTH|AUTHORIZATION",
                          re.IGNORECASE)
_WORD_BREAK = re.compile(r"[_\-.\s]+|(?<=[a-z0-9])(?=[A-Z])")
#: Values that say whether something is on, not what a secret is (``USE_AUTH=true``): never masked.
_FLAG = re.compile(r"true|false|yes|no|on|off|none|null", re.IGNORECASE)
_NOT_SECRET = re.compile(r"[0-9.]+|true|false|yes|no|on|off|none|null", re.IGNORECASE)
#: A line longer than this without a line break is written in pieces (masked, all but a possible
#: secret start): a progress bar with carriage returns only must not wait for the end of the run.
MAX_HELD = 64 * 1024


def is_secret_name(name: Any) -> bool:
    """Whether the value under ``name`` (an env var, a context or config key) is a secret."""
    if not isinstance(name, str) or not name:
        return False
    if "MAD_SECRETS" in name.upper():
        return True
    words = [word for word in _WORD_BREAK.split(name) if word]
    return bool(words) and bool(_SECRET_WORD.fullmatch(words[-1]))


def mask_secrets(obj: Any) -> Any:
    """A deep copy of ``obj`` where every value under a secret name is replaced by ``MASK``.

    A secret key's nested values are masked leaf by leaf (``{"secrets": {"hf": "x"}}`` hides ``x`` but
    keeps the structure). Empty values, booleans and on/off words (``"true"``) stay as they are: they
    reveal nothing, tell the reader whether a credential was set, and a run must not lose them.
    """
    return _mask(obj, masking=False)


def _mask(obj: Any, *, masking: bool) -> Any:
    if isinstance(obj, Mapping):
        return {key: _mask(value, masking=masking or is_secret_name(key)) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_mask(item, masking=masking) for item in obj]
    if isinstance(obj, tuple):
        return tuple(_mask(item, masking=masking) for item in obj)
    if masking and obj is not None and not isinstance(obj, bool) and obj != "" and not _FLAG.fullmatch(str(obj)):
        return MASK
    return obj


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
        if key in credential_keys or (is_secret_name(key) and not _NOT_SECRET.fullmatch(value)):
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
