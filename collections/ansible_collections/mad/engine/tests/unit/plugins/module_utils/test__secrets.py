# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

import io

import pytest
from ansible_collections.mad.engine.plugins.module_utils._secrets import MaskingWriter, mask_text, secret_values

SECRET = "hunter2-s3cr3t"


def test_secret_values_come_from_credential_keys_and_secret_looking_names() -> None:
    body = {"Env": [f"MYCRED_PASSWORD={SECRET}", "MYCRED_USERNAME=someone-long", "HF_TOKEN=hf_abcdef",
                    "BATCH=128", "API_KEY=abc", "PLAIN=visible-value"],
            "Labels": {"madengine.secret_env": "MYCRED_PASSWORD,MYCRED_USERNAME"}}
    # Credential keys (label) and secret-looking names; "abc" is too short to mask without garbling.
    assert secret_values(body) == [SECRET, "someone-long", "hf_abcdef"]
    assert secret_values({"Env": ["PLAIN=x"]}) == []


def test_mask_text() -> None:
    assert mask_text(f"token={SECRET}; again {SECRET}", [SECRET]) == "token=******; again ******"


@pytest.mark.parametrize("cut", range(len(SECRET) + 8))
def test_a_secret_split_over_writes_never_reaches_the_file(cut: int) -> None:
    text = f"pw: {SECRET}\n".encode()
    raw = io.BytesIO()
    writer = MaskingWriter(raw, [SECRET])
    writer.write(text[:cut])
    writer.flush()
    end = 4 + len(SECRET)  # "pw: " then the secret
    if cut <= 4:
        assert raw.getvalue() == text[:cut]
    elif cut < end:  # a part of the secret so far: held back, not written
        assert raw.getvalue() == b"pw: "
    else:
        assert raw.getvalue() == b"pw: ******" + text[end:cut]
    writer.write(text[cut:])
    writer.close()
    assert raw.getvalue() == b"pw: ******\n"


def test_only_a_possible_prefix_is_held_back() -> None:
    raw = io.BytesIO()
    writer = MaskingWriter(raw, [SECRET])
    writer.write(b"step 1 done\nhun")  # "hun" may be the start of the secret
    assert raw.getvalue() == b"step 1 done\n"
    writer.write(b"dreds of lines\n")  # it was not
    assert raw.getvalue() == b"step 1 done\nhundreds of lines\n"
    writer.write(b"tail without newline")
    writer.close()
    assert raw.getvalue().endswith(b"tail without newline")


def test_no_secrets_writes_through() -> None:
    raw = io.BytesIO()
    writer = MaskingWriter(raw, [])
    writer.write(b"abc")
    assert raw.getvalue() == b"abc"
