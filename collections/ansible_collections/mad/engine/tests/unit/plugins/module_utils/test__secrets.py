# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

import copy

import pytest
from ansible_collections.mad.engine.plugins.module_utils._secrets import (
    MASK,
    MAX_HELD,
    LineMasker,
    is_secret_name,
    mask_secrets,
    mask_text,
    secret_values,
)

SECRET = "hunter2-s3cr3t"


def test_secret_values_credential_keys_and_secret_names_only() -> None:
    body = {"Env": [f"MYCRED_PASSWORD={SECRET}", "MYCRED_PIN=123456", "HF_TOKEN=hf_abcdef",
                    "AWS_SECRET_ACCESS_KEY=AKIA0000secret", "API_KEY=abc",
                    # Not secrets, though their names hold a secret word: masking 8192 or false would
                    # garble every log line (and performance number) they appear in.
                    "MAX_NUM_BATCHED_TOKENS=8192", "TOKENIZERS_PARALLELISM=false", "NUM_PASSES=1000",
                    "SSH_AUTH_SOCK=/run/agent.sock", "USE_AUTH=true", "PLAIN=visible-value"],
            "Labels": {"madengine.secret_env": "MYCRED_PASSWORD,MYCRED_PIN"}}
    # Credential keys (the label) even when numeric; "abc" is too short to mask without garbling.
    assert secret_values(body) == ["AKIA0000secret", SECRET, "hf_abcdef", "123456"]
    assert secret_values({"Env": ["PLAIN=x"]}) == []
    assert secret_values({"Env": ["MAD_SECRETS_HFTOKEN=hf_zzzz"]}) == ["hf_zzzz"]  # madengine's own convention


def test_a_multi_line_secret_is_masked_line_by_line() -> None:
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----"
    secrets = secret_values({"Env": [f"SSL_KEY={pem}"]})
    assert "MIIEvQIBADANBg" in secrets and pem in secrets
    masker = LineMasker(secrets)
    out = b"".join(masker.feed(line.encode() + b"\n") for line in ["key:", *pem.split("\n")]) + masker.flush()
    assert b"MIIEvQIBADANBg" not in out and out.startswith(b"key:\n")


def test_mask_text_longest_first() -> None:
    assert mask_text(f"token={SECRET}; again {SECRET}", [SECRET]) == "token=******; again ******"
    # A secret inside another: the longer one is masked whole.
    assert mask_text("url=u:abcdXYZW@h", ["abcdXYZW", "abcd"]) == "url=u:******@h"


@pytest.mark.parametrize("cut", range(len(SECRET) + 8))
def test_a_secret_split_over_reads_is_masked_whole(cut: int) -> None:
    text = f"pw: {SECRET}\n".encode()
    masker = LineMasker([SECRET])
    out = masker.feed(text[:cut]) + masker.feed(text[cut:]) + masker.flush()
    assert out == b"pw: ******\n"


def test_nested_secrets_split_over_reads() -> None:
    masker = LineMasker(["abcdXYZW", "abcd"])
    assert masker.feed(b"pw abcd") == b""  # no line yet
    assert masker.feed(b"XYZW and abcd\n") == b"pw ****** and ******\n"


def test_lines_pass_whole_and_the_rest_at_flush() -> None:
    masker = LineMasker([])
    assert masker.feed(b"step 1\nperformance: 1") == b"step 1\n"
    assert masker.feed(b"0 x\r50%\rtail") == b"performance: 10 x\r50%\r"  # carriage returns end a line too
    assert masker.flush() == b"tail\n" and masker.flush() == b""  # a line of its own


def test_a_very_long_line_is_passed_in_pieces_without_a_secret_start() -> None:
    masker = LineMasker([SECRET])
    head = b"x" * MAX_HELD + SECRET.encode()[:5]
    out = masker.feed(head)
    assert out == b"x" * (MAX_HELD + 5 - (len(SECRET) - 1))  # the possible start of a secret is held
    out += masker.feed(SECRET.encode()[5:] + b" done\n")
    assert out == b"x" * MAX_HELD + b"****** done\n"


