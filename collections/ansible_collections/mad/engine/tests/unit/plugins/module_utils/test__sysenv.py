# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""_sysenv: the host snapshot is JSON-ready, runs only GPU tools that exist, and survives a broken one."""

from __future__ import annotations

import json
import os

from ansible_collections.mad.engine.plugins.module_utils import _sysenv
from ansible_collections.mad.engine.plugins.module_utils._sysenv import snapshot

ENGINE = {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41", "Os": "linux", "Arch": "amd64", "GitCommit": "x"}


def test_snapshot_without_gpu_tools_runs_none(monkeypatch):
    tools = {tool[1][0] for tool in _sysenv.GPU_TOOLS}
    real_run = _sysenv.subprocess.run

    def run(argv, *args, **kwargs):
        assert argv[0] not in tools, "no GPU tool exists, so none may run"
        return real_run(argv, *args, check=kwargs.pop("check", False), **kwargs)  # platform's `uname -p`

    monkeypatch.setattr(_sysenv.subprocess, "run", run)
    snap = snapshot(ENGINE, which=lambda name: None)
    assert snap["gpu_tools"] == {}
    assert snap["docker"] == {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41", "Os": "linux", "Arch": "amd64"}
    assert snap["cpu_count"] == os.cpu_count() and snap["hostname"] and snap["kernel"] and snap["python"]
    assert json.loads(json.dumps(snap)) == snap


def test_snapshot_without_engine_answer():
    assert snapshot(None, which=lambda name: None)["docker"] == {}


def test_snapshot_reads_os_release_and_meminfo():
    snap = snapshot({}, which=lambda name: None)
    if os.path.exists("/proc/meminfo"):
        assert isinstance(snap["memory_kib"], int) and snap["memory_kib"] > 0
    if os.path.exists("/etc/os-release"):
        assert snap["os"] and "PRETTY_NAME" not in snap["os"]


def test_existing_tool_output_is_kept_and_a_broken_one_is_reported(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'name, driver_version'\necho 'Fake GPU, 1.0' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    present = {"nvidia-smi", "xpu-smi"}  # xpu-smi "exists" but cannot be run
    snap = snapshot({}, which=lambda name: f"/x/{name}" if name in present else None)
    assert snap["gpu_tools"]["nvidia-smi"] == "name, driver_version\nFake GPU, 1.0"
    assert snap["gpu_tools"]["xpu-smi"].startswith("failed: ")
    assert set(snap["gpu_tools"]) == present
