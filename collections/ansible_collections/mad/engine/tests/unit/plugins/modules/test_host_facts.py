# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

import pytest
from ansible_collections.mad.engine.plugins.module_utils import _facts
from ansible_collections.mad.engine.plugins.module_utils._facts import HostInfo
from ansible_collections.mad.engine.plugins.modules import host_facts


@pytest.fixture
def amd_host(monkeypatch: pytest.MonkeyPatch) -> None:
    info = HostInfo(gpu_vendor="AMD", gpu_count=2, gpu_architecture="gfx942",
                    render_devices=["/dev/dri/renderD128", "/dev/dri/renderD129"])
    monkeypatch.setattr(_facts, "detect_host", lambda: info)
    monkeypatch.setattr(host_facts, "host_facts",
                        lambda version, vendor: _facts.host_facts(version, vendor, detect=lambda: info))


def test_facts_are_returned_and_set_never_changed(engine, run_module, amd_host) -> None:
    result = run_module(host_facts.main, {"docker_host": engine.url})
    assert result["changed"] is False
    assert (result["gpu_vendor"], result["gpu_count"], result["gpu_architecture"]) == ("AMD", 2, "gfx942")
    assert result["render_devices"] == ["/dev/dri/renderD128", "/dev/dri/renderD129"]
    assert result["docker_version"] == "20.10.24" and result["docker_api_version"] == "1.41"
    assert result["cpu_count"] >= 1 and result["memory_mb"] > 0 and result["os"]
    mad_host = result["ansible_facts"]["mad_host"]
    assert mad_host["gpu_vendor"] == "AMD" and mad_host["python_executable"]


def test_gpu_vendor_override_to_cpu(engine, run_module, amd_host) -> None:
    result = run_module(host_facts.main, {"docker_host": engine.url, "gpu_vendor": "cpu"})
    assert (result["gpu_vendor"], result["gpu_count"], result["render_devices"]) == ("CPU", 0, [])
    assert result["detected_gpu_vendor"] == "AMD"


def test_check_mode_is_supported(engine, run_module, amd_host) -> None:
    result = run_module(host_facts.main, {"docker_host": engine.url, "_ansible_check_mode": True})
    assert result["changed"] is False and result["gpu_vendor"] == "AMD"


def test_cpu_host_without_gpu_tools(engine, run_module, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real detection, with no vendor tool found: a CPU host is not an error.
    monkeypatch.setattr(_facts.shutil, "which", lambda name: None)
    monkeypatch.setattr(host_facts, "host_facts", lambda version, vendor: _facts.host_facts(
        version, vendor, detect=lambda: _facts.detect_host(which=lambda name: None)))
    result = run_module(host_facts.main, {"docker_host": engine.url})
    assert (result["gpu_vendor"], result["gpu_count"], result["gpu_architecture"]) == ("CPU", 0, "")


def test_unreachable_engine_fails_with_a_clear_message(run_module, tmp_path, amd_host) -> None:
    result = run_module(host_facts.main, {"docker_host": f"unix://{tmp_path}/none.sock"})
    assert result["failed"] is True and result["reason"] == "engine unreachable"
    assert f"{tmp_path}/none.sock" in result["msg"] and "does not exist" in result["msg"]


def test_images_present_only_with_their_digest(engine, run_module, amd_host) -> None:
    good, stale, missing = "127.0.0.1:5000/ci-a@sha256:" + "a" * 64, "127.0.0.1:5000/ci-b:latest", "ci-c:latest"
    engine.routes[("GET", f"/images/{good}/json")] = (200, {"Id": "sha256:1",
                                                            "RepoDigests": ["127.0.0.1:5000/ci-a@sha256:" + "a" * 64]})
    engine.routes[("GET", f"/images/{stale}/json")] = (200, {"Id": "sha256:2", "RepoDigests": []})
    images = [{"name": good, "digest": "sha256:" + "a" * 64}, {"name": stale, "digest": "sha256:" + "b" * 64},
              {"name": missing}]
    result = run_module(host_facts.main, {"docker_host": engine.url, "images": images})
    # The stale one has the tag but not the recorded content: it must still be pulled.
    assert result["images_present"] == [good]
    assert "images_present" not in result["ansible_facts"]["mad_host"]
    assert run_module(host_facts.main, {"docker_host": engine.url})["images_present"] == []
