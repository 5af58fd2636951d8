"""Run-side hub items of issue 14 on the controller: the default tools.json, --cleanup-perf, the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from madengine.errors import InvalidInputError
from madengine.execute.local import PERF_INTERMEDIATES, check_context, cleanup_perf_files
from madengine.tools_config import DEFAULT_TOOLS_CONFIG_FILE, effective_tools_config

#: ROCm madengine's usual tool names that the default tools config must know.
ROCM_TOOLS = ("rocprof", "rocprofv3", "rpd", "rocm_trace_lite", "rocblas_trace", "hipblaslt_trace", "miopen_trace",
              "tensile_trace", "rccl_trace")


def test_default_tools_config_ships_rocms_tool_names():
    table = json.loads(DEFAULT_TOOLS_CONFIG_FILE.read_text())["tools"]
    assert set(ROCM_TOOLS) <= set(table)
    for name, entry in table.items():  # usable in any MAD tree: no pre/post script paths to ship
        assert not entry.get("pre_scripts") and not entry.get("post_scripts"), name


def test_a_tree_without_tools_json_uses_the_default(tmp_path):
    missing = tmp_path / "scripts/common/tools.json"
    assert effective_tools_config(missing) == DEFAULT_TOOLS_CONFIG_FILE
    context = check_context({"tools": [{"name": "rocprofv3"}]}, missing, tmp_path)
    assert context["tools"][0]["cmd"].startswith("rocprofv3 ")
    with pytest.raises(InvalidInputError) as info:
        check_context({"tools": [{"name": "nope"}]}, missing, tmp_path)
    message = str(info.value)
    assert "madengine's default tools config" in message and "rocprof" in message
    assert "the tools config the tools config" not in message and "tools config tools config" not in message
    own = tmp_path / "mine.json"
    own.write_text(json.dumps({"tools": {"mine": {"cmd": "echo"}}}))
    assert check_context({"tools": [{"name": "mine"}]}, own, tmp_path)["tools"][0]["cmd"] == "echo"


def test_cleanup_perf_removes_intermediates_and_keeps_perf_csv(tmp_path: Path):
    for name in (*PERF_INTERMEDIATES, "perf.csv", "perf_super.csv", "m.run.live.log"):
        (tmp_path / name).write_text("x\n")
    run_dir = tmp_path / "runs" / "r1" / "results" / "node1"
    run_dir.mkdir(parents=True)
    (run_dir / "m.rows.json").write_text("[]\n")
    removed = cleanup_perf_files(tmp_path, tmp_path / "runs" / "r1")
    assert sorted(p.name for p in removed) == sorted([*PERF_INTERMEDIATES, "m.rows.json"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["m.run.live.log", "perf.csv",
                                                                          "perf_super.csv"]


def test_k8s_result_step_says_the_data_was_not_mounted(tmp_path: Path):
    """The Job's result step (madengine_result.py + _perf.py) adds the spec's data_problem to each row."""
    import subprocess
    import sys

    from ansible_collections.mad.engine.plugins.module_utils import _perf

    from madengine.templating import template_text

    (tmp_path / "_perf.py").write_text(Path(_perf.__file__).read_text())
    (tmp_path / "madengine_result.py").write_text(template_text("k8s/madengine_result.py"))
    spec = {"job": "j", "model": {"name": "m"}, "timeout": 60, "run_directory": str(tmp_path),
            "results_dir": str(tmp_path), "begin": "BEGIN", "end": "END", "row": {},
            "data_problem": "data gone is NOT mounted: not defined"}
    (tmp_path / "j.json").write_text(json.dumps(spec))
    (tmp_path / "log").write_text("performance: 5 x\n")
    out = subprocess.run([sys.executable, "-B", str(tmp_path / "madengine_result.py"), str(tmp_path / "j.json"),
                          str(tmp_path / "log"), "0", "2026-01-01T00:00:00+00:00", "1"],
                         capture_output=True, text=True, check=True).stdout
    [row] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert (row["status"], row["reason"]) == ("SUCCESS", "data gone is NOT mounted: not defined")


def test_generate_k8s_refers_to_mad_secrets_through_the_env_secret(tmp_path: Path):
    """MAD_SECRETS* of the generating environment reach the Jobs as Secret references, never as values."""
    import shutil

    import yaml

    from madengine.credentials import Credentials
    from madengine.discover import discover_models
    from madengine.execution_config import ExportOptions, build_execution_config, execution_config_from_dict
    from madengine.k8s import ENV_SECRET, render_k8s
    from madengine.manifest import BuiltImage, Manifest

    root = tmp_path / "MAD"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "MAD", root)
    [model] = discover_models(root, ["dummy"])
    context = {"gpu_vendor": "CPU", "guest_os": "UBUNTU"}
    options = ExportOptions(mad_dir=root, data_config="data.json", tools_config="scripts/common/tools.json",
                            data_config_given=False, tools_config_given=False)
    config = execution_config_from_dict(json.loads(json.dumps(build_execution_config([model], context,
                                                                                     options).config)))
    image = BuiltImage(docker_image="ci-dummy_dummy", dockerfile="docker/dummy.Dockerfile", base_docker="b",
                       docker_sha="sha256:" + "0b" * 32, build_duration=1.0, gpu_vendor="CPU", guest_os="UBUNTU",
                       models=[model.name])
    manifest = Manifest(built_images={"ci-dummy_dummy": image}, context=context)
    manifest.built_models["ci-dummy_dummy"] = model
    manifest.model_images["ci-dummy_dummy"] = "ci-dummy_dummy"
    secret = "hf_k8s-secret-value-77"
    bundle = render_k8s(manifest, config, mad_dir=root,
                        credentials=Credentials({}, env={"MAD_SECRETS_HFTOKEN": secret}))
    assert all(secret not in text for text in bundle.files.values())
    [job] = [d for n, t in bundle.files.items() if n.startswith("job-") for d in yaml.safe_load_all(t) if d]
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MAD_SECRETS_HFTOKEN"]["valueFrom"]["secretKeyRef"] == {"name": ENV_SECRET, "key": "MAD_SECRETS_HFTOKEN"}
    assert "MAD_SECRETS_HFTOKEN" in bundle.secrets[ENV_SECRET]["keys"]
