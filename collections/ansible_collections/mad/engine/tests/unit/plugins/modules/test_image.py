# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

import base64
import json

from ansible_collections.mad.engine.plugins.modules import image

DIGEST = "sha256:" + "ab" * 32
REF = f"127.0.0.1:5000/ci-x@{DIGEST}"
INSPECT = {"Id": "sha256:" + "cd" * 32, "RepoDigests": [f"127.0.0.1:5000/ci-x@{DIGEST}"]}


def _present(engine) -> None:
    engine.routes[("GET", f"/images/{REF}/json")] = (200, INSPECT)


def test_present_image_is_not_changed(engine, run_module) -> None:
    _present(engine)
    result = run_module(image.main, {"name": REF, "digest": DIGEST, "docker_host": engine.url})
    assert result["changed"] is False and result["id"] == INSPECT["Id"] and result["image"] == REF
    assert not [r for r in engine.requests if r[0] == "POST"]


def test_check_mode_predicts_a_pull_without_pulling(engine, run_module) -> None:
    result = run_module(image.main, {"name": REF, "digest": DIGEST, "docker_host": engine.url,
                                     "_ansible_check_mode": True})
    assert result["changed"] is True
    assert not [r for r in engine.requests if r[0] == "POST"]


def test_pull_with_credentials_sends_auth_and_hides_the_password(engine, run_module) -> None:
    pulled = []

    def create():
        pulled.append(True)
        engine.routes[("GET", f"/images/{REF}/json")] = (200, INSPECT)
        return 200, b'{"status": "Pulling"}\n{"status": "Digest: ' + DIGEST.encode() + b'"}\n'

    engine.routes[("POST", "/images/create")] = (200, create)
    result = run_module(image.main, {"name": REF, "digest": DIGEST, "docker_host": engine.url,
                                     "registry_username": "u", "registry_password": "s3cret-pw"})
    assert result["changed"] is True and pulled
    headers = next(r[2] for r in engine.requests if r[1] == "/images/create")
    auth = json.loads(base64.urlsafe_b64decode(headers["X-Registry-Auth"]))
    assert auth == {"username": "u", "password": "s3cret-pw", "serveraddress": "127.0.0.1:5000"}
    assert "s3cret-pw" not in json.dumps(result)


def test_pull_failure_fails_with_reason_and_no_secret(engine, run_module) -> None:
    engine.routes[("POST", "/images/create")] = (200, b'{"error": "unauthorized: bad s3cret-pw"}\n')
    result = run_module(image.main, {"name": REF, "docker_host": engine.url,
                                     "registry_username": "u", "registry_password": "s3cret-pw"})
    assert result["failed"] is True and result["reason"] == "registry auth failed"
    assert "s3cret-pw" not in json.dumps(result)


def test_digest_mismatch_fails(engine, run_module) -> None:
    def create():
        engine.routes[("GET", f"/images/{REF}/json")] = (200, dict(INSPECT, RepoDigests=[]))
        return 200, b'{"status": "done"}\n'

    engine.routes[("POST", "/images/create")] = (200, create)
    result = run_module(image.main, {"name": REF, "digest": DIGEST, "docker_host": engine.url})
    assert result["failed"] is True and result["reason"] == "digest mismatch"


def test_load_from_a_tarball_only_when_missing(engine, run_module, tmp_path) -> None:
    tarball = tmp_path / "x.tar"
    tarball.write_bytes(b"not really a tar")

    def load():
        engine.routes[("GET", "/images/ci-x/json")] = (200, INSPECT)
        return 200, b'{"stream": "Loaded image: ci-x:latest\\n"}\n'

    engine.routes[("POST", "/images/load")] = (200, load)
    args = {"name": "ci-x", "load_from": str(tarball), "docker_host": engine.url}
    first = run_module(image.main, args)
    assert first["changed"] is True and first["loaded"] == ["ci-x:latest"]
    second = run_module(image.main, args)
    assert second["changed"] is False
    assert len([r for r in engine.requests if r[1] == "/images/load"]) == 1


def test_load_that_does_not_give_the_image_fails(engine, run_module, tmp_path) -> None:
    tarball = tmp_path / "x.tar"
    tarball.write_bytes(b"x")
    engine.routes[("POST", "/images/load")] = (200, b'{"stream": "Loaded image: other:1\\n"}\n')
    result = run_module(image.main, {"name": "ci-x", "load_from": str(tarball), "docker_host": engine.url})
    assert result["failed"] is True and result["reason"] == "image load failed"
