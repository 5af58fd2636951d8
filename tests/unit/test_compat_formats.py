"""Migration Guide → Backward Compatibility: files in ROCm madengine's formats are read without changes.

The fixtures in tests/fixtures/upstream/ were written for these tests from the formats' descriptions
(see the README there), not copied. Each test reads them as they are, through the same code the CLI
uses: discovery (models.json), build-time credentials (credential.json), run planning (build_manifest.json,
data.json, tools.json) and compare/report (perf.csv). A real run from the upstream manifest is in
tests/integration/test_guide.py.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from madengine.cli.app import app, invoke

UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures" / "upstream"
MAD = UPSTREAM / "MAD"
CTX = '{"gpu_vendor": "AMD", "guest_os": "UBUNTU"}'


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = invoke(app, list(args), "madengine-cli")
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mad(tmp_path: Path) -> Path:
    """A copy of the upstream-format MAD package, with its build manifest, to work in."""
    root = tmp_path / "MAD"
    shutil.copytree(MAD, root)
    shutil.copy(UPSTREAM / "build_manifest.json", root / "build_manifest.json")
    return root


# ------------------------------------------------------------------------------------- models.json
def test_models_json_with_upstream_fields() -> None:
    from madengine.discover import discover_models

    models = {m.name: m for m in discover_models(MAD, None)}
    assert list(models) == ["dummy", "dummy_multi", "pyt_demo_bert", "dummy2/dummy_2"]
    bert = models["pyt_demo_bert"]
    assert (bert.url, bert.owner, bert.training_precision) == ("https://example.com/demo/bert",
                                                               "perf.team@example.com", "fp16")
    assert bert.n_gpus == -1  # "-1" (a string) means every GPU
    assert bert.tags == ["pyt", "demo_bert"]
    assert bert.args == "--model_repo bert-base --batch-size 8 --steps 10"
    assert bert.timeout == -1 and not bert.multiple_results  # "" = none
    assert (bert.data, bert.cred, bert.skip_gpu_arch) == ("demo_data", "AMD_GITHUB", ["gfx906"])
    assert models["dummy_multi"].multiple_results == "perf_dummy_multi.csv"
    assert models["dummy_multi"].timeout == 600
    assert models["dummy"].timeout is None  # no timeout field: the default applies
    # A directory's models.json: paths relative to its folder, the name prefixed with it (as upstream).
    dir_model = models["dummy2/dummy_2"]
    assert (dir_model.dockerfile, dir_model.scripts) == ("docker/dummy", "scripts/dummy2/run.sh")
    assert dir_model.n_gpus == -1


def test_models_json_tags_select_like_upstream(capsys) -> None:
    for tags, names in ((["pyt"], ["pyt_demo_bert"]), (["dummies"], ["dummy", "dummy_multi", "dummy2/dummy_2"]),
                        (["dummy2:dummy_2"], ["dummy2/dummy_2"]), (["dummy", "pyt"], ["dummy", "pyt_demo_bert"])):
        code, out, err = cli(capsys, "discover", "--json", "--mad-dir", str(MAD), "--tags", *tags)
        assert code == 0, err
        assert [m["name"] for m in json.loads(out)] == names


# ------------------------------------------------------------------------------------- credential.json
def test_credential_json_with_nas_nodes_and_upper_case_fields() -> None:
    from madengine.credentials import Credentials

    creds = Credentials.load(MAD, env={})
    login = creds.registry_login("localhost:5000")
    assert (login.username, login.password) == ("builder", "fixture-registry-pass")
    hub = creds.registry_login("docker.io")
    assert (hub.key, hub.username, hub.repository) == ("dockerhub", "mad-bot", "madteam/models")
    assert creds.cred_build_args("AMD_GITHUB") == {"AMD_GITHUB_USERNAME": "mad-bot",
                                                   "AMD_GITHUB_PASSWORD": "fixture-github-token"}
    assert creds.cred_build_args("MAD_AWS_S3") == {"MAD_AWS_S3_USERNAME": "FIXTUREACCESSKEY",
                                                   "MAD_AWS_S3_PASSWORD": "fixture-aws-secret"}
    secrets = creds.secret_values()
    for value in ("fixture-dockerhub-pass", "fixture-registry-pass", "fixture-github-token", "fixture-aws-secret",
                  "fixture-minio-secret", "fixture-nas-pass", "fixture-nas-pass-b"):
        assert value in secrets, value  # NAS_NODES (a list) is masked too
    assert "datauser" not in secrets and "mad-bot" not in secrets


# ------------------------------------------------------------------------------------- data.json, tools.json
def test_data_json_provider_entries() -> None:
    from ansible_collections.mad.engine.plugins.module_utils._data import plan_data

    config = json.loads((MAD / "data.json").read_text())
    local = plan_data("demo_data", config, str(MAD), exists=lambda path: True)
    assert (local.provider, local.binds) == ("local", ["/nonexistent/datasets/demo_data:/data/demo_data:ro"])
    # The local path is missing here, the NAS path is not mounted: the next provider in upstream's order.
    fetched = plan_data("demo_data", config, str(MAD), exists=lambda path: False)
    assert fetched.provider == "aws" and "s3://mad-datasets/demo_data" in " ".join(fetched.commands)
    mirrored = plan_data("demo_data", config, str(MAD), "/tmp/mirror", exists=lambda path: False)
    assert mirrored.binds == ["/tmp/mirror/demo_data:/data/demo_data:rw"]  # --force-mirror-local
    custom = plan_data("small_set", config, str(MAD), exists=lambda path: False)
    assert custom.provider == "custom" and "get_small_set.sh /data/small_set --fast" in custom.commands[-1]


def test_tools_json_resolves_context_tools(tmp_path) -> None:
    from madengine.errors import InvalidInputError
    from madengine.execute.local import check_context

    tools_json = MAD / "scripts" / "common" / "tools.json"
    context = check_context({"tools": [{"name": "rocprof"}, {"name": "trace_wrapper"}]}, tools_json, MAD)
    rocprof, trace = context["tools"]
    assert rocprof["cmd"] == "rocprof --timestamp on" and rocprof["env_vars"] == {}
    assert trace["env_vars"] == {"TRACE_ENABLED": "1"}
    assert trace["pre_scripts"] == [{"path": "scripts/common/pre_scripts/trace_start.sh", "args": "trace"}]
    assert trace["post_scripts"] == [{"path": "scripts/common/post_scripts/trace_stop.sh", "args": "trace"}]
    with pytest.raises(InvalidInputError, match="nosuchtool"):
        check_context({"tools": [{"name": "nosuchtool"}]}, tools_json, MAD)


def test_export_config_reads_the_upstream_files(capsys, mad) -> None:
    ctx = json.dumps({"gpu_vendor": "AMD", "guest_os": "UBUNTU", "tools": [{"name": "rocprof"}]})
    code, _, err = cli(capsys, "export-config", "--mad-dir", str(mad), "--tags", "pyt", "dummies", "-c", ctx,
                       "--output", str(mad / "execution_config.json"))
    assert code == 0, err
    config = json.loads((mad / "execution_config.json").read_text())
    assert [m["name"] for m in config["models"]] == ["pyt_demo_bert", "dummy", "dummy_multi", "dummy2/dummy_2"]
    options = config["run_options"]
    assert options["tools"] == {"rocprof": {"cmd": "rocprof --timestamp on", "env_vars": {}}}  # from tools.json
    assert set(options["data"]["demo_data"]) == {"local", "nas", "aws"}  # from data.json
    bert = next(r for r in config["resources"] if r["model"] == "pyt_demo_bert")
    assert bert["data"]["providers"] == ["local", "nas", "aws"] and bert["n_gpus"] == -1
    assert config["credentials_required"] == ["AMD_GITHUB"]  # the model's cred, by name only
    assert "fixture-github-token" not in (mad / "execution_config.json").read_text()


# ------------------------------------------------------------------------------------- build_manifest.json
def test_build_manifest_as_upstream_writes_it() -> None:
    from madengine.manifest import load_manifest

    manifest = load_manifest(UPSTREAM / "build_manifest.json")
    assert manifest.manifest_version == 0  # no manifest_version: upstream's
    assert manifest.registry == "localhost:5000"
    assert manifest.context["gpu_vendor"] == "AMD" and manifest.context["docker_gpus"] == "0,1,2,3,4,5,6,7"
    entries = manifest.entries()
    assert [(e.key, e.model.name) for e in entries] == [
        ("ci-dummy_dummy.ubuntu.amd", "dummy"), ("ci-dummy_multi_dummy.ubuntu.amd", "dummy_multi"),
        ("ci-dummy2_dummy_2_dummy.ubuntu.amd", "dummy2/dummy_2")]
    for entry in entries:
        assert entry.image.docker_image == entry.key
        assert entry.image.registry_image == f"localhost:5000/{entry.key}"  # a tag: upstream records no digest
        assert entry.image.image_digest is None
    assert entries[2].model.n_gpus == -1 and entries[1].model.multiple_results == "perf_dummy_multi.csv"
    # Written back, every upstream key is still there with its value.
    original = json.loads((UPSTREAM / "build_manifest.json").read_text())
    again = manifest.to_dict()
    for key in ("context", "credentials_required", "registry"):
        assert again[key] == original[key]
    for name, image in original["built_images"].items():
        assert {k: again["built_images"][name][k] for k in image} == image


def test_run_planning_from_the_upstream_manifest(mad) -> None:
    """The local executor's plan (one request per model, every input checked before anything runs) and
    the cluster plan (replicate / shard over an inventory) from the upstream manifest."""
    from madengine.execute.ansible import ClusterOptions, plan_cluster
    from madengine.execute.local import RunOptions, plan_requests
    from madengine.manifest import load_manifest

    manifest = load_manifest(mad / "build_manifest.json")
    options = RunOptions(output=mad / "perf.csv", context={"gpu_vendor": "CPU"}, data_config=mad / "data.json",
                         tools_config=mad / "scripts" / "common" / "tools.json")
    requests = plan_requests(manifest, options, mad)
    assert [(entry.model.name, request["image"]) for entry, request in requests] == [
        ("dummy", "localhost:5000/ci-dummy_dummy.ubuntu.amd"),
        ("dummy_multi", "localhost:5000/ci-dummy_multi_dummy.ubuntu.amd"),
        ("dummy2/dummy_2", "localhost:5000/ci-dummy2_dummy_2_dummy.ubuntu.amd")]
    first = requests[0][1]
    assert first["image_info"]["base_docker"] == "rocm/pytorch:rocm6.3_ubuntu22.04_py3.10_pytorch"
    assert first["context"]["gpu_vendor"] == "CPU"  # the run's -c wins over the manifest's AMD
    assert first["context"]["docker_env_vars"]["NCCL_DEBUG"] == "INFO"  # the rest of the manifest's context
    inventory = mad / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    node1: {ansible_host: 127.0.0.2}\n    node2: {ansible_host: 127.0.0.3}\n")
    keys = [entry.key for entry in manifest.entries()]
    replicated = plan_cluster(manifest, options, ClusterOptions(inventory=inventory))
    assert replicated == {"node1": keys, "node2": keys}
    sharded = plan_cluster(manifest, options, ClusterOptions(inventory=inventory, distribute="shard"))
    assert sorted(k for ks in sharded.values() for k in ks) == sorted(keys) and all(sharded.values())


def test_generate_from_the_upstream_manifest(capsys, mad, monkeypatch) -> None:
    """Production Deployment: export-config, then generate ansible and k8s, from the upstream manifest."""
    monkeypatch.chdir(mad)
    code, _, err = cli(capsys, "export-config", "--tags", "dummies", "-c", CTX)
    assert code == 0, err
    code, out, err = cli(capsys, "generate", "ansible", "--manifest-file", "build_manifest.json",
                         "--execution-config", "execution_config.json", "--output", "deploy/playbook.yml")
    assert code == 0, err
    assert (mad / "deploy" / "playbook.yml").is_file()
    assert "ci-dummy_dummy.ubuntu.amd" in (mad / "deploy" / "madengine_vars.yml").read_text()
    assert "localhost:5000/ci-dummy_dummy.ubuntu.amd" in (mad / "deploy" / "README.md").read_text()
    code, out, err = cli(capsys, "generate", "k8s", "--namespace", "production")
    assert code == 0, err
    jobs = "".join(p.read_text() for p in (mad / "k8s").glob("*.yaml"))
    assert "namespace: production" in jobs and "localhost:5000/ci-dummy2_dummy_2_dummy.ubuntu.amd" in jobs


# ------------------------------------------------------------------------------------- perf.csv
def test_compare_upstream_perf_csv_files(capsys) -> None:
    """perf.csv with upstream's 29 columns against a baseline with the older 25: compared by model and
    metric (upstream rows have no host column), with the metric's direction."""
    code, out, err = cli(capsys, "compare", str(UPSTREAM / "perf.csv"), "--baseline",
                         str(UPSTREAM / "perf_baseline.csv"), "--json")
    assert code == 5, err  # a regression: the CI gate
    result = json.loads(out)
    status = {entry["model"]: entry["status"] for entry in result["entries"]}
    assert status == {"dummy": "UNCHANGED", "dummy_fail": "FAILED", "dummy_multi_dummy_multi_b": "REGRESSION",
                      "pyt_demo_bert": "REGRESSION"}
    assert next(e for e in result["entries"] if e["model"] == "dummy_multi_dummy_multi_b")["direction"] == "lower"  # ms


def test_report_reads_upstream_perf_csv(capsys, tmp_path) -> None:
    out = tmp_path / "report.html"
    code, _, err = cli(capsys, "report", str(UPSTREAM / "perf.csv"), "--baseline", str(UPSTREAM / "perf_baseline.csv"),
                       "--output", str(out))
    assert code == 0, err
    html = out.read_text()
    assert "pyt_demo_bert" in html and "dummy_fail" in html


def test_appending_to_an_upstream_perf_csv_keeps_its_rows(tmp_path) -> None:
    from madengine.results import PERF_COLUMNS, PerfCsv, read_rows

    path = tmp_path / "perf.csv"
    shutil.copy(UPSTREAM / "perf.csv", path)
    before = read_rows(path)
    PerfCsv(path).append([{"model": "new", "status": "SUCCESS", "performance": "1", "metric": "x",
                           "host": "localhost", "run_id": "r1"}])
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:29] == list(PERF_COLUMNS[:29])  # upstream's columns first, in upstream's order
    after = read_rows(path)
    assert [{k: row[k] for k in before[0]} for row in after[:-1]] == before
    assert after[-1]["model"] == "new" and after[-1]["run_id"] == "r1"
