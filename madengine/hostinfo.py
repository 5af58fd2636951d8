"""Detect the GPUs of the host madengine runs on (vendor, count, architecture).

Detection shells out to the vendors' tools (nvidia-smi, rocm-smi/amd-smi, rocminfo, xpu-smi). It never
raises: a missing tool, a failing command or output we cannot parse falls through to the next vendor
and finally to a CPU-only host. ``run`` and ``which`` are injectable so tests can use fakes.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT = 5.0
"""Seconds each external command may take before detection gives up on it."""

DEV_DRI = Path("/dev/dri")

RunFn = Callable[..., Any]
WhichFn = Callable[[str], str | None]

# Fallback when nvidia-smi cannot report compute_cap (old drivers): most specific names first.
_NVIDIA_NAME_ARCH: tuple[tuple[str, str], ...] = (
    (r"\bGB200\b|\bB200\b|\bB100\b", "sm_100"),
    (r"\bGH200\b|\bH200\b|\bH100\b|\bH800\b|\bH20\b", "sm_90"),
    (r"\bL40S?\b|\bL4\b|\bRTX 40\d\d\b|\bRTX (?:\d+ )?Ada\b", "sm_89"),
    (r"\bA100\b|\bA800\b|\bA30\b", "sm_80"),
    (r"\bA10G?\b|\bA40\b|\bA16\b|\bA2\b|\bRTX 30\d\d\b|\bRTX A\d+\b", "sm_86"),
    (r"\bT4\b|\bRTX 20\d\d\b|\bQuadro RTX\b", "sm_75"),
    (r"\bV100\b|\bTITAN V\b", "sm_70"),
)

_INTEL_NAME_ARCH: tuple[tuple[str, str], ...] = (
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


def detect_host(run: RunFn = subprocess.run, which: WhichFn = shutil.which, *,
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


def _output(run: RunFn, argv: Sequence[str]) -> str | None:
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


def _detect_nvidia(run: RunFn, which: WhichFn, dev_dri: Path) -> HostInfo | None:
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


def _amd_count(run: RunFn, which: WhichFn) -> int | None:
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


def _detect_amd(run: RunFn, which: WhichFn, dev_dri: Path) -> HostInfo | None:
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


def _detect_intel(run: RunFn, which: WhichFn, dev_dri: Path) -> HostInfo | None:
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
