"""The generated Kubernetes Jobs, run for real: each pod is played by the docker engine.

There is no cluster here, so a pod is emulated faithfully enough to run the generated commands: the
ConfigMaps become folders laid out as the kubelet does (``..data/<key>`` plus a symlink per key), the
emptyDirs are folders, the initContainer runs to completion, then the container runs with the Job's env,
working dir, mounts and command. Its log must hold the perf rows `madengine-cli run` would write.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tracked_tree import copy_tracked

from madengine.cli.app import app, invoke
from madengine.k8s import parse_result_blocks
from madengine.manifest import BuiltImage, Manifest, write_manifest

pytestmark = pytest.mark.docker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "MAD"


def _config_map_dir(doc: dict[str, Any], folder: Path) -> None:
    data = folder / "..data"
    data.mkdir(parents=True)
    for key, text in (doc.get("data") or {}).items():
        (data / key).write_text(text)
        os.symlink(f"..data/{key}", folder / key)
    for key, blob in (doc.get("binaryData") or {}).items():
        (data / key).write_bytes(base64.b64decode(blob))
        os.symlink(f"..data/{key}", folder / key)


class PodEmulator:
    """Runs one Job's pod (initContainers, then the container) with the docker SDK."""

    def __init__(self, client: Any, bundle_dir: Path, work: Path, prefix: str, created: list[str]) -> None:
        self.client, self.work, self.prefix, self.created = client, work, prefix, created
        self.config_maps = {}
        for path in bundle_dir.glob("configmap-*.yaml"):
            doc = yaml.safe_load(path.read_text())
            self.config_maps[doc["metadata"]["name"]] = doc

    def _container(self, spec: dict[str, Any], volumes: dict[str, Path], name: str,
                   extra_binds: dict[str, dict[str, str]]) -> tuple[int, str]:
        binds = dict(extra_binds)
        for mount in spec.get("volumeMounts", []):
            binds[str(volumes[mount["name"]])] = {"bind": mount["mountPath"],
                                                 "mode": "ro" if mount.get("readOnly") else "rw"}
        env = {}
        for item in spec.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            elif "fieldRef" in item.get("valueFrom", {}):
                env[item["name"]] = "emulated-node" if "nodeName" in item["valueFrom"]["fieldRef"]["fieldPath"] \
                    else name
        self.created.append(name)
        container = self.client.containers.run(
            spec["image"], entrypoint=spec["command"][:1], command=spec["command"][1:] + spec["args"],
            environment=env, working_dir=spec.get("workingDir"), volumes=binds, network_mode="none",
            name=name, detach=True)
        status = container.wait(timeout=120)
        logs = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        container.remove(force=True)
        return int(status["StatusCode"]), logs

    def run(self, job_file: Path, image: str, extra_binds: dict[str, dict[str, str]] | None = None
            ) -> tuple[int, str]:
        job = yaml.safe_load(job_file.read_text())
        pod = job["spec"]["template"]["spec"]
        root = self.work / job["metadata"]["name"]
        volumes: dict[str, Path] = {}
        for volume in pod["volumes"]:
            path = root / volume["name"]
            if "configMap" in volume:
                _config_map_dir(self.config_maps[volume["configMap"]["name"]], path)
            elif "emptyDir" in volume:
                path.mkdir(parents=True)
            else:
                path = Path(volume["hostPath"]["path"])
            volumes[volume["name"]] = path
        for number, init in enumerate(pod.get("initContainers", [])):
            spec = dict(init, image=image)
            code, logs = self._container(spec, volumes, f"{self.prefix}-{job['metadata']['name']}-init{number}"[:120],
                                         {})
            assert code == 0, logs
        spec = dict(pod["containers"][0], image=image)
        return self._container(spec, volumes, f"{self.prefix}-{job['metadata']['name']}"[:120], extra_binds or {})


@pytest.fixture
def k8s_bundle(tmp_path: Path, base_image: str, monkeypatch) -> Path:
    mad = tmp_path / "MAD"
    copy_tracked(EXAMPLE, mad)
    (mad / "scripts/dummy_slow").mkdir()
    (mad / "scripts/dummy_slow/run.sh").write_text("#!/bin/bash\necho starting\nsleep 60\necho 'performance: 1 x'\n")
    (mad / "scripts/echo_perf").mkdir()
    (mad / "scripts/echo_perf/run.sh").write_text('#!/bin/bash\necho "performance: 12.5 items_per_second"\n')
    models = json.loads((mad / "models.json").read_text())
    models += [{"name": "dummy_slow", "dockerfile": "docker/dummy", "scripts": "scripts/dummy_slow/run.sh",
                "tags": ["slow"], "timeout": 2},
               {"name": "echo_perf", "dockerfile": "docker/dummy", "scripts": "scripts/echo_perf/run.sh",
                "tags": ["echo"], "timeout": 60}]
    (mad / "models.json").write_text(json.dumps(models))
    monkeypatch.chdir(tmp_path)
    tags = "dummy,dummy2:dummy_2,dummy3:dummy_3:batch_size=32,multi,failing,data,slow,echo"
    ctx = json.dumps({"gpu_vendor": "CPU", "guest_os": "UBUNTU", "tools": [{"name": "time_wrapper"}]})
    assert invoke(app, ["export-config", "--mad-dir", str(mad), "--tags", tags, "-c", ctx], "madengine-cli") == 0
    from madengine.discover import discover_models

    selected = discover_models(mad, tags.split(","))
    # The image as a local tag (not pushed): the emulated node already has it.
    image = BuiltImage(docker_image=base_image, dockerfile="docker/dummy.Dockerfile", gpu_vendor="CPU",
                       guest_os="UBUNTU", models=[m.name for m in selected])
    manifest = Manifest(built_images={base_image: image}, mad_dir=str(mad),
                        context={"gpu_vendor": "CPU", "guest_os": "UBUNTU"})
    for model in selected:
        key = f"ci-{model.name.replace('/', '_')}"
        manifest.built_models[key] = model
        manifest.model_images[key] = base_image
    write_manifest(tmp_path / "build_manifest.json", manifest)
    assert invoke(app, ["generate", "k8s", "--mad-dir", str(mad), "--output-dir", "k8s"], "madengine-cli") == 0
    return tmp_path / "k8s"


