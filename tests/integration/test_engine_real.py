"""The mad.engine client and container service layers against the real engine and registry.

Needs tests/infra/up.sh: dockerd (--bridge=none, so containers use host networking), the registry on
127.0.0.1:5000 and the local image madengine-base:bookworm. Everything created here carries a random
prefix and is removed after the module.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from ansible_collections.mad.engine.plugins.module_utils._container import ContainerOutcome, run_container
from ansible_collections.mad.engine.plugins.module_utils._engine import (
    MAX_API_VERSION,
    EngineClient,
    EngineError,
)

pytestmark = pytest.mark.docker

BASE_IMAGE = "madengine-base:bookworm"
REGISTRY = "127.0.0.1:5000"
# Loopback only: never let a proxy from the environment see these requests.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Created:
    """What a test module made, for removal after it."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.image_refs: list[str] = []
        self.manifests: list[tuple[str, str, str]] = []  # (registry, repository, digest)


@pytest.fixture(scope="module")
def engine() -> EngineClient:
    client = EngineClient()
    try:
        client.ping()
    except EngineError as e:
        pytest.fail(f"{e} (bring the test infrastructure up with: bash tests/infra/up.sh)")
    if client.image_inspect(BASE_IMAGE) is None:
        pytest.fail(f"image {BASE_IMAGE} is missing (bash tests/infra/up.sh builds it)")
    return client


@pytest.fixture(scope="module")
def sdk() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def created(engine: EngineClient) -> Iterator[Created]:
    record = Created(f"madtest-{secrets.token_hex(4)}")
    yield record
    for container in engine.container_list({"name": record.prefix}):
        engine.container_remove(container["Id"], force=True)
    for ref in reversed(record.image_refs):
        engine.image_remove(ref)  # by name only: never force-remove the shared base image's layers
    for registry, repo, digest in record.manifests:
        request = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{digest}", method="DELETE")
        with contextlib.suppress(OSError):  # URLError is an OSError
            _HTTP.open(request, timeout=10).close()


def _push(sdk: docker.DockerClient, repo: str, tag: str, auth: dict[str, str] | None = None) -> str:
    """Tag the base image as repo:tag, push it, drop the local tag; returns the manifest digest."""
    assert sdk.api.tag(BASE_IMAGE, repo, tag)
    digest = None
    try:
        for msg in sdk.api.push(repo, tag, stream=True, decode=True, auth_config=auth):
            assert "error" not in msg, msg
            digest = (msg.get("aux") or {}).get("Digest") or digest
    finally:
        sdk.api.remove_image(f"{repo}:{tag}")
    assert digest and digest.startswith("sha256:")
    return digest


@pytest.fixture(scope="module")
def pushed(sdk: docker.DockerClient, created: Created) -> tuple[str, str]:
    """(repo, digest) of a copy of the base image in the test registry, tag v1."""
    repo = f"{REGISTRY}/{created.prefix}/base"
    digest = _push(sdk, repo, "v1")
    created.manifests.append((REGISTRY, f"{created.prefix}/base", digest))
    return repo, digest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _body(script: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Image": BASE_IMAGE,
        "Cmd": ["bash", "-c", script],
        "HostConfig": {"NetworkMode": "host"},
    }
    body.update(extra)
    return body


def _gone(engine: EngineClient, outcome: ContainerOutcome, name: str) -> bool:
    assert outcome.container_id
    if engine.container_inspect(outcome.container_id) is not None:
        return False
    return not engine.container_list({"name": name})


# --------------------------------------------------------------------------- client


def test_version_negotiation_and_system_calls(engine: EngineClient) -> None:
    server = engine.version()["ApiVersion"]
    expected = min(server, MAX_API_VERSION, key=lambda v: tuple(int(p) for p in v.split(".")))
    assert engine.api_version == expected
    assert engine.ping() is True
    assert engine.info()["ServerVersion"]


def test_pull_by_tag_then_by_digest(engine: EngineClient, pushed: tuple[str, str], created: Created) -> None:
    repo, digest = pushed
    base_id = engine.image_inspect(BASE_IMAGE)["Id"]  # type: ignore[index]
    assert engine.image_inspect(f"{repo}:v1") is None

    created.image_refs.append(f"{repo}:v1")
    image = engine.image_pull(f"{repo}:v1")
    assert image["Id"] == base_id
    assert f"{repo}:v1" in image["RepoTags"]
    assert f"{repo}@{digest}" in image["RepoDigests"]

    engine.image_remove(f"{repo}:v1")
    engine.image_remove(f"{repo}@{digest}")
    assert engine.image_inspect(f"{repo}@{digest}") is None
    created.image_refs.append(f"{repo}@{digest}")
    image = engine.image_pull(f"{repo}@{digest}")
    assert image["Id"] == base_id and f"{repo}@{digest}" in image["RepoDigests"]
    assert engine.image_inspect(BASE_IMAGE) is not None  # removing our refs never touches the base tag


