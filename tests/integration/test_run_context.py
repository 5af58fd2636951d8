"""One run context for every executor (issue 13's regressions), through the real CLI, engine and registry.

- A normal setting whose name holds a secret word (``MAX_NUM_BATCHED_TOKENS``) survives the manifest and
  reaches the container; a real secret (``MY_API_TOKEN``) never reaches the manifest.
- The full workflow detects the controller's GPUs only to choose Dockerfiles: the manifest leaves GPU
  detection to each run host, so a CPU controller does not make AMD nodes run as CPU.
"""

from __future__ import annotations

import json

import pytest
from ansible_collections.mad.engine.plugins.module_utils._facts import run_facts
from madtree import BUILD_CTX, cli, perf_rows

pytestmark = pytest.mark.docker


def test_a_setting_named_like_a_secret_survives_build_then_run(capsys, caplog, mad) -> None:
    name = mad.add("env", 'echo "batched=$MAX_NUM_BATCHED_TOKENS omp=$OMP_NUM_THREADS"\n'
                          'echo "performance: 1 items_per_second"\n')
    ctx = {**json.loads(BUILD_CTX), "docker_env_vars": {"MAX_NUM_BATCHED_TOKENS": "8192", "OMP_NUM_THREADS": "4",
                                                        "MY_API_TOKEN": "tok-0123456789"}}
    res = cli(capsys, "build", "--tags", mad.uid, "-c", json.dumps(ctx))
    assert res.code == 0, res.text
    manifest_text = (mad.root / "build_manifest.json").read_text()
    env = json.loads(manifest_text)["context"]["docker_env_vars"]
    assert env == {"MAX_NUM_BATCHED_TOKENS": "8192", "OMP_NUM_THREADS": "4", "MY_API_TOKEN": "******"}
    assert "tok-0123456789" not in manifest_text
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json")
    assert res.code == 0, res.text
    assert "batched=8192 omp=4" in mad.log("env")
    warnings = [r.getMessage() for r in caplog.records if "was masked in the manifest" in r.getMessage()]
    assert warnings == ["docker_env_vars.MY_API_TOKEN was masked in the manifest; pass it again with -c"]
    assert [row["status"] for row in perf_rows() if row["model"] == name] == ["SUCCESS"]


def test_the_full_workflow_leaves_gpu_detection_to_each_run_host(capsys, mad) -> None:
    mad.add("gpu", 'echo "performance: 1 items_per_second"\n')
    res = cli(capsys, "run", "--tags", mad.uid)  # nothing given: the controller detects (a CPU here)
    assert res.code == 0, res.text
    context = json.loads((mad.root / "build_manifest.json").read_text())["context"]
    assert context.get("gpu_vendor") in (None, "") and "gpu_count" not in context
    assert "gpu_architecture" not in context
    node = {"gpu_vendor": "AMD", "gpu_count": 8, "gpu_architecture": "gfx942", "render_devices": []}
    completed, facts = run_facts(context, node)
    assert (facts["gpu_vendor"], facts["gpu_count"], facts["gpu_architecture"]) == ("AMD", 8, "gfx942")
    assert completed["gpu_count"] == 8

    # What the user gives explicitly is kept, and wins over every host's facts.
    res = cli(capsys, "run", "--tags", mad.uid, "-c", '{"gpu_vendor": "CPU", "gpu_count": 0}')
    assert res.code == 0, res.text
    context = json.loads((mad.root / "build_manifest.json").read_text())["context"]
    assert context["gpu_vendor"] == "CPU" and context["gpu_count"] == 0
    _, facts = run_facts(context, node)
    assert (facts["gpu_vendor"], facts["gpu_count"]) == ("CPU", 0)