def test_generated_jobs_run_like_local_runs(k8s_bundle, docker_client, base_image, tmp_path, unique_name,
                                            cleanup_containers):
    emulator = PodEmulator(docker_client, k8s_bundle, tmp_path / "pods", unique_name, cleanup_containers)
    jobs = {yaml.safe_load(p.read_text())["metadata"]["annotations"]["madengine/model-name"]: p
            for p in k8s_bundle.glob("job-*.yaml")}
    assert len(jobs) == 8

    results: dict[str, tuple[int, str, list[dict[str, Any]]]] = {}
    for model, path in sorted(jobs.items()):
        code, logs = emulator.run(path, base_image)
        results[model] = (code, logs, parse_result_blocks(logs))

    for model in ("dummy", "dummy2/dummy_2", "dummy3/dummy_3", "dummy_data", "echo_perf"):
        code, logs, rows = results[model]
        assert code == 0, logs
        assert len(rows) == 1, logs
        row = rows[0]
        assert row["model"] == model and row["status"] == "SUCCESS", row
        assert float(row["performance"]) > 0 and row["metric"]
        assert row["deployment_type"] == "kubernetes" and row["host"] == "emulated-node"
        assert "performance:" in logs  # the model's own line is in `kubectl logs` too
        assert "time_wrapper: real" in logs  # the context's tool wraps the model, as locally
    assert results["dummy3/dummy_3"][2][0]["args"].endswith("--batch_size 32")
    assert "dummy_3: batch_size=32" in results["dummy3/dummy_3"][1]
    assert results["dummy_data"][2][0]["dataname"] == "tiny"

    code, logs, rows = results["dummy_multi"]
    assert code == 0
    assert [r["model"] for r in rows] == ["dummy_multi_dummy_multi_sort16", "dummy_multi_dummy_multi_sort256"]
    assert all(r["status"] == "SUCCESS" for r in rows)

    code, logs, rows = results["dummy_fail"]
    assert code == 1
    assert rows[0]["status"] == "FAILURE" and rows[0]["reason"] == "non-zero exit 1"

    code, logs, rows = results["dummy_slow"]
    assert code == 124
    assert rows[0]["status"] == "FAILURE" and rows[0]["reason"] == "timeout after 2 s", rows
    assert "starting" in logs

    # The README's collection commands, run on the logs `kubectl logs` would print.
    readme = (k8s_bundle / "README.md").read_text()
    extract = re.search(r"^done \| (.+) > results\.jsonl$", readme, re.M).group(1)
    to_csv = re.search(r"^(python3 -c '.+?') > results\.csv$", readme, re.M | re.S).group(1)
    all_logs = "".join(logs for _, logs, _ in results.values())
    work = tmp_path / "collect"
    work.mkdir()
    jsonl = subprocess.run(["bash", "-c", extract], input=all_logs, capture_output=True, text=True, check=True,
                           cwd=work).stdout
    (work / "results.jsonl").write_text(jsonl)
    collected = [json.loads(line) for line in jsonl.splitlines()]
    assert sorted(r["model"] for r in collected) == sorted(r["model"] for _, _, rows in results.values()
                                                             for r in rows)
    table = subprocess.run(["bash", "-c", to_csv], capture_output=True, text=True, check=True, cwd=work).stdout
    parsed = list(csv.DictReader(io.StringIO(table)))
    assert len(parsed) == len(collected) == 9
    assert {r["status"] for r in parsed} == {"SUCCESS", "FAILURE"}


def test_image_without_python_prints_a_raw_row(k8s_bundle, docker_client, base_image, tmp_path, unique_name,
                                               cleanup_containers):
    emulator = PodEmulator(docker_client, k8s_bundle, tmp_path / "pods", unique_name, cleanup_containers)
    job = next(p for p in k8s_bundle.glob("job-*.yaml") if "echo-perf" in p.name)
    # Hide python3 from the image: a non-executable file over it.
    code, logs = emulator.run(job, base_image, {"/dev/null": {"bind": "/usr/bin/python3.11", "mode": "ro"}})
    assert code == 0, logs
    rows = parse_result_blocks(logs)
    assert rows == [{"model": "echo_perf", "status": "UNPARSED", "exit_code": 0,
                     "performance_line": "performance: 12.5 items_per_second",
                     "reason": "python3 is not in the image"}], logs