def test_pull_unknown_tag_fails_readably(engine: EngineClient, pushed: tuple[str, str]) -> None:
    repo, _ = pushed
    with pytest.raises(EngineError) as exc:
        engine.image_pull(f"{repo}:no-such-tag")
    assert exc.value.reason == "pull failed"
    assert f"{repo}:no-such-tag" in str(exc.value) and "\n" not in str(exc.value)


def test_pull_from_refused_registry_is_one_line(engine: EngineClient) -> None:
    port = _free_port()
    with pytest.raises(EngineError) as exc:
        engine.image_pull(f"127.0.0.1:{port}/x/y:1")
    assert exc.value.reason == "pull failed"
    assert str(exc.value) == (
        f"pull of 127.0.0.1:{port}/x/y:1 failed: "
        f"registry 127.0.0.1:{port} refused the connection (is it running?)"
    )


@pytest.fixture(scope="module")
def auth_registry() -> Iterator[tuple[str, str, str]]:
    """A second registry that demands htpasswd auth: (address, user, password)."""
    for tool in ("docker-registry", "htpasswd"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing (tests/infra/up.sh installs docker-registry and apache2-utils)")
    user, password = "mad", "pw+/" + secrets.token_hex(6)  # '+' and '/' exercise the base64url header
    tmp = Path(tempfile.mkdtemp(prefix="madtest-registry-"))
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True
    ).stdout
    (tmp / "htpasswd").write_text(htpasswd)
    address = f"127.0.0.1:{_free_port()}"
    (tmp / "config.yml").write_text(
        json.dumps(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}, "delete": {"enabled": True}},
                "http": {"addr": address},
                "auth": {"htpasswd": {"realm": "madtest", "path": str(tmp / "htpasswd")}},
            }
        )
    )
    with open(tmp / "registry.log", "wb") as log:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(tmp / "config.yml")], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        for _ in range(100):
            try:
                _HTTP.open(f"http://{address}/v2/", timeout=1)
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp / "registry.log").read_text()
            time.sleep(0.1)
        else:
            pytest.fail(f"auth registry on {address} did not come up: {(tmp / 'registry.log').read_text()}")
        yield address, user, password
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def test_registry_auth(
    engine: EngineClient, sdk: docker.DockerClient, auth_registry: tuple[str, str, str], created: Created
) -> None:
    address, user, password = auth_registry
    with pytest.raises(EngineError) as exc:
        engine.registry_login(user, password + "-wrong", address)
    assert exc.value.reason == "registry auth failed"
    assert password not in str(exc.value)
    engine.registry_login(user, password, address)

    repo = f"{address}/{created.prefix}/private"
    _push(sdk, repo, "v1", auth={"username": user, "password": password})
    with pytest.raises(EngineError) as exc:
        engine.image_pull(f"{repo}:v1")
    assert exc.value.reason == "registry auth failed"
    with pytest.raises(EngineError) as exc:
        engine.image_pull(f"{repo}:v1", auth={"username": user, "password": password + "-wrong"})
    assert exc.value.reason == "registry auth failed" and password not in str(exc.value)

    created.image_refs.append(f"{repo}:v1")
    image = engine.image_pull(f"{repo}:v1", auth={"username": user, "password": password})
    assert f"{repo}:v1" in image["RepoTags"]


def test_image_load(engine: EngineClient, sdk: docker.DockerClient, created: Created, tmp_path: Path) -> None:
    # A one-file image: `docker save` of the base image would be 170 MB.
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    name = f"{created.prefix}-tiny:1"
    created.image_refs.append(name)
    sdk.api.import_image_from_data(layer.getvalue(), repository=f"{created.prefix}-tiny", tag="1")
    archive = tmp_path / "tiny.tar"
    with open(archive, "wb") as fh:
        for chunk in sdk.images.get(name).save(named=True):
            fh.write(chunk)
    engine.image_remove(name)
    assert engine.image_inspect(name) is None
    assert engine.image_load(str(archive)) == [name]
    assert engine.image_inspect(name) is not None
    with pytest.raises(EngineError) as exc:
        engine.image_load(str(tmp_path / "missing.tar"))
    assert exc.value.reason == "image load failed"


