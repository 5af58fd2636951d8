# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Host facts: the GPUs of this host (vendor, count, architecture, render devices), its CPU, memory, OS
and docker engine, and how they complete a run context.

Used by the ``mad.engine.host_facts`` module on target hosts and, through ``madengine.hostinfo``, by the
local run: standard library only.

GPU detection shells out to the vendors' tools (nvidia-smi, rocm-smi/amd-smi, rocminfo, xpu-smi). It
never raises: a missing tool, a failing command or output we cannot parse falls through to the next
vendor and finally to a CPU-only host. ``run`` and ``which`` are injectable so tests can use fakes.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._runspec import normalize_vendor
from ansible_collections.mad.engine.plugins.module_utils._sysenv import snapshot

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT = 5.0
"""Seconds each external command may take before detection gives up on it."""

DEV_DRI = Path("/dev/dri")
# The context keys a run fills from the host when they are not given (or null).
GPU_CONTEXT_KEYS = ("gpu_vendor", "gpu_count", "gpu_architecture")

# Fallback when nvidia-smi cannot report compute_cap (old drivers): most specific names first.
_NVIDIA_NAME_ARCH = (
    (r"\bGB200\b|\bB200\b|\bB100\b", "sm_100"),
    (r"\bGH200\b|\bH200\b|\bH100\b|\bH800\b|\bH20\b", "sm_90"),
    (r"\bL40S?\b|\bL4\b|\bRTX 40\d\d\b|\bRTX (?:\d+ )?Ada\b", "sm_89"),
    (r"\bA100\b|\bA800\b|\bA30\b", "sm_80"),
    (r"\bA10G?\b|\bA40\b|\bA16\b|\bA2\b|\bRTX 30\d\d\b|\bRTX A\d+\b", "sm_86"),
    (r"\bT4\b|\bRTX 20\d\d\b|\bQuadro RTX\b", "sm_75"),
    (r"\bV100\b|\bTITAN V\b", "sm_70"),
)

_INTEL_NAME_ARCH = (
    (r"\bMax\b", "pvc"),
    (r"\bFlex\b|\bArc\b", "dg2"),
)

