"""`generate k8s` and `generate ansible` over the real ROCm/MAD hub cards (../shared/realmad, issue 14).

The hub's cards are copied with small stand-in scripts (the hub's own are not kept) and put in a build
manifest by hand (one image, no build). Every card must give a Job (the 83 ``"data": "huggingface"``
cards included), every Job must validate against the Kubernetes schema, every ConfigMap must stay below
1 MiB (also when the specs need one ConfigMap per Job), and the Ansible bundle must load and name every
card. Skipped when ../shared is absent, as in a user's clone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ansible_collections.mad.engine.plugins.module_utils._runspec import script_location

from madengine import k8s
from madengine.ansible_bundle import VARS_FILE, render_ansible
from madengine.credentials import Credentials
from madengine.execution_config import ExportOptions, build_execution_config, execution_config_from_dict
from madengine.k8s import KUBERNETES_VERSION, render_k8s
from madengine.manifest import BuiltImage, Manifest
from madengine.model import Model

_REPO = Path(__file__).resolve().parents[2]
# ../shared beside the clone (a worktree under wt/ looks one level further up).
REALMAD = next((p for p in (_REPO.parent / "shared" / "realmad", _REPO.parent.parent / "shared" / "realmad")
                if p.is_dir()), _REPO.parent / "shared" / "realmad")
pytestmark = pytest.mark.skipif(not REALMAD.is_dir(), reason="../shared/realmad (the real hub cards) is absent")

DIGEST = "sha256:" + "ab" * 32
CONTEXT = {"gpu_vendor": "AMD", "guest_os": "UBUNTU", "gpu_architecture": "gfx90a"}
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> tuple[Path, list[Model]]:
    """The real cards with a stand-in for every script they name."""
    from madengine.discover import discover_models

    root = tmp_path_factory.mktemp("realmad") / "MAD"
    shutil.copytree(REALMAD, root)
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
    models = discover_models(root, ["all"])
    for model in models:
        folder, script = script_location(model.to_dict())
        path = root / folder / script
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text("#!/bin/bash\necho \"performance: 1 samples_per_second\"\n")
    return root, models


def _manifest(models: list[Model]) -> Manifest:
    image = BuiltImage(docker_image="ci-hub_stand-in", dockerfile="docker/stand-in.Dockerfile",
                       base_docker="madengine-base:bookworm", docker_sha="sha256:" + "0c" * 32, build_duration=1.0,
                       gpu_vendor="AMD", guest_os="UBUNTU", models=[m.name for m in models])
    image.registry_image = f"127.0.0.1:5000/ci-hub_stand-in@{DIGEST}"
    image.image_digest, image.registry, image.pushed = DIGEST, "127.0.0.1:5000", True
    manifest = Manifest(built_images={"ci-hub_stand-in": image}, registry="127.0.0.1:5000", context=dict(CONTEXT))
    for model in models:
        key = f"ci-{model.name.replace('/', '_')}"
        manifest.built_models[key] = model
        manifest.model_images[key] = "ci-hub_stand-in"
    return manifest


def _config(root: Path, models: list[Model]):
    options = ExportOptions(mad_dir=root, data_config="data.json", tools_config="scripts/common/tools.json",
                            data_config_given=False, tools_config_given=False)
    result = build_execution_config(models, dict(CONTEXT), options)
    return execution_config_from_dict(json.loads(json.dumps(result.config)))


def _documents(files: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name, text in sorted(files.items())
            if name.endswith(".yaml") and name != "kustomization.yaml"
            for doc in yaml.safe_load_all(text) if doc is not None]


def _check_k8s(bundle, cards: int) -> list[tuple[str, dict[str, Any]]]:
    assert bundle.skipped == [], bundle.skipped[:3]
    assert len(bundle.jobs) == cards
    docs = _documents(bundle.files)
    config_maps = {}
    for name, doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        if doc["kind"] == "ConfigMap":
            size = len(bundle.files[name].encode("utf-8"))
            assert size < MIB, (name, size)
            config_maps[doc["metadata"]["name"]] = doc
    for _, doc in docs:
        if doc["kind"] == "Job":
            spec = doc["spec"]["template"]["spec"]
            refs = [v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v]
            assert set(refs) <= set(config_maps)
            config = next(config_maps[r] for r in refs if r.startswith(k8s.CONFIG_MAP))
            assert f"{doc['metadata']['name']}.json" in config["data"]
            env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
            assert env["MAD_SYSTEM_GPU_ARCHITECTURE"] == "gfx90a"
    kustomization = yaml.safe_load(bundle.files["kustomization.yaml"])
    assert sorted(kustomization["resources"]) == sorted(n for n in bundle.files if n.endswith(".yaml")
                                                        and n != "kustomization.yaml")
    return docs


def test_generate_k8s_over_the_real_cards(hub):
    root, models = hub
    assert len(models) == 108
    bundle = render_k8s(_manifest(models), _config(root, models), mad_dir=root, credentials=Credentials({}, env={}))
    docs = _check_k8s(bundle, len(models))
    assert [doc["kind"] for _, doc in docs].count("ConfigMap") == 2  # fits one madengine-config
    # The huggingface cards have their Jobs: MAD_DATANAME set, nothing mounted.
    hf = [m for m in models if m.data == "huggingface"]
    assert len(hf) == 83
    jobs = {doc["metadata"]["annotations"]["madengine/model-name"]: doc for _, doc in docs if doc["kind"] == "Job"}
    for model in hf:
        container = jobs[model.name]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MAD_DATANAME"] == "huggingface" and "MAD_DATAHOME" not in env
    # Card env_vars reach the Jobs (embedded JSON is one string).
    with_env = [m for m in models if m.to_dict().get("env_vars")]
    assert len(with_env) == 43
    for model in with_env:
        env = {e["name"]: e.get("value") for e in jobs[model.name]["spec"]["template"]["spec"]["containers"][0]["env"]}
        for key, value in model.to_dict()["env_vars"].items():
            assert env[key] == value, (model.name, key)


def test_generate_k8s_splits_the_config_map_per_job_when_large(hub, monkeypatch):
    root, models = hub
    monkeypatch.setattr(k8s, "CONFIGMAP_LIMIT", 200 * 1024)  # the 108 specs no longer fit one ConfigMap
    bundle = render_k8s(_manifest(models), _config(root, models), mad_dir=root, credentials=Credentials({}, env={}))
    docs = _check_k8s(bundle, len(models))
    names = [doc["metadata"]["name"] for _, doc in docs if doc["kind"] == "ConfigMap"]
    assert len(names) == len(models) + 1 and k8s.CONFIG_MAP not in names  # one per Job, plus the scripts


def test_generate_k8s_warns_about_an_empty_gpu_architecture(hub):
    root, models = hub
    context = {k: v for k, v in CONTEXT.items() if k != "gpu_architecture"}
    manifest = _manifest(models[:3])
    manifest.context = dict(context)
    options = ExportOptions(mad_dir=root, data_config="data.json", tools_config="scripts/common/tools.json",
                            data_config_given=False, tools_config_given=False)
    config = execution_config_from_dict(json.loads(json.dumps(build_execution_config(models[:3], context,
                                                                                     options).config)))
    bundle = render_k8s(manifest, config, mad_dir=root, credentials=Credentials({}, env={}))
    assert [n for n in bundle.notes if "empty MAD_SYSTEM_GPU_ARCHITECTURE" in n] == [
        next(n for n in bundle.notes if n.startswith("3 Job(s) get an empty MAD_SYSTEM_GPU_ARCHITECTURE"))]


def test_generate_ansible_over_the_real_cards(hub):
    root, models = hub
    manifest = _manifest(models)
    bundle = render_ansible(manifest, _config(root, models), mad_dir=root, credentials=Credentials({}, env={}))
    variables = yaml.safe_load(bundle.files[VARS_FILE].replace("!unsafe", ""))
    assert sorted(variables["run_models_models"]) == sorted(manifest.built_models)
    assert json.loads(bundle.files["data.json"]) == {"huggingface": {}}
    # No "will fail" note for the huggingface data (it runs with MAD_DATANAME); every script is in the bundle.
    assert not [n for n in bundle.notes if "huggingface" in n], bundle.notes
    for model in models:
        folder, script = script_location(model.to_dict())
        assert f"{folder}/{script}" in bundle.mad_files, model.name


def test_a_data_source_missing_from_data_json_drops_nothing(hub):
    """generate k8s / ansible / export-config: a source the data config lacks is one warning, no lost Job."""
    root, models = hub
    options = ExportOptions(mad_dir=root, data_config="data.json", tools_config="scripts/common/tools.json",
                            data_config_given=False, tools_config_given=False)
    raw = build_execution_config(models, dict(CONTEXT), options).config
    raw = json.loads(json.dumps(raw))
    raw["run_options"]["data"] = {}
    config = execution_config_from_dict(raw)
    k8s_bundle = render_k8s(_manifest(models), config, mad_dir=root, credentials=Credentials({}, env={}))
    assert len(k8s_bundle.jobs) == len(models) and k8s_bundle.skipped == []
    assert [n for n in k8s_bundle.notes if "NOT mounted" in n] == [
        "data huggingface is NOT mounted: data source huggingface is not defined in the data config (known: none)"
        ": its Jobs run without it (their rows say so)"]
    spec = json.loads(yaml.safe_load(k8s_bundle.files["configmap-config.yaml"])["data"][
        next(j.name for j in k8s_bundle.jobs if j.model == "vllm/pyt_vllm_command-a-plus") + ".json"])
    assert spec["data_problem"].startswith("data huggingface is NOT mounted")
    bundle = render_ansible(_manifest(models), config, mad_dir=root, credentials=Credentials({}, env={}))
    assert [n for n in bundle.notes if "NOT mounted" in n] == [
        "data huggingface is NOT mounted: data source huggingface is not defined in the data config (known: none)"
        ": its models run without it"]
    # export-config with a data config that lacks the source: one note, not one per card.
    (root / "empty-data.json").write_text("{}")
    options = ExportOptions(mad_dir=root, data_config="empty-data.json", tools_config="scripts/common/tools.json",
                            data_config_given=True, tools_config_given=False)
    notes = build_execution_config(models, dict(CONTEXT), options).notes
    assert sum("huggingface" in n for n in notes) == 1 and "run without it" in next(n for n in notes if "hugg" in n)
