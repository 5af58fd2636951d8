"""Shared pytest fixtures for madengine's tests.

The real infrastructure (docker engine without the default bridge, a registry on 127.0.0.1:5000
and the local base image ``madengine-base:bookworm``) is started by ``tests/infra/up.sh``.
Tests that need it are marked ``docker``; with ``MADENGINE_NO_DOCKER=1`` they are skipped,
otherwise a missing engine is an error, not a skip.

This file must not import madengine itself.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "madengine-base:bookworm"
REGISTRY = "127.0.0.1:5000"
UP_HINT = "run `bash tests/infra/up.sh` (as root) first, or set MADENGINE_NO_DOCKER=1 to skip docker tests"


def _no_docker() -> bool:
    return os.environ.get("MADENGINE_NO_DOCKER", "") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _no_docker():
        return
    skip = pytest.mark.skip(reason="MADENGINE_NO_DOCKER=1")
    for item in items:
        if "docker" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def docker_client():
    """A ``docker.from_env()`` client for the engine started by tests/infra/up.sh."""
    if _no_docker():
        pytest.skip("MADENGINE_NO_DOCKER=1")
    import docker  # imported lazily: unit tests must not need the SDK at collection time

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # DockerException, connection errors, ...
        pytest.fail(
            f"docker engine not reachable ({type(exc).__name__}: {exc}); {UP_HINT}",
            pytrace=False,
        )
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """Tag of the local base image (Debian bookworm minbase + bash + python3)."""
    import docker.errors

    try:
        docker_client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"base image {BASE_IMAGE} is missing; {UP_HINT}", pytrace=False)
    return BASE_IMAGE


def _registry_status(url: str) -> int | str:
    # No proxies: 127.0.0.1 must never go through an http_proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def registry() -> str:
    """Address (host:port) of the open test registry, for image names like ``f"{registry}/name:tag"``."""
    if _no_docker():
        pytest.skip("MADENGINE_NO_DOCKER=1")
    status = _registry_status(f"http://{REGISTRY}/v2/")
    if status != 200:
        pytest.fail(f"registry at http://{REGISTRY}/v2/ not usable ({status}); {UP_HINT}", pytrace=False)
    return REGISTRY


@pytest.fixture
def unique_name() -> str:
    """A short random lowercase prefix (``mt-<8 hex>``) for images/containers made by one test."""
    return f"mt-{secrets.token_hex(4)}"


@pytest.fixture
def cleanup_images(docker_client) -> Iterator[list[str]]:
    """A list to append image tags (or ids) to; they are force-removed after the test."""
    import docker.errors

    images: list[str] = []
    yield images
    for ref in reversed(images):
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.images.remove(ref, force=True)


@pytest.fixture
def cleanup_containers(docker_client) -> Iterator[list[str]]:
    """A list to append container names (or ids) to; they are force-removed after the test."""
    import docker.errors

    containers: list[str] = []
    yield containers
    for ref in reversed(containers):
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(ref).remove(force=True)


@pytest.fixture(scope="session")
def example_mad() -> Path:
    """Path to the example MAD package shipped in the repo."""
    return REPO_ROOT / "examples" / "MAD"