_GFX_NAME = re.compile(r"^\s*Name:\s+(gfx[0-9a-z]+)\s*$", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class HostInfo:
    gpu_vendor: str  # "AMD" | "NVIDIA" | "INTEL" | "CPU"
    gpu_count: int
    gpu_architecture: str  # e.g. "gfx942", "sm_90"; "" when unknown or CPU-only
    render_devices: list[str]


def detect_host(run: Callable[..., Any] = subprocess.run,
                which: Callable[[str], str | None] = shutil.which, *,
                dev_dri: Path = DEV_DRI) -> HostInfo:
    """Detect the host's GPUs: NVIDIA, then AMD, then Intel, else CPU.

    No subprocess is spawned for a vendor whose tool ``which`` cannot find.
    """
    for probe in (_detect_nvidia, _detect_amd, _detect_intel):
        info = probe(run, which, dev_dri)
        if info is not None:
            logger.debug("Detected host: %s", info)
            return info
    logger.debug("No GPU tools found or working; assuming a CPU-only host")
    return HostInfo(gpu_vendor="CPU", gpu_count=0, gpu_architecture="", render_devices=[])


def _output(run: Callable[..., Any], argv: Sequence[str]) -> str | None:
    """stdout of a command that succeeded, or None on any failure (missing, timeout, non-zero exit)."""
    try:
        proc = run(list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        logger.debug("Host detection: %s failed: %s", argv[0], exc)
        return None
    if proc.returncode != 0:
        logger.debug("Host detection: %s exited with %s", " ".join(argv), proc.returncode)
        return None
    out = proc.stdout or ""
    return out if isinstance(out, str) else out.decode("utf-8", "replace")


def _render_devices(dev_dri: Path) -> list[str]:
    try:
        return sorted(str(p) for p in dev_dri.glob("renderD*"))
    except OSError:
        return []


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _nvidia_arch(name: str, compute_cap: str) -> str:
    match = re.fullmatch(r"(\d+)\.(\d+)", compute_cap.strip())
    if match:
        return f"sm_{match.group(1)}{match.group(2)}"
    for pattern, arch in _NVIDIA_NAME_ARCH:
        if re.search(pattern, name):
            return arch
    return ""


def _detect_nvidia(run: Callable[..., Any], which: Callable[[str], str | None],
                   dev_dri: Path) -> HostInfo | None:
    smi = which("nvidia-smi")
    if not smi:
        return None
    out = _output(run, [smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"])
    if out is None:
        # Drivers older than 510 do not know the compute_cap field.
        out = _output(run, [smi, "--query-gpu=name", "--format=csv,noheader"])
    if out is None:
        return None
    gpus = _lines(out)
    if not gpus:
        return None
    name, sep, cap = gpus[0].rpartition(",")
    if not sep:  # only the name was queried
        name, cap = cap, ""
    return HostInfo(gpu_vendor="NVIDIA", gpu_count=len(gpus),
                    gpu_architecture=_nvidia_arch(name.strip(), cap), render_devices=[])


def _amd_count(run: Callable[..., Any], which: Callable[[str], str | None]) -> int | None:
    rocm_smi = which("rocm-smi")
    if rocm_smi:
        out = _output(run, [rocm_smi, "--showid", "--csv"])
        if out is not None:
            # Header "device,..." then one "cardN,..." row per GPU; warnings may be mixed in.
            count = sum(1 for line in _lines(out) if re.match(r"card\d+\s*,", line, re.IGNORECASE))
            if count:
                return count
    amd_smi = which("amd-smi")
    if amd_smi:
        out = _output(run, [amd_smi, "list", "--csv"])
        if out is not None:
            # Header "gpu,gpu_bdf,..." then one row per GPU starting with its index.
            count = sum(1 for line in _lines(out) if re.match(r"\d+\s*,", line))
            if count:
                return count
    return None


def _detect_amd(run: Callable[..., Any], which: Callable[[str], str | None],
                dev_dri: Path) -> HostInfo | None:
    count = _amd_count(run, which)
    if count is None:
        return None
    arch = ""
    rocminfo = which("rocminfo")
    if rocminfo:
        out = _output(run, [rocminfo])
        match = _GFX_NAME.search(out or "")
        if match:
            arch = match.group(1).lower()
    return HostInfo(gpu_vendor="AMD", gpu_count=count, gpu_architecture=arch,
                    render_devices=_render_devices(dev_dri))


def _detect_intel(run: Callable[..., Any], which: Callable[[str], str | None],
                  dev_dri: Path) -> HostInfo | None:
    xpu_smi = which("xpu-smi")
    if not xpu_smi or not dev_dri.is_dir():
        return None
    out = _output(run, [xpu_smi, "discovery", "-j"])
    if out is None:
        return None
    try:
        devices = json.loads(out).get("device_list") or []
    except (ValueError, AttributeError):
        logger.debug("Host detection: cannot parse xpu-smi output")
        return None
    if not isinstance(devices, list) or not devices:
        return None
    first = devices[0] if isinstance(devices[0], dict) else {}
    name = str(first.get("device_name", ""))
    arch = next((a for pattern, a in _INTEL_NAME_ARCH if re.search(pattern, name)), "")
    return HostInfo(gpu_vendor="INTEL", gpu_count=len(devices), gpu_architecture=arch,
                    render_devices=_render_devices(dev_dri))


# --------------------------------------------------------------------------------------------------
# Facts of a host, and how they complete a run context
# --------------------------------------------------------------------------------------------------

def gpu_facts(info: HostInfo, gpu_vendor: str | None = None) -> dict[str, Any]:
    """The GPU facts of a host from its detection, with an optional vendor override.

    Overriding with CPU makes the host CPU-only (no GPUs, no render devices); another vendor keeps the
    detected count, architecture and devices (the override is for hosts whose tools misreport).
    Raises ValueError for an unknown vendor.
    """
    facts = {"gpu_vendor": info.gpu_vendor, "gpu_count": int(info.gpu_count),
             "gpu_architecture": info.gpu_architecture, "render_devices": list(info.render_devices),
             "detected_gpu_vendor": info.gpu_vendor}
    if gpu_vendor:
        vendor = normalize_vendor(gpu_vendor)
        facts["gpu_vendor"] = vendor
        if vendor == "CPU":
            facts.update(gpu_count=0, gpu_architecture="", render_devices=[])
    return facts


def host_facts(engine_version: Mapping[str, Any] | None, gpu_vendor: str | None = None,
               detect: Callable[[], HostInfo] = detect_host) -> dict[str, Any]:
    """Everything a run needs to know about this host, as a JSON-ready dict.

    ``engine_version`` is the engine's ``/version`` document. Keys: gpu_vendor, gpu_count,
    gpu_architecture, render_devices, detected_gpu_vendor, docker_version, docker_api_version,
    cpu_count, memory_mb, os, kernel, machine, hostname, python, python_executable.
    Raises ValueError for a bad override.
    """
    facts = gpu_facts(detect(), gpu_vendor)
    # The sysenv snapshot without its GPU tools (detection above already ran them).
    system = snapshot(dict(engine_version or {}), which=lambda _name: None)
    engine = engine_version or {}
    memory_kib = system.get("memory_kib")
    facts.update(
        docker_version=str(engine.get("Version") or ""),
        docker_api_version=str(engine.get("ApiVersion") or ""),
        cpu_count=int(system.get("cpu_count") or 0),
        memory_mb=int(memory_kib) // 1024 if memory_kib else 0,
        os=system.get("os") or "",
        kernel=system.get("kernel") or "",
        machine=system.get("machine") or "",
        hostname=system.get("hostname") or "",
        python=system.get("python") or "",
        python_executable=sys.executable,
    )
    return facts


def run_facts(context: Mapping[str, Any], host: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run context completed from the host, and the facts a run uses.

    Context keys gpu_vendor, gpu_count and gpu_architecture that are missing (or null) are filled from
    ``host`` (given keys always win, as in a local run); the facts take the context's value when it is
    set, else the host's, and the host's render devices.
    """
    completed = dict(context)
    for key in GPU_CONTEXT_KEYS:
        if completed.get(key) is None:
            completed[key] = host.get(key, 0 if key == "gpu_count" else "")

    def given(key: str) -> Any:  # an explicit 0 GPUs is a setting, not a gap
        value = completed.get(key)
        return host.get(key) if value in (None, "") else value

    facts = {
        "gpu_vendor": given("gpu_vendor") or "CPU",
        "gpu_count": int(given("gpu_count") or 0),
        "gpu_architecture": given("gpu_architecture") or "",
        "render_devices": list(host.get("render_devices") or []),
    }
    return completed, facts