# ---------------------------------------------------------------- the one secret-name rule


@pytest.mark.parametrize("name", ["password", "DB_PASS", "MY_PASSWORD", "client_secret", "HF_TOKEN", "hfToken",
                                  "api_key", "apiKey", "APIKEY", "credentials", "Authorization", "registry-auth",
                                  "AWS_SECRET_ACCESS_KEY", "MY_API_TOKEN", "secrets", "MAD_SECRETS_HFTOKEN",
                                  "mad_secrets_x", "ssh.passphrase"])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["MAX_NUM_BATCHED_TOKENS", "TOKENIZERS_PARALLELISM", "NUM_PASSES", "SSH_AUTH_SOCK",
                                  "KEY_FILE", "gpu_vendor", "docker_build_arg", "BASE_DOCKER", "model_args",
                                  "timeout", "OMP_NUM_THREADS", "AWS_ACCESS_KEY_ID", "", None, 3])
def test_names_that_are_not_secret(name) -> None:
    assert not is_secret_name(name)


def test_mask_secrets_nested_and_not_mutating() -> None:
    ctx = {
        "gpu_vendor": "AMD",
        "docker_build_arg": {"MAD_SECRETS_HF_TOKEN": "hf_abc", "BASE_DOCKER": "rocm/pytorch"},
        "docker_env_vars": {"MY_PASSWORD": "hunter2", "HIP_VISIBLE_DEVICES": "0", "PORT": 8080,
                            "MAX_NUM_BATCHED_TOKENS": "8192", "USE_AUTH": "true"},
        "tools": [{"name": "x", "env_vars": {"API_KEY": "k", "LEVEL": "1"}}],
        "secrets": {"hf": "abc", "list": ["a", ""], "flag": True, "n": None, "num": 1234},
        "MAD_SECRETS": "plain",
        "empty_token": "",
    }
    original = copy.deepcopy(ctx)
    masked = mask_secrets(ctx)
    assert masked == {
        "gpu_vendor": "AMD",
        "docker_build_arg": {"MAD_SECRETS_HF_TOKEN": MASK, "BASE_DOCKER": "rocm/pytorch"},
        "docker_env_vars": {"MY_PASSWORD": MASK, "HIP_VISIBLE_DEVICES": "0", "PORT": 8080,
                            "MAX_NUM_BATCHED_TOKENS": "8192", "USE_AUTH": "true"},
        "tools": [{"name": "x", "env_vars": {"API_KEY": MASK, "LEVEL": "1"}}],
        "secrets": {"hf": MASK, "list": [MASK, ""], "flag": True, "n": None, "num": MASK},
        "MAD_SECRETS": MASK,
        "empty_token": "",
    }
    assert MASK == "******"
    assert ctx == original
    masked["docker_build_arg"]["BASE_DOCKER"] = "changed"
    assert ctx["docker_build_arg"]["BASE_DOCKER"] == "rocm/pytorch"


def test_mask_secrets_on_lists_and_scalars() -> None:
    assert mask_secrets([{"token": "t"}, {"name": "n"}]) == [{"token": MASK}, {"name": "n"}]
    assert mask_secrets("hf_abc") == "hf_abc"  # no key, nothing to judge by
    assert mask_secrets(None) is None


def test_every_side_of_the_seam_uses_this_rule() -> None:
    """The controller (manifest, console), the container body and the docker command line agree."""
    from ansible_collections.mad.engine.plugins.module_utils import _runspec

    from madengine import build, context, credentials

    assert _runspec.is_secret_name is is_secret_name
    assert credentials.is_secret_name is is_secret_name and build.mask_secrets is mask_secrets
    assert not hasattr(context, "SECRET_KEY_PATTERN")
    assert _runspec.is_secret_env("MAX_NUM_BATCHED_TOKENS") is False and _runspec.is_secret_env("HF_TOKEN")
