"""Credentials for the build stage: ``credential.json``, registry logins, secret build args, masking.

Input: the MAD package's ``credential.json`` (``{"<name>": {"username": ..., "password": ...}}``) and the
host environment. Output: a :class:`Credentials` object that answers which registry login to use, which
build args a model's ``cred`` adds, and :meth:`Credentials.secret_values` (one set masks every log line,
the manifest, summaries and terminal output).

Registry logins: key = registry host as given to ``--registry`` (``dockerhub`` for ``docker.io``), or the
``MAD_REGISTRY_USER`` / ``MAD_REGISTRY_PASSWORD`` environment variables (which win over the file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._secrets import MASK, is_secret_name

from madengine.errors import InvalidInputError

CREDENTIAL_FILE = "credential.json"
ENV_USER = "MAD_REGISTRY_USER"
ENV_PASSWORD = "MAD_REGISTRY_PASSWORD"
SECRETS_ENV_MARKER = "MAD_SECRETS"
DOCKERHUB = "dockerhub"
_DOCKERHUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "dockerhub"})
#: Secret values shorter than this are not masked in free text: masking every "a" or "1" in a build
#: log would make it unreadable while protecting nothing (such a value is no secret).
MIN_MASK_LEN = 4

_EXAMPLE = ('{\n  "127.0.0.1:5000": {"username": "me", "password": "...", "repository": "team"},\n'
            '  "hf": {"token": "..."}\n}')


class CredentialError(Exception):
    """A model's ``cred`` names no entry of credential.json (a build failure of that model)."""


@dataclass(frozen=True)
class RegistryLogin:
    """How to log in to one registry; ``repository`` changes the pushed name to ``R/<repository>:<image>``."""

    registry: str
    key: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    repository: str | None = None
    source: str = CREDENTIAL_FILE

    @property
    def has_login(self) -> bool:
        return bool(self.username) and self.password is not None

    def auth_config(self) -> dict[str, str] | None:
        """The SDK's ``auth_config`` for pushes and pulls (never put on a command line)."""
        if not self.has_login:
            return None
        return {"username": str(self.username), "password": str(self.password)}


def registry_key(registry: str) -> str:
    """The credential.json key of a registry: its host as given, ``dockerhub`` for Docker Hub."""
    host = registry.strip().rstrip("/")
    for scheme in ("https://", "http://"):
        if host.lower().startswith(scheme):
            host = host[len(scheme):]
    if host.lower() in _DOCKERHUB_ALIASES or not host:
        return DOCKERHUB
    return host


def is_dockerhub(registry: str) -> bool:
    return registry_key(registry) == DOCKERHUB


