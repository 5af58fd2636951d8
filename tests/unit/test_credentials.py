"""credential.json loading, registry logins, cred build args, MAD_SECRETS and masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.mad.engine.plugins.module_utils._secrets import MASK

from madengine.credentials import (
    CredentialError,
    Credentials,
    mask_deep,
    mask_text,
    registry_key,
    secret_context_values,
)
from madengine.errors import ExitCode, InvalidInputError

CREDS = {
    "127.0.0.1:5001": {"username": "alice", "password": "s3cret-pass", "repository": "team"},
    "dockerhub": {"username": "bob", "password": "hub-pass-123"},
    "hf": {"username": "carol", "token": "hf_abcdefgh", "port": 8080},
}


def write(tmp_path: Path, data) -> Path:
    (tmp_path / "credential.json").write_text(json.dumps(data) if not isinstance(data, str) else data)
    return tmp_path


def test_missing_file_is_empty(tmp_path: Path) -> None:
    creds = Credentials.load(tmp_path, env={})
    assert creds.entries == {} and creds.secret_values() == frozenset()


@pytest.mark.parametrize("text", ['{"a": ', "[1, 2]", '{"a": "not an object"}'])
def test_malformed_file_is_exit_4_without_echoing_content(tmp_path: Path, text: str) -> None:
    write(tmp_path, text)
    with pytest.raises(InvalidInputError) as info:
        Credentials.load(tmp_path, env={})
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert "credential.json" in info.value.message


def test_registry_key() -> None:
    assert registry_key("127.0.0.1:5000") == "127.0.0.1:5000"
    assert registry_key("http://localhost:5000/") == "localhost:5000"
    assert registry_key("docker.io") == "dockerhub"
    assert registry_key("DOCKER.IO") == "dockerhub"


def test_registry_login_from_file_and_env(tmp_path: Path) -> None:
    creds = Credentials.load(write(tmp_path, CREDS), env={})
    login = creds.registry_login("127.0.0.1:5001")
    assert (login.username, login.password, login.repository) == ("alice", "s3cret-pass", "team")
    assert login.auth_config() == {"username": "alice", "password": "s3cret-pass"}
    assert "s3cret-pass" not in repr(login)
    assert creds.registry_login("docker.io").username == "bob"
    assert not creds.registry_login("127.0.0.1:5000").has_login
    env = {"MAD_REGISTRY_USER": "eve", "MAD_REGISTRY_PASSWORD": "env-pass-999"}
    creds = Credentials.load(tmp_path, env=env)
    login = creds.registry_login("127.0.0.1:5001")
    assert (login.username, login.password, login.source) == ("eve", "env-pass-999", "environment")
    assert login.repository == "team"  # the repository still comes from credential.json
    assert "env-pass-999" in creds.secret_values()


def test_cred_build_args(tmp_path: Path) -> None:
    creds = Credentials.load(write(tmp_path, CREDS), env={})
    assert creds.cred_build_args("hf") == {"hf_USERNAME": "carol", "hf_TOKEN": "hf_abcdefgh",
                                           "hf_PORT": "8080"}
    with pytest.raises(CredentialError, match="'nope' not found"):
        creds.cred_build_args("nope")


def test_mad_secrets_env_build_args() -> None:
    creds = Credentials({}, env={"MAD_SECRETS_HF_TOKEN": "abcd1234", "MY_MAD_SECRETS": "zzzz9",
                                 "PATH": "/bin"})
    assert creds.secret_env_build_args() == {"MAD_SECRETS_HF_TOKEN": "abcd1234", "MY_MAD_SECRETS": "zzzz9"}
    assert creds.secret_values() == {"abcd1234", "zzzz9"}


def test_secret_values_cover_secret_fields_only(tmp_path: Path) -> None:
    creds = Credentials.load(write(tmp_path, CREDS), env={})
    values = creds.secret_values(["ctx-token-1", "ab"])
    assert {"s3cret-pass", "hub-pass-123", "hf_abcdefgh", "ctx-token-1"} <= values
    assert "alice" not in values and "team" not in values  # usernames and repositories are not secret
    assert "ab" not in values  # too short to mask in free text


def test_secret_context_values() -> None:
    ctx = {"docker_build_arg": {"HF_TOKEN": "tok-1234", "BASE_DOCKER": "x"},
           "docker_env_vars": {"MAD_SECRETS_X": "val-5678", "N": "1"}, "api_key": ["k1", {"a": "k2"}]}
    assert secret_context_values(ctx) == {"tok-1234", "val-5678", "k1", "k2"}


def test_mask_text_and_deep() -> None:
    secrets = {"s3cret", "s3cret-pass"}
    assert mask_text("pw=s3cret-pass and s3cret", secrets) == f"pw={MASK} and {MASK}"
    assert mask_text("", secrets) == ""
    data = {"a": ["x s3cret y", {"s3cret": 1}], "n": 3}
    assert mask_deep(data, secrets) == {"a": [f"x {MASK} y", {MASK: 1}], "n": 3}
