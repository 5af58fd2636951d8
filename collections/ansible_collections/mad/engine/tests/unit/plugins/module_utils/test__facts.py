# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""_facts: vendor overrides, host facts and how they complete a run context (detection itself is covered
by tests/unit/test_hostinfo.py through madengine.hostinfo, which re-exports it)."""

from __future__ import annotations

import pytest
from ansible_collections.mad.engine.plugins.module_utils._facts import (
    HostInfo,
    detect_host,
    gpu_facts,
    host_facts,
    normalize_vendor,
    run_facts,
)

AMD = HostInfo(gpu_vendor="AMD", gpu_count=8, gpu_architecture="gfx942",
               render_devices=[f"/dev/dri/renderD{128 + i}" for i in range(8)])
CPU = HostInfo(gpu_vendor="CPU", gpu_count=0, gpu_architecture="", render_devices=[])


def test_madengine_hostinfo_is_this_module() -> None:
    import madengine.hostinfo

    assert madengine.hostinfo.detect_host is detect_host
    assert madengine.hostinfo.HostInfo is HostInfo


@pytest.mark.parametrize(("given", "vendor"), [("amd", "AMD"), (" Nvidia ", "NVIDIA"), ("CPU", "CPU")])
def test_normalize_vendor(given: str, vendor: str) -> None:
    assert normalize_vendor(given) == vendor


def test_normalize_vendor_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="gpu_vendor must be one of"):
        normalize_vendor("TPU")


def test_gpu_facts_without_override() -> None:
    facts = gpu_facts(AMD)
    assert facts == {"gpu_vendor": "AMD", "gpu_count": 8, "gpu_architecture": "gfx942",
                     "render_devices": list(AMD.render_devices), "detected_gpu_vendor": "AMD"}


def test_cpu_override_makes_a_gpu_host_cpu_only() -> None:
    facts = gpu_facts(AMD, "cpu")
    assert (facts["gpu_vendor"], facts["gpu_count"], facts["gpu_architecture"], facts["render_devices"]) == (
        "CPU", 0, "", [])
    assert facts["detected_gpu_vendor"] == "AMD"


def test_vendor_override_keeps_detected_devices() -> None:
    facts = gpu_facts(AMD, "AMD")
    assert facts["gpu_count"] == 8 and len(facts["render_devices"]) == 8


def test_host_facts_has_engine_and_system_keys() -> None:
    facts = host_facts({"Version": "20.10.24", "ApiVersion": "1.41"}, detect=lambda: CPU)
    assert facts["gpu_vendor"] == "CPU" and facts["docker_version"] == "20.10.24"
    assert facts["docker_api_version"] == "1.41"
    assert facts["cpu_count"] >= 1 and facts["memory_mb"] > 0
    for key in ("os", "kernel", "machine", "hostname", "python", "python_executable"):
        assert facts[key], key


def test_host_facts_runs_no_gpu_tool_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sysenv snapshot is taken without its GPU tools: detection already ran them.
    from ansible_collections.mad.engine.plugins.module_utils import _sysenv

    monkeypatch.setattr(_sysenv.subprocess, "run", lambda *a, **k: pytest.fail("no subprocess expected"))
    host_facts({}, detect=lambda: CPU)


def test_run_facts_fills_only_missing_context_keys() -> None:
    host = gpu_facts(AMD)
    context, facts = run_facts({"gpu_vendor": "AMD", "gpu_count": None, "guest_os": "UBUNTU"}, host)
    assert context == {"gpu_vendor": "AMD", "gpu_count": 8, "gpu_architecture": "gfx942", "guest_os": "UBUNTU"}
    assert facts == {"gpu_vendor": "AMD", "gpu_count": 8, "gpu_architecture": "gfx942",
                     "render_devices": list(AMD.render_devices)}


def test_run_facts_given_context_wins() -> None:
    context, facts = run_facts({"gpu_vendor": "CPU", "gpu_count": 2, "gpu_architecture": "gfx90a"},
                               gpu_facts(AMD))
    assert context["gpu_vendor"] == "CPU" and context["gpu_count"] == 2
    assert (facts["gpu_vendor"], facts["gpu_count"], facts["gpu_architecture"]) == ("CPU", 2, "gfx90a")


def test_run_facts_on_a_cpu_host() -> None:
    context, facts = run_facts({"guest_os": "UBUNTU"}, gpu_facts(CPU))
    assert (context["gpu_vendor"], context["gpu_count"], context["gpu_architecture"]) == ("CPU", 0, "")
    assert facts == {"gpu_vendor": "CPU", "gpu_count": 0, "gpu_architecture": "", "render_devices": []}


def test_run_facts_matches_the_local_run_context() -> None:
    # The local run completes its context with madengine.context.resolve_run_context; a host must agree.
    from madengine.context import resolve_run_context

    given = {"gpu_vendor": None, "guest_os": "UBUNTU", "gpu_architecture": "gfx90a"}
    local = resolve_run_context(given, detect=lambda: AMD)
    remote = run_facts(given, gpu_facts(AMD))[0]
    assert remote == local
