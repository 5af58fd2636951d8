# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

import json

from ansible_collections.mad.engine.plugins.module_utils._perf import PERF_COLUMNS
from ansible_collections.mad.engine.plugins.modules import run_model

MODEL = {"name": "dummy", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh", "n_gpus": 1,
         "tags": ["dummies"], "args": "", "timeout": 60}
FACTS = {"gpu_vendor": "CPU", "gpu_count": 0, "gpu_architecture": "", "render_devices": []}


def _request(tmp_path, **extra):
    mad = tmp_path / "mad"
    (mad / "scripts" / "dummy").mkdir(parents=True, exist_ok=True)
    (mad / "scripts" / "dummy" / "run.sh").write_text("echo performance: 1 x\n")
    return dict({"key": "ci-dummy_dummy", "model": MODEL, "image": "ci-dummy_dummy",
                 "image_info": {"docker_file": "docker/dummy.Dockerfile"}, "context": {"gpu_vendor": "CPU"},
                 "facts": FACTS, "options": {"sys_env_details": False}, "mad_dir": str(mad),
                 "output_dir": str(tmp_path / "out"), "run_id": "r1", "host": "node1"}, **extra)


def test_error_request_gives_a_failure_row_without_running(run_module, tmp_path) -> None:
    request = _request(tmp_path, error="pull failed: pull of x failed: manifest unknown")
    result = run_module(run_model.main, {"request": request, "docker_host": "unix:///nonexistent.sock"})
    assert result.get("failed", False) is False and result["changed"] is False
    assert result["model"] == "dummy" and result["key"] == "ci-dummy_dummy" and result["infra_error"] is True
    [row] = result["rows"]
    assert list(row) == list(PERF_COLUMNS)
    assert (row["status"], row["reason"], row["host"], row["run_id"]) == (
        "FAILURE", "pull failed: pull of x failed: manifest unknown", "node1", "r1")
    assert json.loads((tmp_path / "out" / "dummy.rows.json").read_text()) == result["rows"]
    assert result["rows_path"] == str(tmp_path / "out" / "dummy.rows.json")


def test_unreachable_engine_is_a_failure_row_not_a_module_failure(run_module, tmp_path) -> None:
    result = run_module(run_model.main, {"request": _request(tmp_path),
                                         "docker_host": f"unix://{tmp_path}/none.sock"})
    assert result.get("failed", False) is False and result["changed"] is False
    assert result["infra_error"] is True
    [row] = result["rows"]
    assert row["status"] == "FAILURE" and "cannot connect to the Docker engine" in row["reason"]
    assert "FAILURE" in result["msg"]


def test_missing_script_is_a_failure_row(run_module, tmp_path) -> None:
    request = _request(tmp_path, model=dict(MODEL, scripts="scripts/nothere/run.sh"))
    result = run_module(run_model.main, {"request": request, "docker_host": f"unix://{tmp_path}/none.sock"})
    [row] = result["rows"]
    assert row["status"] == "FAILURE" and "scripts/nothere/run.sh not found" in row["reason"]
    assert result["infra_error"] is False


def test_unknown_tool_is_a_failure_row(run_module, tmp_path) -> None:
    request = _request(tmp_path, context={"tools": [{"name": "nope"}]},
                       tools_config={"tools": {"rocprof": {"cmd": "rocprof"}}}, tools_config_name="tools.json")
    result = run_module(run_model.main, {"request": request, "docker_host": f"unix://{tmp_path}/none.sock"})
    [row] = result["rows"]
    assert row["status"] == "FAILURE" and "unknown tool 'nope'" in row["reason"] and "tools.json" in row["reason"]


def test_skip_gpu_arch_is_a_skipped_row_from_the_host_facts(run_module, tmp_path) -> None:
    request = _request(tmp_path, model=dict(MODEL, skip_gpu_arch=["gfx942"]), context={},
                       facts={"gpu_vendor": "AMD", "gpu_count": 8, "gpu_architecture": "gfx942",
                              "render_devices": []})
    result = run_module(run_model.main, {"request": request, "docker_host": f"unix://{tmp_path}/none.sock"})
    [row] = result["rows"]
    assert (row["status"], row["reason"], row["gpu_architecture"]) == ("SKIPPED", "skip_gpu_arch lists gfx942",
                                                                       "gfx942")


def test_cred_env_is_never_returned(run_module, tmp_path) -> None:
    request = _request(tmp_path, error="pull failed: nope")
    result = run_module(run_model.main, {"request": request, "cred_env": {"X_TOKEN": "tok-123456789"},
                                         "docker_host": "unix:///nonexistent.sock"})
    assert "tok-123456789" not in json.dumps(result)