class Credentials:
    """credential.json plus the relevant environment, loaded once per build."""

    def __init__(self, entries: Mapping[str, Any] | None = None, *, path: Path | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.entries: dict[str, Any] = dict(entries or {})
        self.path = path
        self.env = dict(os.environ if env is None else env)

    # ------------------------------------------------------------------------------ loading
    @classmethod
    def load(cls, mad_dir: Path | str, *, env: Mapping[str, str] | None = None,
             path: Path | str | None = None) -> Credentials:
        """``<mad_dir>/credential.json`` (or ``path``); a missing file is fine, a malformed one is exit 4."""
        file = Path(path) if path is not None else Path(mad_dir) / CREDENTIAL_FILE
        if not file.is_file():
            return cls({}, path=None, env=env)
        try:
            text = file.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise InvalidInputError(f"{file}: cannot be read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{file}: is not UTF-8 text ({exc.reason})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # The message names the position only: the offending line may hold a password.
            raise InvalidInputError(
                f"{file}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                hint="credential.json holds one object of named credential objects", example=_EXAMPLE,
            ) from None
        # Upstream's credential.json also holds lists of objects (``NAS_NODES``: one per NAS host).
        if not isinstance(data, dict) or not all(
                isinstance(v, dict) or (isinstance(v, list) and all(isinstance(i, dict) for i in v))
                for v in data.values()):
            raise InvalidInputError(
                f"{file}: expected an object of credential objects",
                hint="each entry is an object of string fields (or a list of them)", example=_EXAMPLE)
        return cls(data, path=file, env=env)

    # ------------------------------------------------------------------------------ registry
    def registry_login(self, registry: str) -> RegistryLogin:
        """The login for ``registry``: env ``MAD_REGISTRY_USER``/``..._PASSWORD`` win over credential.json."""
        key = registry_key(registry)
        entry = self.entries.get(key)
        if entry is None and key != registry.strip():
            entry = self.entries.get(registry.strip())
        entry = entry if isinstance(entry, dict) else {}
        repository = _opt_str(entry.get("repository"))
        user, password = self.env.get(ENV_USER), self.env.get(ENV_PASSWORD)
        if user and password is not None:
            return RegistryLogin(registry, key, user, password, repository, source="environment")
        username = _opt_str(entry.get("username"))
        pw = entry.get("password")
        return RegistryLogin(registry, key, username, None if pw is None else str(pw), repository,
                             source=str(self.path) if self.path else CREDENTIAL_FILE)

    # ------------------------------------------------------------------------------ build args
    def cred_build_args(self, cred: str) -> dict[str, str]:
        """``cred: X`` → ``{"X_<FIELD>": value}`` for each scalar field of entry X.

        Raises CredentialError when credential.json has no entry X.
        """
        entry = self.entries.get(cred)
        if not isinstance(entry, dict):
            where = str(self.path) if self.path else f"{CREDENTIAL_FILE} (none found in the MAD package)"
            raise CredentialError(f"credentials {cred!r} not found in {where}")
        return {f"{cred}_{name.upper()}": _scalar(value) for name, value in entry.items()
                if isinstance(value, (str, int, float, bool))}

    def secret_env_build_args(self) -> dict[str, str]:
        """Host env vars whose name contains ``MAD_SECRETS``, as build args of the same name."""
        return {name: value for name, value in sorted(self.env.items()) if SECRETS_ENV_MARKER in name}

    # ------------------------------------------------------------------------------ masking
    def secret_values(self, extra: Iterable[Any] = ()) -> frozenset[str]:
        """Every value to hide: credential.json secret fields, MAD_SECRETS env, the registry password.

        ``extra`` adds more (e.g. context values under secret-looking keys). Values shorter than
        :data:`MIN_MASK_LEN` are left out (see there).
        """
        values: set[str] = set()
        for entry in self.entries.values():
            for item in entry if isinstance(entry, list) else [entry]:
                if isinstance(item, dict):
                    for name, value in item.items():
                        if is_secret_name(name):
                            values.update(_leaves(value))
        values.update(v for k, v in self.env.items() if SECRETS_ENV_MARKER in k)
        if self.env.get(ENV_PASSWORD):
            values.add(self.env[ENV_PASSWORD])
        for item in extra:
            values.update(_leaves(item))
        return frozenset(v for v in values if len(v) >= MIN_MASK_LEN)


def secret_context_values(obj: Any, *, under_secret: bool = False) -> set[str]:
    """String values of ``obj`` (a context) under secret-looking keys (``HF_TOKEN``, ``password``...)."""
    found: set[str] = set()
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            found |= secret_context_values(value, under_secret=under_secret or is_secret_name(key))
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            found |= secret_context_values(item, under_secret=under_secret)
    elif under_secret and isinstance(obj, (str, int, float)) and not isinstance(obj, bool):
        found.add(str(obj))
    return found


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``******`` (longest first, so overlaps stay hidden)."""
    if not text:
        return text
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_deep(obj: Any, secrets: Iterable[str]) -> Any:
    """A copy of a JSON-like object with :func:`mask_text` applied to every string (keys too)."""
    secrets = tuple(sorted(set(secrets), key=len, reverse=True))
    if not secrets:
        return obj
    return _mask_deep(obj, secrets)


def _mask_deep(obj: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(obj, str):
        return mask_text(obj, secrets)
    if isinstance(obj, Mapping):
        return {(_mask_deep(k, secrets) if isinstance(k, str) else k): _mask_deep(v, secrets)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_mask_deep(v, secrets) for v in obj]
    return obj


def _leaves(value: Any) -> set[str]:
    if isinstance(value, bool) or value is None:
        return set()
    if isinstance(value, (str, int, float)):
        return {str(value)} if str(value) else set()
    if isinstance(value, Mapping):
        return set().union(*(_leaves(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(_leaves(v) for v in value)) if value else set()
    return set()


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
