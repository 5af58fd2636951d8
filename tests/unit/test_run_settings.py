"""madengine.run_settings: flags + execution config + an earlier run's ledger + the manifest's run options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from madengine.errors import ExitCode, InvalidInputError
from madengine.ledger import Ledger
from madengine.manifest import Manifest
from madengine.run_settings import (
    RunRequest,
    cluster_options,
    ledger_args,
    resolve_request,
    run_options,
)


def invalid(request: RunRequest, runs_dir: Path, *needles: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        resolve_request(request, runs_dir)
    assert caught.value.exit_code == ExitCode.INVALID_INPUT
    for needle in needles:
        assert needle in str(caught.value) + (caught.value.hint or "")


def test_bad_flags_are_exit_4(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    invalid(RunRequest(tags=["a"], image_transfer="scp"), tmp_path, "--image-transfer 'scp'")
    invalid(RunRequest(tags=["a"], timeout=-2), tmp_path, "--timeout -2", "7200 s")
    invalid(RunRequest(resume="r1", rerun_failed="r1"), tmp_path, "exclusive")
    invalid(RunRequest(), tmp_path, "Nothing to run")
    invalid(RunRequest(tags=["a"], inventory=Path("inv.yml")), tmp_path, "needs --registry")
    assert resolve_request(RunRequest(tags=["a"], inventory=Path("inv.yml"), image_transfer="copy"), tmp_path)


def test_workflow_choice(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_request(RunRequest(tags=["dummy"]), tmp_path).builds_first
    (tmp_path / "build_manifest.json").write_text("{}")
    req = resolve_request(RunRequest(), tmp_path)
    assert not req.builds_first and req.manifest_file == Path("build_manifest.json")
    assert req.image_transfer == "registry"
    # Tags win over a manifest lying around: the full workflow.
    assert resolve_request(RunRequest(tags=["dummy"]), tmp_path).builds_first


def test_execution_config_context_and_options_under_the_flags(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "exec.json"
    config.write_text(json.dumps({"execution_config_version": 1, "models": [],
                                  "context": {"gpu_vendor": "AMD", "docker_env_vars": {"A": "1"}},
                                  "run_options": {"timeout": 90, "keep_alive": True}}))
    req = resolve_request(RunRequest(tags=["x"], execution_config=config, context={"gpu_vendor": "CPU"}), tmp_path)
    assert req.context == {"gpu_vendor": "CPU", "docker_env_vars": {"A": "1"}}
    assert req.timeout == 90 and req.keep_alive
    assert resolve_request(RunRequest(tags=["x"], execution_config=config, timeout=5), tmp_path).timeout == 5


def test_the_ledger_args_round_trip(tmp_path: Path, monkeypatch) -> None:
    """What a run records is what --resume repeats; a context and registry given now win."""
    monkeypatch.chdir(tmp_path)
    first = RunRequest(manifest_file=Path("m.json"), registry="127.0.0.1:5000", timeout=30, keep_model_dir=True,
                       context={"gpu_vendor": "CPU", "docker_env_vars": {"HF_TOKEN": "hf_secret_value"}},
                       inventory=Path("inv.yml"), distribute="shard", forks=7, image_transfer="copy",
                       force_mirror_local=Path("/mirror"))
    manifest = Manifest()
    options = run_options(first, manifest, tmp_path / "MAD", runs_dir=tmp_path / "runs")
    assert "hf_secret_value" not in json.dumps(options.ledger_meta)
    Ledger(tmp_path / "runs", options.run_id).start(options.ledger_meta)
    again = resolve_request(RunRequest(resume=options.run_id, context={"x": 1}), tmp_path / "runs")
    assert again.manifest_file == (tmp_path / "m.json") and again.mad_dir == tmp_path / "MAD"
    assert (again.timeout, again.keep_model_dir, again.registry) == (30, True, "127.0.0.1:5000")
    assert again.context == {"gpu_vendor": "CPU", "docker_env_vars": {"HF_TOKEN": "******"}, "x": 1}
    assert again.force_mirror_local == Path("/mirror")
    cluster = cluster_options(again)
    assert cluster is not None
    assert (cluster.distribute, cluster.forks, cluster.image_transfer) == ("shard", 7, "copy")
    assert again.tags is None and not again.builds_first
    resumed = run_options(again, manifest, again.mad_dir)
    assert resumed.run_id == options.run_id
    assert ledger_args(again, again.mad_dir, resumed) == options.ledger_meta["args"]


def test_a_ledger_without_its_args_or_a_bad_run_id_is_a_clear_error(tmp_path: Path) -> None:
    Ledger(tmp_path, "r2").start({"cells": []})
    invalid(RunRequest(resume="r2"), tmp_path, "the run record has no args")
    Ledger(tmp_path, "r3").start({"cells": [], "args": {"manifest_file": "m.json"}})
    invalid(RunRequest(resume="r3"), tmp_path, "args.mad_dir")
    invalid(RunRequest(resume="../../x"), tmp_path, "is not a run ID")
    invalid(RunRequest(rerun_failed="a/b"), tmp_path, "--rerun-failed 'a/b'")


def test_tags_that_name_nothing_or_beside_a_manifest_are_exit_4(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    invalid(RunRequest(tags=[""]), tmp_path, "--tags is empty")
    invalid(RunRequest(tags=["a"], manifest_file=Path("m.json")), tmp_path, "do not go together")
    invalid(RunRequest(tags=["a"], timeout=10**9), tmp_path, "too large")


def test_run_options_take_the_manifest_configs_unless_given(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = Manifest(run_options={"data_config": "/abs/data.json", "tools_config": "cfg/tools.json",
                                     "disable_skip_gpu_arch": True, "sys_env_details": False})
    options = run_options(RunRequest(tags=["x"]), manifest, tmp_path / "MAD")
    assert options.data_config == Path("/abs/data.json")
    assert options.tools_config == tmp_path / "MAD" / "cfg" / "tools.json"
    assert options.disable_skip_gpu_arch and not options.sys_env_details
    (tmp_path / "mine.json").write_text("{}")
    given = run_options(RunRequest(tags=["x"], data_config=Path("mine.json")), manifest, tmp_path / "MAD")
    assert given.data_config == tmp_path / "mine.json"


def test_slurm_settings_round_trip_and_need_a_registry(tmp_path: Path, monkeypatch) -> None:
    """--slurm, --partition and --slurm-time are recorded, so --resume submits the same way; a flag given
    now wins. A SLURM full workflow needs --registry (or --image-transfer copy), like a cluster one."""
    monkeypatch.chdir(tmp_path)
    invalid(RunRequest(tags=["a"], slurm=True), tmp_path, "needs --registry")
    first = RunRequest(manifest_file=Path("m.json"), slurm=True, partition="debug", slurm_time="00:05:00",
                       image_transfer="copy")
    options = run_options(first, Manifest(), tmp_path / "MAD", runs_dir=tmp_path / "runs")
    assert options.ledger_meta["args"]["slurm"] == {"partition": "debug", "time": "00:05:00",
                                                    "image_transfer": "copy"}
    Ledger(tmp_path / "runs", options.run_id).start(options.ledger_meta)
    again = resolve_request(RunRequest(resume=options.run_id), tmp_path / "runs")
    assert (again.slurm, again.partition, again.slurm_time, again.image_transfer) == (
        True, "debug", "00:05:00", "copy")
    assert cluster_options(again) is None
    now = resolve_request(RunRequest(resume=options.run_id, partition="batch"), tmp_path / "runs")
    assert now.partition == "batch"
