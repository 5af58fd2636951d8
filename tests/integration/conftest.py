"""Fixtures of the run-phase integration tests; the helpers they use are in madtree.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from madtree import Mad, delete_repo


@pytest.fixture
def mad(tmp_path, unique_name, docker_client, base_image, monkeypatch) -> Iterator[Mad]:
    tree = Mad(tmp_path / "mad", unique_name)
    monkeypatch.chdir(tree.root)
    yield tree
    import docker.errors

    for container in docker_client.api.containers(all=True):
        labels = container.get("Labels") or {}
        if unique_name in (labels.get("madengine.model") or "") or any(unique_name in n for n in container["Names"]):
            with contextlib.suppress(docker.errors.APIError):
                docker_client.api.remove_container(container["Id"], force=True)
    for image in docker_client.images.list(filters={"label": f"madengine.test={unique_name}"}):
        for ref in image.tags or [image.id]:
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(ref, force=True)
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(image.id, force=True)
    for repo in tree.repos:
        delete_repo(repo)
