"""build_manifest.json: round trip, upstream compatibility, validation errors (exit 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from madengine.errors import ExitCode, InvalidInputError
from madengine.manifest import (
    MANIFEST_VERSION,
    BuiltImage,
    Manifest,
    load_manifest,
    manifest_from_dict,
    write_manifest,
)
from madengine.model import Model


def sample() -> Manifest:
    m1 = Model(name="dummy", tags=["dummies"], dockerfile="docker/dummy", scripts="scripts/dummy/run.sh")
    m2 = Model(name="dummy2/dummy_2", dockerfile="docker/dummy", scripts="scripts/dummy2/run.sh",
               source="dir", dir="dummy2", params={"bs": "8"}, args="--bs 8")
    image = BuiltImage(docker_image="ci-dummy_dummy", dockerfile="docker/dummy.Dockerfile",
                       base_docker="madengine-base:bookworm", docker_sha="sha256:aa", build_duration=1.5,
                       build_command="docker build ...", log_file="dummy_dummy.build.live.log",
                       registry_image="127.0.0.1:5000/ci-dummy_dummy@sha256:bb", image_digest="sha256:bb",
                       registry="127.0.0.1:5000", gpu_vendor="AMD", guest_os="UBUNTU",
                       models=["dummy", "dummy2/dummy_2"], size=10, pushed=True)
    return Manifest(built_images={"ci-dummy_dummy": image},
                    built_models={"ci-dummy_dummy": m1, "ci-dummy2_dummy_2_dummy": m2},
                    model_images={"ci-dummy_dummy": "ci-dummy_dummy",
                                  "ci-dummy2_dummy_2_dummy": "ci-dummy_dummy"},
                    context={"gpu_vendor": "AMD", "guest_os": "UBUNTU", "docker_build_arg": {}},
                    credentials_required=[], registry="127.0.0.1:5000",
                    run_options={"output": "perf.csv"}, summary={"failed_builds": []},
                    madengine_version="0.1.0", created_at="2025-01-01T00:00:00+00:00", mad_dir="/mad")


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "build_manifest.json"
    write_manifest(path, sample())
    data = json.loads(path.read_text())
    assert data["manifest_version"] == MANIFEST_VERSION
    for key in ("built_images", "built_models", "context", "credentials_required", "registry",
                "run_options", "summary", "madengine_version", "created_at", "mad_dir"):
        assert key in data
    img = data["built_images"]["ci-dummy_dummy"]
    for key in ("docker_image", "dockerfile", "base_docker", "docker_sha", "build_duration", "build_command",
                "log_file", "registry_image", "image_digest", "gpu_vendor", "guest_os", "models"):
        assert key in img
    assert data["built_models"]["ci-dummy2_dummy_2_dummy"]["docker_image"] == "ci-dummy_dummy"
    loaded = load_manifest(path)
    assert loaded.path == path
    assert loaded.built_images["ci-dummy_dummy"] == sample().built_images["ci-dummy_dummy"]
    assert loaded.built_models == sample().built_models
    entries = loaded.entries()
    assert [(e.key, e.model.name, e.image.docker_image) for e in entries] == [
        ("ci-dummy_dummy", "dummy", "ci-dummy_dummy"),
        ("ci-dummy2_dummy_2_dummy", "dummy2/dummy_2", "ci-dummy_dummy")]
    assert entries[1].model.params == {"bs": "8"}
    assert loaded.to_dict() == data


def test_reads_upstream_manifest() -> None:
    upstream = {
        "built_images": {"ci-dummy_dummy.ubuntu.amd": {
            "docker_image": "ci-dummy_dummy.ubuntu.amd", "dockerfile": "docker/dummy.ubuntu.amd.Dockerfile",
            "base_docker": "rocm/pytorch", "docker_sha": "", "build_duration": 12.3,
            "build_command": "docker build ...", "log_file": "dummy_dummy.ubuntu.amd.build.live.log",
            "registry_image": "localhost:5000/ci-dummy_dummy.ubuntu.amd", "registry": "localhost:5000",
            "gpu_architecture": "gfx942"}},
        "built_models": {"ci-dummy_dummy.ubuntu.amd": {
            "name": "dummy", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh", "n_gpus": "1",
            "owner": "x", "training_precision": "", "tags": ["dummies"], "args": ""}},
        "context": {"docker_env_vars": {}, "gpu_vendor": "AMD"},
        "credentials_required": [],
        "push_failures": [],
    }
    m = manifest_from_dict(upstream)
    assert m.manifest_version == 0
    image = m.built_images["ci-dummy_dummy.ubuntu.amd"]
    assert image.extra == {"gpu_architecture": "gfx942"}
    assert m.entries()[0].model.name == "dummy"
    assert m.to_dict()["built_images"]["ci-dummy_dummy.ubuntu.amd"]["gpu_architecture"] == "gfx942"


def test_missing_manifest_is_exit_4(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        load_manifest(tmp_path / "build_manifest.json")
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert "not found" in info.value.message and info.value.example


def test_truncated_manifest_is_exit_4(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(sample().to_dict())[:50])
    with pytest.raises(InvalidInputError, match="malformed JSON at line 1"):
        load_manifest(path)


@pytest.mark.parametrize(("data", "fragment"), [
    ([], "must be a JSON object"),
    ({"context": {}}, "no 'built_images'"),
    ({"built_images": []}, "'built_images' must be an object"),
    ({"built_images": {"a": 3}}, "built_images['a'] must be an object"),
    ({"built_images": {"a": {"build_duration": "slow"}}}, "build_duration has the wrong type"),
    ({"built_images": {"a": {"models": [1]}}}, "models must be a list of model names"),
    ({"built_images": {}, "built_models": {"a": {"name": "x"}}}, "not in 'built_images'"),
    ({"built_images": {"a": {}}, "built_models": {"a": {"name": ""}}}, "field 'name'"),
    ({"built_images": {}, "registry": 5}, "'registry' must be a string"),
    ({"built_images": {}, "manifest_version": "1"}, "manifest_version must be"),
])
def test_validation_errors(data, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        manifest_from_dict(data, where="m.json")
    assert fragment in info.value.message
    assert info.value.exit_code == ExitCode.INVALID_INPUT


def test_newer_manifest_version_is_incompatible() -> None:
    with pytest.raises(InvalidInputError, match="newer madengine|reads up to"):
        manifest_from_dict({"manifest_version": MANIFEST_VERSION + 1, "built_images": {}})


def test_push_failures_written_like_upstream() -> None:
    m = sample()
    img = m.built_images["ci-dummy_dummy"]
    img.pushed, img.push_failed, img.push_error = False, True, "connection refused at 127.0.0.1:5999"
    img.registry_tag = "127.0.0.1:5999/ci-dummy_dummy:latest"
    img.registry_image = img.image_digest = None
    data = m.to_dict()
    assert data["push_failures"] == [{"image": "ci-dummy_dummy",
                                      "intended_registry_image": "127.0.0.1:5999/ci-dummy_dummy:latest",
                                      "error": "connection refused at 127.0.0.1:5999"}]
    again = manifest_from_dict(data)
    assert "push_failures" not in again.extra and again.built_images["ci-dummy_dummy"].push_failed
