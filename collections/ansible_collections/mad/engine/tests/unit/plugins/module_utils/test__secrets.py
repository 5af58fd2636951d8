# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

import pytest
from ansible_collections.mad.engine.plugins.module_utils._secrets import MAX_HELD, LineMasker, mask_text, secret_values

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
