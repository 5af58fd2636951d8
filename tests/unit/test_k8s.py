"""`madengine-cli generate k8s` (madengine.k8s): schema-valid objects, names, GPUs, secrets, snapshot.

Every object is validated with kubernetes-validate (offline, strict: no unknown fields) against
Kubernetes 1.30, plus the name rules the JSON schemas do not express (DNS-1123 names, label syntax,
ConfigMap keys). The Job's commands are run for real in tests/integration/test_k8s_job.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # the test extra: validation must run, never be skipped
import pytest
import yaml
from tracked_tree import copy_tracked

from madengine import __version__
from madengine.cli.app import app, invoke
from madengine.errors import InvalidInputError
from madengine.execution_config import ExportOptions, build_execution_config, execution_config_from_dict
from madengine.k8s import (
    DEADLINE_GRACE,
    KUBERNETES_VERSION,
    RESULT_BEGIN,
    RESULT_END,
    dns1123_label,
    parse_result_blocks,
    render_k8s,
    unique_labels,
    write_bundle,
)
from madengine.manifest import BuiltImage, Manifest, write_manifest
from madengine.model import Model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "MAD"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
DIGEST = "sha256:" + "5e" * 32
REGISTRY = "127.0.0.1:5000"
PASSWORD = "Xk-distinctive-Registry-Pa55-4471"
TOKEN = "hf_distinctive_token_99123"
CTX_SECRET = "ctx-distinctive-secret-8080"

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
CM_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture
def mad(tmp_path: Path) -> Path:
    """examples/MAD plus distinctive secrets: a registry login, a `cred` model and extra run options."""
    root = tmp_path / "MAD"
    copy_tracked(EXAMPLE, root)
    (root / "credential.json").write_text(json.dumps({
        REGISTRY: {"username": "reguser", "password": PASSWORD},
        "hfcred": {"username": "bob", "token": TOKEN},
    }))
    models = json.loads((root / "models.json").read_text())
    models += [
        {"name": "dummy_cred", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh", "tags": ["cred"],
         "cred": "hfcred", "n_gpus": "2", "timeout": 60},
        {"name": "Dummy.Opts", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh", "tags": ["opts"],
         "additional_docker_run_options": "--shm-size 2g -e EXTRA=1 --cap-add NET_ADMIN -u 1000:1000",
         "timeout": -1},
    ]
    (root / "models.json").write_text(json.dumps(models, indent=2))
    return root


def models_of(mad: Path, *tags: str) -> list[Model]:
    from madengine.discover import discover_models

    return discover_models(mad, list(tags))


def exec_config(mad: Path, models: list[Model], context: dict[str, Any]):
    options = ExportOptions(mad_dir=mad, data_config="data.json", tools_config="scripts/common/tools.json",
                            data_config_given=False, tools_config_given=False)
    result = build_execution_config(models, context, options)
    return execution_config_from_dict(json.loads(json.dumps(result.config)))


def manifest_of(models: list[Model], *, pinned: bool = True, vendor: str = "AMD", registry: str | None = REGISTRY,
                mad_dir: str = "") -> Manifest:
    image = BuiltImage(docker_image="ci-dummy_dummy", dockerfile="docker/dummy.Dockerfile",
                       base_docker="madengine-base:bookworm", docker_sha="sha256:" + "0b" * 32,
                       build_duration=1.5, gpu_vendor=vendor, guest_os="UBUNTU", models=[m.name for m in models])
    if pinned:
        image.registry_image = f"{registry}/ci-dummy_dummy@{DIGEST}"
        image.image_digest = DIGEST
        image.registry = registry
        image.pushed = True
    manifest = Manifest(built_images={"ci-dummy_dummy": image}, registry=registry if pinned else None,
                        context={"gpu_vendor": vendor, "guest_os": "UBUNTU"}, mad_dir=mad_dir,
                        credentials_required=sorted({m.cred for m in models if m.cred}))
    for index, model in enumerate(models):
        key = "ci-dummy_dummy" if index == 0 else f"ci-{model.name.replace('/', '_')}_dummy"
        manifest.built_models[key] = model
        manifest.model_images[key] = "ci-dummy_dummy"
    return manifest


def bundle_for(mad: Path, *tags: str, context: dict[str, Any] | None = None, namespace: str = "madengine",
               pinned: bool = True, vendor: str = "AMD", env: dict[str, str] | None = None):
    from madengine.credentials import Credentials

    context = context or {"gpu_vendor": vendor, "guest_os": "UBUNTU"}
    models = models_of(mad, *tags)
    config = exec_config(mad, models, context)
    manifest = manifest_of(models, pinned=pinned, vendor=vendor)
    return render_k8s(manifest, config, namespace=namespace, mad_dir=mad,
                      credentials=Credentials.load(mad, env=env or {}))


def documents(files: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for name, text in sorted(files.items()):
        if name.endswith(".yaml") and name != "kustomization.yaml":
            docs += [(name, doc) for doc in yaml.safe_load_all(text) if doc is not None]
    return docs


def jobs_of(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["annotations"]["madengine/model-name"]: doc
            for _, doc in documents(files) if doc["kind"] == "Job"}


def check_names(doc: dict[str, Any]) -> None:
    """The rules the JSON schemas leave out."""
    meta = doc["metadata"]
    kind = doc["kind"]
    name = meta["name"]
    if kind in ("Namespace", "Job"):  # a Job's name becomes a label value of its pods
        assert DNS_LABEL.match(name) and len(name) <= 63, name
    else:
        assert DNS_SUBDOMAIN.match(name) and len(name) <= 253, name
    if "namespace" in meta:
        assert DNS_LABEL.match(meta["namespace"])
    mappings = [meta.get("labels") or {}, meta.get("annotations") or {}]
    if kind == "Job":
        template = doc["spec"]["template"]["metadata"]
        mappings += [template.get("labels") or {}, template.get("annotations") or {}]
    for index, mapping in enumerate(mappings):
        for key, value in mapping.items():
            prefix, _, local = key.rpartition("/")
            assert not prefix or DNS_SUBDOMAIN.match(prefix), key
            assert QUALIFIED_NAME.match(local) and len(local) <= 63, key
            assert isinstance(value, str)
            if index % 2 == 0:  # labels
                assert LABEL_VALUE.match(value) and len(value) <= 63, (key, value)
    if kind == "ConfigMap":
        keys = list(doc.get("data") or {}) + list(doc.get("binaryData") or {})
        assert len(keys) == len(set(keys))
        for key in keys:
            assert CM_KEY.match(key) and len(key) <= 253, key
    if kind == "Job":
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"] for v in pod["volumes"]}
        assert len(volumes) == len(pod["volumes"])
        for volume in volumes:
            assert DNS_LABEL.match(volume), volume
        for container in pod["containers"] + pod.get("initContainers", []):
            assert DNS_LABEL.match(container["name"])
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes
            for env in container.get("env", []):
                assert ENV_NAME.match(env["name"]), env["name"]


# ------------------------------------------------------------------------------------ schema + names
def test_every_object_validates_against_the_kubernetes_schema(mad, tmp_path):
    context = {"gpu_vendor": "AMD", "guest_os": "UBUNTU", "tools": [{"name": "time_wrapper"}],
               "docker_env_vars": {"HF_TOKEN": CTX_SECRET, "MODE": "fast"}, "docker_mounts": {"/scratch": "/mnt/s"}}
    bundle = bundle_for(mad, "dummy", "dummy2:dummy_2", "dummy3:dummy_3:batch_size=512", "multi", "data", "cred",
                        "opts", context=context)
    assert len(bundle.jobs) == 7
    docs = documents(bundle.files)
    kinds = [doc["kind"] for _, doc in docs]
    assert kinds.count("Job") == 7 and kinds.count("ConfigMap") == 2 and kinds.count("Namespace") == 1
    for name, doc in docs:
        version = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert version == KUBERNETES_VERSION, name
        check_names(doc)
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "madengine"
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == bundle.instance
        assert doc["metadata"]["labels"]["app.kubernetes.io/component"]
    # The kustomization lists exactly the object files, and they reference ConfigMaps that exist.
    kustomization = yaml.safe_load(bundle.files["kustomization.yaml"])
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(n for n in bundle.files if n.endswith(".yaml")
                                                        and n != "kustomization.yaml")
    config_maps = {doc["metadata"]["name"] for _, doc in docs if doc["kind"] == "ConfigMap"}
    for _, doc in docs:
        if doc["kind"] == "Job":
            refs = {v["configMap"]["name"] for v in doc["spec"]["template"]["spec"]["volumes"] if "configMap" in v}
            assert refs <= config_maps
            assert doc["metadata"]["namespace"] == "madengine"
    out = tmp_path / "k8s"
    write_bundle(bundle, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(bundle.files)
    if shutil.which("kubectl"):  # kustomize built into kubectl, offline
        result = subprocess.run(["kubectl", "kustomize", str(out)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        built = [d for d in yaml.safe_load_all(result.stdout) if d]
        assert len(built) == len(docs)
        for doc in built:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_validation_is_not_vacuous(mad):
    job = next(iter(jobs_of(bundle_for(mad, "dummy").files).values()))
    job["spec"]["template"]["spec"]["containers"][0]["bogus"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name, expected", [
    ("dummy", "dummy"),
    ("dummy-2", "dummy-2"),
    ("dummy2/dummy_2", "dummy2-dummy-2-"),
    ("Dummy", "dummy-"),
    ("__x__", "x-"),
    ("...", ""),
])
def test_dns1123_label_sanitises_deterministically(name, expected):
    label = dns1123_label(name)
    assert DNS_LABEL.match(label) and len(label) <= 63
    assert label == dns1123_label(name)
    if expected == name:
        assert label == name
    else:
        assert label.startswith(expected)
        assert re.search(r"[0-9a-f]{8}$", label)


def test_labels_are_collision_free_and_bounded():
    names = ["a_b", "a-b", "a.b", "A_B", "a/b", "a--b", "a b", "x" * 80, "x" * 81, "x" * 63, "y" * 64 + "_z"]
    labels = unique_labels(names)
    assert len(set(labels.values())) == len(names)
    for label in labels.values():
        assert DNS_LABEL.match(label) and len(label) <= 63, label
    assert labels["a-b"] == "a-b" and labels["x" * 63] == "x" * 63
    prefixed = unique_labels(names, prefix="madengine-")
    assert len(set(prefixed.values())) == len(names)
    assert all(len(v) <= 63 and v.startswith("madengine-") for v in prefixed.values())
    long_sub = dns1123_label("x" * 300, 253, "madengine-cred-")
    assert len(long_sub) <= 253 and DNS_LABEL.match(long_sub)


def test_job_names_in_a_bundle(mad):
    bundle = bundle_for(mad, "dummy", "dummy2:dummy_2", "opts")
    names = {job.model: job.name for job in bundle.jobs}
    assert names["dummy"] == "madengine-dummy"
    assert names["dummy2/dummy_2"].startswith("madengine-dummy2-dummy-2-")
    assert names["Dummy.Opts"].startswith("madengine-dummy-opts-")
    jobs = jobs_of(bundle.files)
    assert jobs["dummy2/dummy_2"]["metadata"]["labels"]["madengine/model"].startswith("dummy2-dummy-2-")
    assert {job.file_name for job in bundle.jobs} <= set(bundle.files)


def test_invalid_namespace_is_rejected(mad):
    with pytest.raises(InvalidInputError, match="not a valid Kubernetes namespace"):
        bundle_for(mad, "dummy", namespace="Bad_Namespace")


# ------------------------------------------------------------------------------------------------ GPUs
@pytest.mark.parametrize("vendor, resource", [
    ("AMD", "amd.com/gpu"), ("NVIDIA", "nvidia.com/gpu"), ("INTEL", "gpu.intel.com/i915"), ("CPU", None),
])
def test_gpu_limits_per_vendor(mad, vendor, resource):
    bundle = bundle_for(mad, "dummy", "cred", vendor=vendor)
    jobs = jobs_of(bundle.files)
    for model, count in (("dummy", 1), ("dummy_cred", 2)):
        container = jobs[model]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MAD_GPU_VENDOR"] == vendor
        if resource is None:
            assert "resources" not in container
            assert env["MAD_RUNTIME_NGPUS"] == "0"
        else:
            assert container["resources"] == {"limits": {resource: count}}
            assert env["MAD_RUNTIME_NGPUS"] == str(count)
        for other in ("amd.com/gpu", "nvidia.com/gpu", "gpu.intel.com/i915"):
            if other != resource:
                assert other not in json.dumps(container.get("resources", {}))


def test_all_gpus_and_zero_gpus(mad):
    models = json.loads((mad / "models.json").read_text())
    models += [{"name": "every_gpu", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh", "n_gpus": -1},
               {"name": "no_gpu", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh", "n_gpus": 0}]
    (mad / "models.json").write_text(json.dumps(models))
    bundle = bundle_for(mad, "every_gpu", "no_gpu",
                        context={"gpu_vendor": "NVIDIA", "guest_os": "UBUNTU", "gpu_count": 8})
    jobs = jobs_of(bundle.files)
    assert jobs["every_gpu"]["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "limits": {"nvidia.com/gpu": 8}}
    assert "resources" not in jobs["no_gpu"]["spec"]["template"]["spec"]["containers"][0]
    assert any("n_gpus -1" in note for note in bundle.notes)


# ------------------------------------------------------------------------------------- Job contents
def test_job_spec_essentials(mad):
    bundle = bundle_for(mad, "dummy", "opts")
    jobs = jobs_of(bundle.files)
    dummy = jobs["dummy"]
    assert dummy["spec"]["backoffLimit"] == 0
    assert dummy["spec"]["activeDeadlineSeconds"] == 300 + DEADLINE_GRACE
    pod = dummy["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["image"] == f"{REGISTRY}/ci-dummy_dummy@{DIGEST}"
    assert pod["initContainers"][0]["image"] == container["image"]
    script = container["args"][0]
    # The same in-container line as a local run (collection's _runspec.script_command).
    assert "cmd='cd /myworkspace/run_directory && bash run.sh; rc=$?; exit $rc'" in script
    assert "timeout --kill-after=30 300" in script
    assert RESULT_BEGIN in script and RESULT_END in script
    assert dummy["spec"]["template"]["metadata"]["labels"] == dummy["metadata"]["labels"]
    assert dummy["metadata"]["labels"]["madengine/model"] == "dummy"
    assert pod["imagePullSecrets"] == [{"name": "madengine-registry"}]  # credential.json has a login
    # timeout -1 on the model and none in the context: no limit at all.
    opts = jobs["Dummy.Opts"]
    assert "activeDeadlineSeconds" not in opts["spec"]
    container = opts["spec"]["template"]["spec"]["containers"][0]
    assert "timeout --kill-after" not in container["args"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EXTRA"] == "1"
    assert container["securityContext"] == {"capabilities": {"add": ["SYS_PTRACE", "NET_ADMIN"]},
                                            "seccompProfile": {"type": "Unconfined"},
                                            "runAsUser": 1000, "runAsGroup": 1000}
    shm = next(v for v in opts["spec"]["template"]["spec"]["volumes"] if v["name"] == "dshm")
    assert shm == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}


def test_unpinned_image_uses_the_local_tag_with_a_note(mad):
    bundle = bundle_for(mad, "dummy", pinned=False)
    container = jobs_of(bundle.files)["dummy"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ci-dummy_dummy"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert any("not pinned by a registry digest" in note for note in bundle.notes)


def test_execution_config_timeout_overrides(mad):
    models = models_of(mad, "dummy")
    config = exec_config(mad, models, {"gpu_vendor": "AMD", "guest_os": "UBUNTU"})
    config.run_options["timeout"] = 45
    bundle = render_k8s(manifest_of(models), config, mad_dir=mad)
    job = jobs_of(bundle.files)["dummy"]
    assert job["spec"]["activeDeadlineSeconds"] == 45 + DEADLINE_GRACE
    assert "timeout --kill-after=30 45" in job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    config.run_options["timeout"] = 0  # no limit
    job = jobs_of(render_k8s(manifest_of(models), config, mad_dir=mad).files)["dummy"]
    assert "activeDeadlineSeconds" not in job["spec"]


def test_configmaps_hold_manifest_config_and_scripts(mad):
    bundle = bundle_for(mad, "dummy", "dummy2:dummy_2", "data",
                        context={"gpu_vendor": "AMD", "guest_os": "UBUNTU", "tools": [{"name": "time_wrapper"}]})
    docs = {doc["metadata"]["name"]: doc for _, doc in documents(bundle.files) if doc["kind"] == "ConfigMap"}
    config = docs["madengine-config"]["data"]
    # Only what the Jobs read is in the ConfigMap; the manifest and execution config are bundle files.
    assert "build_manifest.json" not in config and "execution_config.json" not in config
    assert json.loads(bundle.files["build_manifest.json"])["built_images"]["ci-dummy_dummy"]["image_digest"] == DIGEST
    assert json.loads(bundle.files["execution_config.json"])["execution_config_version"] == 1
    assert "def rows_for_run" in config["_perf.py"] and "rows_for_run" in config["madengine_result.py"]
    for job in bundle.jobs:
        spec = json.loads(config[f"{job.name}.json"])
        assert spec["model"]["name"] == job.model and spec["timeout"] == 300
    scripts = docs["madengine-scripts"]["data"]
    assert scripts["scripts.dummy.run.sh"] == (mad / "scripts/dummy/run.sh").read_text()
    assert scripts["scripts.dummy2.run.sh"] == (mad / "scripts/dummy2/run.sh").read_text()
    assert "scripts.common.pre_scripts.time_wrapper_start.sh" in scripts
    assert "scripts.common.post_scripts.time_wrapper_stop.sh" in scripts
    data_job = jobs_of(bundle.files)["dummy_data"]
    host = [v for v in data_job["spec"]["template"]["spec"]["volumes"] if "hostPath" in v]
    assert host == [{"name": "host-0", "hostPath": {"path": str(mad / "data/tiny"), "type": ""}}]
    mounts = data_job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "host-0", "mountPath": "/data/tiny", "readOnly": True} in mounts


def test_init_script_rebuilds_the_tree(mad, tmp_path):
    """Run each Job's initContainer script with sh against a fake ConfigMap mount (paths remapped)."""
    bundle = bundle_for(mad, "dummy", "dummy2:dummy_2", "dummy3:dummy_3",
                        context={"gpu_vendor": "AMD", "guest_os": "UBUNTU", "tools": [{"name": "time_wrapper"}]})
    scripts = next(doc for _, doc in documents(bundle.files) if doc["metadata"]["name"] == "madengine-scripts")
    files = tmp_path / "files"
    files.mkdir()
    for key, text in scripts["data"].items():
        (files / key).write_text(text)
    for model, job in jobs_of(bundle.files).items():
        workspace = tmp_path / f"ws-{job['metadata']['name']}"
        init = job["spec"]["template"]["spec"]["initContainers"][0]
        assert init["command"] == ["sh", "-c"]
        script = init["args"][0].replace("/madengine/files", str(files)).replace("/myworkspace", str(workspace))
        result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        folder = "scripts/" + (model.split("/")[0] if "/" in model else model)
        for source in sorted((mad / folder).rglob("*")):
            if source.is_file():
                rel = source.relative_to(mad / folder)
                assert (workspace / folder / rel).read_bytes() == source.read_bytes()
                assert (workspace / "run_directory" / rel).read_bytes() == source.read_bytes()
        assert os.access(workspace / "scripts/common/pre_scripts/time_wrapper_start.sh", os.R_OK)
        assert os.access(workspace / folder / "run.sh", os.X_OK) == os.access(mad / folder / "run.sh", os.X_OK)