def test_container_calls_and_log_demux(engine: EngineClient, created: Created) -> None:
    name = f"{created.prefix}-raw"
    cid = engine.container_create(_body("echo out; sleep 0.2; echo err >&2; exit 7"), name)
    try:
        assert [c["Id"] for c in engine.container_list({"name": name})] == [cid]
        engine.container_start(cid)
        assert engine.container_wait(cid, timeout=30) == 7
        assert list(engine.container_logs(cid, follow=False)) == [("stdout", b"out\n"), ("stderr", b"err\n")]
        assert engine.container_inspect(cid)["State"]["ExitCode"] == 7  # type: ignore[index]
    finally:
        engine.container_remove(cid)
    assert engine.container_inspect(cid) is None
    engine.container_remove(cid)  # already gone: not an error


# --------------------------------------------------------------------------- run_container


def test_run_exit_code_and_log_in_order(engine: EngineClient, created: Created, tmp_path: Path) -> None:
    name = f"{created.prefix}-exit3"
    lines: list[str] = []
    script = (
        "echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; echo 'performance: 12.5 samples_per_second';"
        " sleep 0.1; echo err2 >&2; sleep 0.1; printf 'no newline'; exit 3"
    )
    with open(tmp_path / "run.log", "wb") as log:
        outcome = run_container(engine, _body(script), name, log, timeout=60, on_line=lines.append)
    assert outcome.exit_code == 3 and not outcome.timed_out and outcome.error is None and not outcome.kept
    assert 0.3 < outcome.duration < 30
    expected = ["out1", "err1", "performance: 12.5 samples_per_second", "err2", "no newline"]
    assert lines == expected
    # The unterminated last line gets its line break in the log (another stream's last line may follow).
    assert (tmp_path / "run.log").read_bytes() == ("\n".join(expected) + "\n").encode()
    assert _gone(engine, outcome, name)


def test_run_large_output_is_complete(engine: EngineClient, created: Created) -> None:
    name = f"{created.prefix}-big"
    script = "python3 -c \"import sys\nfor i in range(20000): print('line', i, 'x' * 60)\nprint('last')\""
    log = io.BytesIO()
    lines: list[str] = []
    outcome = run_container(engine, _body(script), name, log, timeout=120, on_line=lines.append)
    assert outcome.exit_code == 0 and outcome.error is None
    assert len(lines) == 20001 and lines[-1] == "last" and lines[12345] == "line 12345 " + "x" * 60
    assert log.getvalue().count(b"\n") == 20001
    assert _gone(engine, outcome, name)


def test_run_timeout_kills_and_removes(engine: EngineClient, created: Created) -> None:
    name = f"{created.prefix}-timeout"
    lines: list[str] = []
    t0 = time.monotonic()
    outcome = run_container(engine, _body("echo started; sleep 30"), name, io.BytesIO(), 2, lines.append)
    elapsed = time.monotonic() - t0
    assert outcome.timed_out and outcome.exit_code is None and outcome.error is None
    assert elapsed < 7, elapsed
    assert 1.5 < outcome.duration < 7
    assert lines == ["started"]
    assert _gone(engine, outcome, name)


def test_run_interrupt_removes_the_container(engine: EngineClient, created: Created) -> None:
    name = f"{created.prefix}-interrupt"
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_container(engine, _body("echo ready; sleep 30"), name, None, timeout=None, on_line=on_line)
    assert time.monotonic() - t0 < 7
    assert seen == ["ready"]
    assert not engine.container_list({"name": name})


def test_run_missing_image_is_an_error_outcome(engine: EngineClient, created: Created) -> None:
    name = f"{created.prefix}-noimage"
    body = _body("true", Image=f"{REGISTRY}/{created.prefix}/never-pushed:1")
    outcome = run_container(engine, body, name, None, timeout=10)
    assert outcome.exit_code is None and outcome.container_id is None and not outcome.timed_out
    assert outcome.error is not None and outcome.error.startswith("image not found: ")
    assert not engine.container_list({"name": name})


def test_run_start_failure_is_an_error_outcome(engine: EngineClient, created: Created) -> None:
    name = f"{created.prefix}-nostart"
    body = _body("unused", Cmd=["/no/such/binary"])
    outcome = run_container(engine, body, name, None, timeout=10)
    assert outcome.exit_code is None
    assert outcome.error is not None and outcome.error.startswith("container start failed: ")
    assert _gone(engine, outcome, name)


def test_run_keep_alive_leaves_it_running(engine: EngineClient, created: Created) -> None:
    name = f"{created.prefix}-keep"
    outcome = run_container(engine, _body("echo up; sleep 60"), name, None, timeout=1, keep_alive=True)
    assert outcome.kept and outcome.timed_out
    assert outcome.container_id
    state = engine.container_inspect(outcome.container_id)["State"]  # type: ignore[index]
    assert state["Running"] is True
    # the module fixture removes it, like any leftover with the prefix


def test_docker_host_env_points_at_this_engine() -> None:
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    assert EngineClient().docker_host == host
