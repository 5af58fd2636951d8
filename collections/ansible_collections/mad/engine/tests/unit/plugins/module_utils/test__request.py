# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""_request: a planned request's completion and result on the host."""

from __future__ import annotations

from ansible_collections.mad.engine.plugins.module_utils._facts import HostInfo
from ansible_collections.mad.engine.plugins.module_utils._request import (
    complete_request,
    pull_failure_reason,
)


def test_pull_failure_reason() -> None:
    assert pull_failure_reason("registry auth failed", "pull of x failed: denied") == \
        "pull failed: pull of x failed: denied"
    assert pull_failure_reason("engine unreachable", "cannot connect") == "engine unreachable: cannot connect"


def test_complete_request_fills_context_resolves_tools_and_adds_secrets() -> None:
    request = {"model": {"name": "a"}, "context": {"tools": [{"name": "tw"}]}, "key": "k", "error": "",
               "tools_config": {"tools": {"tw": {"cmd": "time", "env_vars": {"A": 1}}}}, "tools_config_name": "t.json",
               "facts": {"gpu_vendor": "CPU", "gpu_count": 0, "gpu_architecture": "", "render_devices": [],
                         "docker_version": "x"}}
    done = complete_request(request, {"X_TOKEN": "s"})
    assert done["context"]["gpu_vendor"] == "CPU" and done["context"]["gpu_count"] == 0
    assert done["context"]["tools"] == [{"name": "tw", "cmd": "time", "env_vars": {"A": "1"}, "pre_scripts": [],
                                         "post_scripts": []}]
    assert done["facts"] == {"gpu_vendor": "CPU", "gpu_count": 0, "gpu_architecture": "", "render_devices": []}
    assert done["cred_env"] == {"X_TOKEN": "s"}
    assert "tools_config" not in done and "key" not in done and "error" not in done


def test_complete_request_detects_the_host_without_facts() -> None:
    host = HostInfo(gpu_vendor="NVIDIA", gpu_count=4, gpu_architecture="sm_90", render_devices=[])
    done = complete_request({"model": {"name": "a"}, "context": {}}, detect=lambda: host)
    assert done["facts"]["gpu_vendor"] == "NVIDIA" and done["context"]["gpu_count"] == 4