# ---------------------------------------------------------------------------------------- secrets
def test_no_credential_values_anywhere(mad, tmp_path):
    context = {"gpu_vendor": "AMD", "guest_os": "UBUNTU",
               "docker_env_vars": {"HF_TOKEN": CTX_SECRET, "PLAIN": "visible", "COPIED": PASSWORD},
               "docker_build_arg": {"MY_PASSWORD": CTX_SECRET}}
    env = {"MAD_REGISTRY_USER": "envuser", "MAD_REGISTRY_PASSWORD": "env-distinctive-pw-5150",
           "MAD_SECRETS_HF": "mad-secrets-distinctive-6060"}
    # A script that holds a credential value, and one that is nothing but it.
    (mad / "scripts/dummy/notes.txt").write_text(f"token={TOKEN}\nsecond line\n")
    (mad / "scripts/dummy/only.txt").write_text(PASSWORD)
    bundle = bundle_for(mad, "dummy", "cred", context=context, env=env)
    out = tmp_path / "k8s"
    write_bundle(bundle, out)
    everything = "\n".join(p.read_text() for p in out.iterdir())
    for secret in (PASSWORD, TOKEN, CTX_SECRET, "env-distinctive-pw-5150", "mad-secrets-distinctive-6060",
                   "demo-not-a-secret"):
        assert secret not in everything, secret
    jobs = jobs_of(bundle.files)
    # Names only: the pull secret, the model's cred secret and the masked env var's secret.
    pod = jobs["dummy_cred"]["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "madengine-registry"}]
    container = pod["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "madengine-cred-hfcred"}}]
    env_entries = {e["name"]: e for e in container["env"]}
    assert env_entries["HF_TOKEN"] == {"name": "HF_TOKEN",
                                       "valueFrom": {"secretKeyRef": {"name": "madengine-env", "key": "HF_TOKEN"}}}
    assert env_entries["PLAIN"]["value"] == "visible"
    assert env_entries["COPIED"]["valueFrom"] == {"secretKeyRef": {"name": "madengine-env", "key": "COPIED"}}
    for _, doc in documents(bundle.files):  # masking kept every file valid
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        if doc["metadata"]["name"] == "madengine-scripts":
            assert doc["data"]["scripts.dummy.notes.txt"] == "token=******\nsecond line\n"
            assert doc["data"]["scripts.dummy.only.txt"] == "******"
    assert "envFrom" not in jobs["dummy"]["spec"]["template"]["spec"]["containers"][0]
    assert set(bundle.secrets) == {"madengine-registry", "madengine-cred-hfcred", "madengine-env"}
    assert bundle.secrets["madengine-cred-hfcred"]["keys"] == ["hfcred_USERNAME", "hfcred_TOKEN"]
    readme = bundle.files["README.md"]
    assert "kubectl -n madengine create secret docker-registry madengine-registry" in readme
    assert "--from-literal=hfcred_TOKEN=" in readme


def test_registry_login_from_credential_json_gives_a_pull_secret(mad):
    bundle = bundle_for(mad, "dummy")
    assert bundle.pull_secret == "madengine-registry"  # credential.json has a login for 127.0.0.1:5000
    (mad / "credential.json").write_text("{}")
    assert bundle_for(mad, "dummy").pull_secret is None


# ---------------------------------------------------------------------------------------- snapshot
def _snapshot_inputs() -> tuple[Manifest, Any]:
    model = Model(name="dummy2/dummy_2", tags=["dummies", "dummy2"], dockerfile="docker/dummy",
                  scripts="scripts/dummy2/run.sh", n_gpus=1, timeout=300, owner="mad.support@example.com",
                  source="dir", dir="dummy2")
    manifest = manifest_of([model])
    config = execution_config_from_dict({
        "execution_config_version": 1, "madengine_version": "snapshot", "mad_dir": "",
        "models": [model.to_dict()], "context": {"gpu_vendor": "AMD", "guest_os": "UBUNTU"},
        "run_options": {"timeout": -1, "keep_alive": False, "data": {}, "tools": {}},
        "credentials_required": [], "resources": [],
    })
    return manifest, config


def test_job_snapshot():
    """One rendered Job, byte for byte (no timestamps). UPDATE_SNAPSHOTS=1 rewrites it after a deliberate
    change; review the diff."""
    from madengine.credentials import Credentials

    manifest, config = _snapshot_inputs()
    bundle = render_k8s(manifest, config, namespace="madengine", mad_dir=EXAMPLE,
                        credentials=Credentials({}, env={}))
    again = render_k8s(manifest, config, namespace="madengine", mad_dir=EXAMPLE, credentials=Credentials({}, env={}))
    assert again.files == bundle.files  # deterministic
    job = bundle.jobs[0]
    text = bundle.files[job.file_name].replace(f"(madengine {__version__})", "(madengine VERSION)")
    snapshot = SNAPSHOTS / "k8s_job_dummy2.yaml"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(text)
    assert snapshot.is_file(), "run with UPDATE_SNAPSHOTS=1 once to create the snapshot"
    assert text == snapshot.read_text()


# -------------------------------------------------------------------------------------- selection
def test_models_missing_from_the_execution_config_or_unrunnable_are_skipped(mad):
    models = models_of(mad, "dummy", "dummy2:dummy_2", "multi")
    config = exec_config(mad, models[:2], {"gpu_vendor": "AMD", "guest_os": "UBUNTU"})
    shutil.rmtree(mad / "scripts/dummy2")
    bundle = render_k8s(manifest_of(models), config, mad_dir=mad)
    assert [job.model for job in bundle.jobs] == ["dummy"]
    reasons = {s["model"]: s["reason"] for s in bundle.skipped}
    assert reasons["dummy_multi"] == "not in the execution config"
    assert "scripts/dummy2 not found" in reasons["dummy2/dummy_2"]
    assert "dummy2/dummy_2" in bundle.files["README.md"]


def test_nothing_to_run_is_exit_4(mad):
    models = models_of(mad, "dummy")
    other = models_of(mad, "multi")
    with pytest.raises(InvalidInputError, match="No model of the execution config is in the build manifest"):
        render_k8s(manifest_of(models), exec_config(mad, other, {"gpu_vendor": "AMD", "guest_os": "UBUNTU"}),
                   mad_dir=mad)


def test_oversized_configmap_is_exit_4(mad):
    (mad / "scripts/dummy/weights.bin").write_bytes(os.urandom(900_000))
    with pytest.raises(InvalidInputError, match="1 MiB"):
        bundle_for(mad, "dummy")


def test_binary_files_go_to_binary_data(mad):
    (mad / "scripts/dummy/blob.bin").write_bytes(b"\x00\x01\x02")
    bundle = bundle_for(mad, "dummy")
    scripts = next(doc for _, doc in documents(bundle.files) if doc["metadata"]["name"] == "madengine-scripts")
    assert scripts["binaryData"] == {"scripts.dummy.blob.bin": "AAEC"}


# ------------------------------------------------------------------------------------------ results
def test_parse_result_blocks():
    log = "\n".join([
        "model output", "performance: 12 x", RESULT_BEGIN, '{"model": "a", "status": "SUCCESS"}',
        '{"model": "a_2", "status": "FAILURE"}', "not json", RESULT_END, "trailing",
        RESULT_BEGIN, '{"model": "b", "status": "UNPARSED"}', RESULT_END])
    assert [r["model"] for r in parse_result_blocks(log)] == ["a", "a_2", "b"]
    assert parse_result_blocks("") == []


# ---------------------------------------------------------------------------------------------- CLI
def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = invoke(app, list(args), "madengine-cli")
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_generate_k8s(capsys, mad, tmp_path, monkeypatch):
    monkeypatch.delenv("MAD_DIR", raising=False)
    monkeypatch.delenv("MODEL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    models = models_of(mad, "dummy", "dummy2:dummy_2")
    write_manifest(tmp_path / "build_manifest.json", manifest_of(models, mad_dir=str(mad)))
    code, _, err = cli(capsys, "export-config", "--mad-dir", str(mad), "--tags", "dummy,dummy2:dummy_2",
                       "-c", '{"gpu_vendor": "NVIDIA", "guest_os": "UBUNTU"}')
    assert code == 0, err
    code, out, err = cli(capsys, "generate", "k8s", "--namespace", "bench")
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "k8s").iterdir())
    assert "kustomization.yaml" in files and "README.md" in files and "job-madengine-dummy.yaml" in files
    assert "madengine-dummy" in out
    assert "kubectl apply -k" in err
    job = yaml.safe_load((tmp_path / "k8s/job-madengine-dummy.yaml").read_text())
    assert job["metadata"]["namespace"] == "bench"
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    readme = (tmp_path / "k8s/README.md").read_text()
    assert "kubectl apply -k" in readme and "kubectl -n bench logs" in readme


def test_cli_missing_inputs_exit_4(capsys, mad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "generate", "k8s", "--mad-dir", str(mad))
    assert code == 4 and "Build manifest not found" in err and "build" in err
    models = models_of(mad, "dummy")
    write_manifest(tmp_path / "build_manifest.json", manifest_of(models))
    code, _, err = cli(capsys, "generate", "k8s", "--mad-dir", str(mad), "--execution-config", "nope.json")
    assert code == 4 and "Execution config not found" in err and "nope.json" in err and "export-config" in err
    (tmp_path / "execution_config.json").write_text("{broken")
    code, _, err = cli(capsys, "generate", "k8s", "--mad-dir", str(mad))
    assert code == 4 and "malformed JSON" in err
    assert not (tmp_path / "k8s").exists()
    (tmp_path / "execution_config.json").write_text(json.dumps(
        exec_config(mad, models, {"gpu_vendor": "AMD", "guest_os": "UBUNTU"}).raw))
    code, _, err = cli(capsys, "generate", "k8s", "--mad-dir", str(mad), "-n", "Not_Valid")
    assert code == 4 and "namespace" in err


def test_cli_from_a_manifest_alone(capsys, mad, tmp_path, monkeypatch):
    """The guide's `build` then `generate k8s --namespace production`: no execution config needed."""
    monkeypatch.chdir(tmp_path)
    models = models_of(mad, "dummy")
    manifest = manifest_of(models, mad_dir=str(mad))
    manifest.context = {"gpu_vendor": "AMD", "guest_os": "UBUNTU", "docker_env_vars": {"OMP_NUM_THREADS": "4"},
                        "gpu_architecture": "gfx942"}
    write_manifest(tmp_path / "build_manifest.json", manifest)
    code, out, err = cli(capsys, "generate", "k8s", "--namespace", "production")
    assert code == 0, err
    job = yaml.safe_load((tmp_path / "k8s/job-madengine-dummy.yaml").read_text())
    assert job["metadata"]["namespace"] == "production"
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OMP_NUM_THREADS"] == "4"  # the manifest's context stands in for the execution config's
    assert container["resources"] == {"limits": {"amd.com/gpu": 1}}


def test_skip_gpu_arch_follows_the_context_architecture(mad):
    models = json.loads((mad / "models.json").read_text())
    models.append({"name": "not_on_mi200", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh",
                   "skip_gpu_arch": ["gfx90a"]})
    (mad / "models.json").write_text(json.dumps(models))
    context = {"gpu_vendor": "AMD", "guest_os": "UBUNTU", "gpu_architecture": "gfx90a"}
    bundle = bundle_for(mad, "dummy", "not_on_mi200", context=context)
    assert [job.model for job in bundle.jobs] == ["dummy"]
    assert bundle.skipped == [{"model": "not_on_mi200",
                               "reason": "skipped: skip_gpu_arch lists gfx90a (the context's gpu_architecture)"}]
    selected = models_of(mad, "dummy", "not_on_mi200")
    config = exec_config(mad, selected, context)
    config.run_options["disable_skip_gpu_arch"] = True
    assert len(render_k8s(manifest_of(selected), config, mad_dir=mad).jobs) == 2


def test_write_bundle_removes_stale_generated_jobs_only(mad, tmp_path):
    out = tmp_path / "k8s"
    write_bundle(bundle_for(mad, "dummy", "multi"), out)
    (out / "job-mine.yaml").write_text("# my own Job\napiVersion: batch/v1\n")
    written = write_bundle(bundle_for(mad, "dummy"), out)
    names = sorted(p.name for p in out.iterdir())
    assert "job-madengine-dummy.yaml" in names and "job-mine.yaml" in names
    assert not any(n.startswith("job-madengine-dummy-multi") for n in names)
    assert sorted(p.name for p in written) == sorted(n for n in names if n != "job-mine.yaml")
