# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""A cheap snapshot of the host a model ran on (``--sys-env-details``): OS, kernel, CPU, memory, the
GPU tools' output where present, and the docker engine version. Standard library only."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

# Only tools that exist are run, so a host without GPUs pays for no subprocess at all.
GPU_TOOLS = (
    ("nvidia-smi", ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv"]),
    ("rocm-smi", ["rocm-smi", "--showproductname", "--showdriverversion"]),
    ("amd-smi", ["amd-smi", "static", "--asic"]),
    ("xpu-smi", ["xpu-smi", "discovery"]),
)
TOOL_TIMEOUT = 10.0


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _os_release() -> dict[str, str]:
    fields = {}
    for line in _read("/etc/os-release").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value.strip().strip('"')
    return fields


def _memory_kib() -> int | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return None


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def snapshot(engine_version: dict | None = None,
             which: Callable[[str], str | None] = shutil.which) -> dict[str, Any]:
    """The host environment as a JSON-ready dict; ``engine_version`` is the engine's ``/version``."""
    os_release = _os_release()
    gpu_tools: dict[str, str] = {}
    for name, argv in GPU_TOOLS:
        if not which(name):
            continue
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
            gpu_tools[name] = (done.stdout + done.stderr).strip()
        except (OSError, subprocess.SubprocessError) as exc:
            gpu_tools[name] = f"failed: {exc}"
    engine = engine_version or {}
    return {
        "hostname": platform.node(),
        "os": os_release.get("PRETTY_NAME", platform.platform()),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_kib": _memory_kib(),
        "python": platform.python_version(),
        "docker": {key: engine.get(key) for key in ("Version", "ApiVersion", "Os", "Arch") if key in engine},
        "gpu_tools": gpu_tools,
    }
