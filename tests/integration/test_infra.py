"""Prove the test infrastructure from tests/infra/up.sh works: engine, base image, registry."""

from __future__ import annotations

import contextlib
import json
import urllib.request

import docker.errors
import pytest

pytestmark = pytest.mark.docker

DOCKERFILE = """\
ARG BASE_DOCKER=madengine-base:bookworm
FROM $BASE_DOCKER
RUN python3 -c 'import sys; assert sys.version_info >= (3, 11)' && echo built > /built.txt
CMD ["python3", "-c", "print(1)"]
"""


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _delete_manifest(registry: str, name: str, digest: str) -> int:
    req = urllib.request.Request(f"http://{registry}/v2/{name}/manifests/{digest}", method="DELETE")
    with _no_proxy_opener().open(req, timeout=5) as resp:
        return resp.status


def test_engine_has_no_default_bridge(docker_client):
    # dockerd must run with --bridge=none --iptables=false: only host networking is available.
    names = {n.name for n in docker_client.networks.list()}
    assert "bridge" not in names, f"engine has a default bridge network: {sorted(names)}"
    assert "host" in names


def test_base_image_has_bash_and_python(docker_client, base_image):
    out = docker_client.containers.run(
        base_image,
        ["bash", "-c", 'echo "$BASH_VERSION" && python3 -c "import sys; print(sys.version_info[0])"'],
        network_mode="host",
        remove=True,
    )
    bash_version, py_major = out.decode().split()
    assert bash_version.startswith("5.")
    assert py_major == "3"


def test_container_reaches_registry_over_host_network(docker_client, base_image, registry):
    code = (
        "import urllib.request as u; "
        f"print(u.build_opener(u.ProxyHandler({{}})).open('http://{registry}/v2/', timeout=5).status)"
    )
    out = docker_client.containers.run(base_image, ["python3", "-c", code], network_mode="host", remove=True)
    assert out.decode().strip() == "200"


def test_build_run_push_pull_by_digest(
    docker_client, base_image, registry, unique_name, cleanup_images, tmp_path
):
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    repo = f"{registry}/{unique_name}"
    tag = f"{repo}:test"
    cleanup_images.append(tag)

    image, _logs = docker_client.images.build(
        path=str(tmp_path),
        tag=tag,
        buildargs={"BASE_DOCKER": base_image},
        network_mode="host",
        pull=False,
        rm=True,
        forcerm=True,
    )
    cleanup_images.append(image.id)

    out = docker_client.containers.run(tag, network_mode="host", remove=True)
    assert out == b"1\n"

    digest = None
    deleted = False
    for event in docker_client.images.push(repo, tag="test", stream=True, decode=True):
        assert "error" not in event, event
        digest = event.get("aux", {}).get("Digest", digest)
    assert digest and digest.startswith("sha256:"), "push reported no digest"

    try:
        # The registry knows the manifest under that digest.
        req = urllib.request.Request(
            f"http://{registry}/v2/{unique_name}/manifests/{digest}",
            method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with _no_proxy_opener().open(req, timeout=5) as resp:
            assert resp.headers["Docker-Content-Digest"] == digest

        # Remove it locally, then pull it back by repo digest.
        docker_client.images.remove(image.id, force=True)
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(tag)

        pulled = docker_client.images.pull(f"{repo}@{digest}")
        assert pulled.id == image.id
        assert f"{repo}@{digest}" in pulled.attrs["RepoDigests"]
        out = docker_client.containers.run(f"{repo}@{digest}", network_mode="host", remove=True)
        assert out == b"1\n"

        with _no_proxy_opener().open(f"http://{registry}/v2/{unique_name}/tags/list", timeout=5) as resp:
            assert json.load(resp) == {"name": unique_name, "tags": ["test"]}

        # Deleting manifests works (delete is enabled in tests/infra/registry.yml).
        assert _delete_manifest(registry, unique_name, digest) == 202
        deleted = True
    finally:
        if digest and not deleted:
            with contextlib.suppress(OSError):
                _delete_manifest(registry, unique_name, digest)
