"""Host detection with fake ``run`` and ``which``: no real GPU tools are needed."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from madengine.hostinfo import COMMAND_TIMEOUT, HostInfo, detect_host

ROCMINFO = """\
*******
Agent 1
*******
  Name:                    AMD EPYC 9654 96-Core Processor
  Marketing Name:          AMD EPYC 9654 96-Core Processor
*******
Agent 2
*******
  Name:                    gfx942
  Marketing Name:          AMD Instinct MI300X
*******
Agent 3
*******
  Name:                    gfx942
"""

ROCM_SMI_SHOWID = """\
device,Device Name,Device ID,Device Rev,Subsystem ID,GUID
card0,0x74a1,0x74a1,0x00,0x74a1,28851
card1,0x74a1,0x74a1,0x00,0x74a1,51499

"""

AMD_SMI_LIST = """\
gpu,gpu_bdf,uuid,kfd_id,node_id,partition_id
0,0000:05:00.0,f6ff74a1-0000-1000-80ed-be5c2bc8f4f6,28851,2,0
1,0000:26:00.0,a5ff74a1-0000-1000-80fb-c63cea0f6e1a,51499,3,0
2,0000:46:00.0,b4ff74a1-0000-1000-8004-8b77a5c22d5b,57603,4,0
"""


class FakeHost:
    """Fake ``which`` and ``run``: ``tools`` maps a tool name to {args tuple: stdout or exit code}."""

    def __init__(self, tools: dict[str, dict[tuple[str, ...], str | int | Exception]]) -> None:
        self.tools = tools
        self.calls: list[list[str]] = []

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.tools else None

    def run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        assert kwargs.get("timeout") == COMMAND_TIMEOUT
        assert kwargs.get("capture_output") is True and kwargs.get("text") is True
        name = Path(argv[0]).name
        result = self.tools[name].get(tuple(argv[1:]), 1)
        if isinstance(result, Exception):
            raise result
        if isinstance(result, int):
            return subprocess.CompletedProcess(argv, result, "", "error")
        return subprocess.CompletedProcess(argv, 0, result, "")


def detect(fake: FakeHost, dev_dri: Path) -> HostInfo:
    return detect_host(run=fake.run, which=fake.which, dev_dri=dev_dri)


@pytest.fixture
def dev_dri(tmp_path: Path) -> Path:
    dri = tmp_path / "dri"
    dri.mkdir()
    for name in ("renderD129", "renderD128", "card0"):
        (dri / name).touch()
    return dri


NVIDIA_QUERY = ("--query-gpu=name,compute_cap", "--format=csv,noheader")


def test_nvidia_count_and_arch_from_compute_cap(dev_dri: Path) -> None:
    two_h100 = "NVIDIA H100 80GB HBM3, 9.0\nNVIDIA H100 80GB HBM3, 9.0\n"
    fake = FakeHost({"nvidia-smi": {NVIDIA_QUERY: two_h100}})
    info = detect(fake, dev_dri)
    assert info == HostInfo(gpu_vendor="NVIDIA", gpu_count=2, gpu_architecture="sm_90", render_devices=[])
    assert fake.calls == [["/usr/bin/nvidia-smi", *NVIDIA_QUERY]]


def test_nvidia_two_digit_major_compute_cap(dev_dri: Path) -> None:
    fake = FakeHost({"nvidia-smi": {NVIDIA_QUERY: "NVIDIA B200, 10.0\n"}})
    assert detect(fake, dev_dri).gpu_architecture == "sm_100"


def test_nvidia_old_driver_falls_back_to_name(dev_dri: Path) -> None:
    fake = FakeHost({"nvidia-smi": {
        NVIDIA_QUERY: 6,  # "Field compute_cap is not a valid field to query"
        ("--query-gpu=name", "--format=csv,noheader"): "NVIDIA A100-SXM4-40GB\n",
    }})
    info = detect(fake, dev_dri)
    assert (info.gpu_vendor, info.gpu_count, info.gpu_architecture) == ("NVIDIA", 1, "sm_80")


def test_nvidia_unknown_name_without_compute_cap_gives_empty_arch(dev_dri: Path) -> None:
    fake = FakeHost({"nvidia-smi": {NVIDIA_QUERY: "Some Future GPU, [N/A]\n"}})
    info = detect(fake, dev_dri)
    assert (info.gpu_vendor, info.gpu_count, info.gpu_architecture) == ("NVIDIA", 1, "")


def test_nvidia_smi_present_but_failing_falls_through_to_amd(dev_dri: Path) -> None:
    fake = FakeHost({
        "nvidia-smi": {NVIDIA_QUERY: 9},
        "rocm-smi": {("--showid", "--csv"): ROCM_SMI_SHOWID},
    })
    assert detect(fake, dev_dri).gpu_vendor == "AMD"


def test_amd_with_rocm_smi_and_rocminfo(dev_dri: Path) -> None:
    fake = FakeHost({
        "rocm-smi": {("--showid", "--csv"): "WARNING: something harmless\n" + ROCM_SMI_SHOWID},
        "rocminfo": {(): ROCMINFO},
    })
    info = detect(fake, dev_dri)
    assert info == HostInfo(
        gpu_vendor="AMD", gpu_count=2, gpu_architecture="gfx942",
        render_devices=[str(dev_dri / "renderD128"), str(dev_dri / "renderD129")],
    )


def test_amd_with_amd_smi_only_has_no_arch_without_rocminfo(dev_dri: Path) -> None:
    fake = FakeHost({"amd-smi": {("list", "--csv"): AMD_SMI_LIST}})
    info = detect(fake, dev_dri)
    assert (info.gpu_vendor, info.gpu_count, info.gpu_architecture) == ("AMD", 3, "")


def test_amd_falls_back_to_amd_smi_when_rocm_smi_fails(dev_dri: Path) -> None:
    fake = FakeHost({
        "rocm-smi": {("--showid", "--csv"): subprocess.TimeoutExpired("rocm-smi", COMMAND_TIMEOUT)},
        "amd-smi": {("list", "--csv"): AMD_SMI_LIST},
        "rocminfo": {(): 1},
    })
    info = detect(fake, dev_dri)
    assert (info.gpu_vendor, info.gpu_count, info.gpu_architecture) == ("AMD", 3, "")


def test_amd_tools_present_but_no_gpus_is_cpu(dev_dri: Path) -> None:
    fake = FakeHost({
        "rocm-smi": {("--showid", "--csv"): "device,Device Name\n"},
        "amd-smi": {("list", "--csv"): OSError("exec format error")},
    })
    assert detect(fake, dev_dri).gpu_vendor == "CPU"


def test_intel_via_xpu_smi(dev_dri: Path) -> None:
    fake = FakeHost({"xpu-smi": {("discovery", "-j"): (
        '{"device_list": [{"device_id": 0, "device_name": "Intel(R) Data Center GPU Max 1550"},'
        ' {"device_id": 1, "device_name": "Intel(R) Data Center GPU Max 1550"}]}'
    )}})
    info = detect(fake, dev_dri)
    assert (info.gpu_vendor, info.gpu_count, info.gpu_architecture) == ("INTEL", 2, "pvc")
    assert info.render_devices == [str(dev_dri / "renderD128"), str(dev_dri / "renderD129")]


def test_intel_garbage_output_falls_through_to_cpu(dev_dri: Path) -> None:
    fake = FakeHost({"xpu-smi": {("discovery", "-j"): "not json"}})
    assert detect(fake, dev_dri).gpu_vendor == "CPU"


def test_cpu_host_spawns_no_subprocess(tmp_path: Path) -> None:
    def run(*args: object, **kwargs: object) -> None:
        raise AssertionError("no subprocess may be spawned when no tool is found")

    looked_up: list[str] = []

    def which(name: str) -> None:
        looked_up.append(name)
        return None

    info = detect_host(run=run, which=which, dev_dri=tmp_path / "missing")
    assert info == HostInfo(gpu_vendor="CPU", gpu_count=0, gpu_architecture="", render_devices=[])
    assert {"nvidia-smi", "rocm-smi", "amd-smi"} <= set(looked_up)


@pytest.mark.parametrize("error", [FileNotFoundError("gone"), PermissionError("denied"),
                                   subprocess.TimeoutExpired("nvidia-smi", COMMAND_TIMEOUT)])
def test_command_errors_never_escape(dev_dri: Path, error: Exception) -> None:
    name_only = ("--query-gpu=name", "--format=csv,noheader")
    fake = FakeHost({"nvidia-smi": {NVIDIA_QUERY: error, name_only: error}})
    assert detect(fake, dev_dri).gpu_vendor == "CPU"


def test_hostinfo_is_frozen() -> None:
    info = HostInfo(gpu_vendor="CPU", gpu_count=0, gpu_architecture="", render_devices=[])
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.gpu_count = 3  # type: ignore[misc]
