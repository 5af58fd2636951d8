"""The mad.engine collection against the real engine and registry (tests/infra/up.sh).

Plain `ansible-doc` and `ansible-playbook` (no madengine CLI in between), with
ANSIBLE_COLLECTIONS_PATH=<repo>/collections, a local connection and the running Python as interpreter:
- every module's documentation renders, and the action group lists exactly the modules;
- `playbooks/run_models.yml` runs a manifest built by `madengine-cli build` from a copy of examples/MAD
  (without and with a registry) and its fetched results dir holds rows and logs;
- the rows equal those of `madengine-cli run --manifest-file` for the same models (the identity test);
- `mad.engine.image` reports `changed` honestly, in check mode too.

Model names carry a random prefix, so images, containers and registry repositories are unique; all of
them, and the work dirs, are removed afterwards.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tracked_tree import copy_tracked

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "collections" / "ansible_collections" / "mad" / "engine"
REGISTRY = "127.0.0.1:5000"
CTX = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'
TAGS = ("dummy", "multi", "data", "failing")
# Columns that may differ between two runs of the same model (performance is a timing: checked as a number).
VARYING = {"host", "run_id", "started_at", "test_duration", "machine_name", "performance"}
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


# ------------------------------------------------------------------------------------------- helpers
def ansible_env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), LC_ALL="C.UTF-8", LANG="C.UTF-8",
                PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]),
                ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="False")


def ansible_bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def playbook(vars_file: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", "inventories/localhost.yml", "playbooks/run_models.yml",
         "-e", f"@{vars_file}", "-e", f"ansible_python_interpreter={sys.executable}", *extra],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=timeout, check=False)


def madengine_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ansible_bin("madengine-cli"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False, env=dict(os.environ, LC_ALL="C.UTF-8", COLUMNS="200"))


def fetched_rows(host_dir: Path) -> dict[str, dict[str, str]]:
    rows = {}
    for path in sorted(host_dir.glob("*.rows.json")):
        for row in json.loads(path.read_text()):
            rows[row["model"]] = row
    return rows


def _delete_repo(repo: str) -> None:
    accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
    with contextlib.suppress(OSError, ValueError):
        with _HTTP.open(f"http://{REGISTRY}/v2/{repo}/tags/list", timeout=10) as resp:
            tags = json.loads(resp.read()).get("tags") or []
        for tag in tags:
            req = urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/manifests/{tag}", method="HEAD",
                                         headers={"Accept": accept})
            with _HTTP.open(req, timeout=10) as resp:
                digest = resp.headers.get("Docker-Content-Digest")
            if digest:
                with contextlib.suppress(urllib.error.HTTPError):
                    _HTTP.open(urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/manifests/{digest}",
                                                      method="DELETE"), timeout=10).close()


@dataclass
class Made:
    """What one build made: the MAD copy, its manifest, and what to remove afterwards."""

    uid: str
    root: Path
    images: list[str] = field(default_factory=list)
    repos: list[str] = field(default_factory=list)

    @property
    def manifest_path(self) -> Path:
        return self.root / "build_manifest.json"

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text())


def _copy_mad(root: Path, uid: str) -> Path:
    mad = root / "MAD"
    copy_tracked(REPO / "examples" / "MAD", mad)
    models = json.loads((mad / "models.json").read_text())
    for entry in models:
        entry["name"] = f"{uid}_{entry['name']}"
    (mad / "models.json").write_text(json.dumps(models, indent=1))
    return mad


@contextlib.contextmanager
def built(docker_client, tmp: Path, *build_args: str) -> Iterator[Made]:
    """Build the example models (with a unique prefix) in a copy of examples/MAD; clean up afterwards."""
    uid = f"mt{secrets.token_hex(4)}"
    made = Made(uid, _copy_mad(tmp, uid))
    try:
        done = madengine_cli("build", *(a for t in TAGS for a in ("--tags", t)), "-c", CTX, *build_args,
                             cwd=made.root)
        assert done.returncode == 0, done.stdout + done.stderr
        for image in made.manifest()["built_images"].values():
            made.images += [ref for ref in (image.get("registry_image"), image.get("registry_tag"),
                                            image["docker_image"]) if ref]
            if image.get("registry_image"):
                made.repos.append(image["registry_image"].split("@")[0].split("/", 1)[1])
        yield made
    finally:
        import docker.errors

        for container in docker_client.containers.list(all=True):
            if uid in container.name:
                container.remove(force=True)
        for ref in made.images:
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(ref, force=True)
        for repo in made.repos:
            _delete_repo(repo)


def run_playbook(made: Made, tmp: Path, run_id: str, **extra_vars: Any) -> tuple[subprocess.CompletedProcess[str],
                                                                                  Path]:
    results = tmp / "results"
    variables = {"run_models_run_id": run_id, "run_models_results_dir": str(results),
                 "run_models_workdir": str(tmp / "work"), **extra_vars}
    variables.setdefault("run_models_manifest_file", str(made.manifest_path))
    tmp.mkdir(parents=True, exist_ok=True)
    vars_file = tmp / "vars.yml"
    vars_file.write_text(yaml.safe_dump(variables))
    return playbook(vars_file), results / "localhost"


def check_results(made: Made, host_dir: Path, done: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    """The fetched results dir: a rows.json, a log and a sysenv per model; rows with perf.csv's columns."""
    from ansible_collections.mad.engine.plugins.module_utils._perf import PERF_COLUMNS

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "failed=0" in done.stdout and "unreachable=0" in done.stdout
    rows = fetched_rows(host_dir)
    uid = made.uid
    assert {r["status"] for n, r in rows.items() if n != f"{uid}_dummy_fail"} == {"SUCCESS"}, rows
    assert set(rows) == {f"{uid}_dummy", f"{uid}_dummy_data", f"{uid}_dummy_fail",
                         f"{uid}_dummy_multi_dummy_multi_sort16", f"{uid}_dummy_multi_dummy_multi_sort256"}
    assert (rows[f"{uid}_dummy_fail"]["status"], rows[f"{uid}_dummy_fail"]["reason"]) == ("FAILURE",
                                                                                          "non-zero exit 1")
    for name, row in rows.items():
        columns = list(row)
        assert columns[:len(PERF_COLUMNS)] == list(PERF_COLUMNS), name
        assert row["host"] == "localhost"
        if "multi" not in name:
            assert columns == list(PERF_COLUMNS)
    assert rows[f"{uid}_dummy_data"]["dataname"] == "tiny"
    for model in ("dummy", "dummy_data", "dummy_fail", "dummy_multi"):
        assert (host_dir / f"{uid}_{model}.rows.json").is_file()
        assert (host_dir / f"{uid}_{model}.sysenv.json").is_file()
        log = (host_dir / f"{uid}_{model}_dummy.run.live.log").read_text()
        assert log.startswith("$ docker run")
    assert "performance:" in (host_dir / f"{uid}_dummy_dummy.run.live.log").read_text()
    return rows


# ------------------------------------------------------------------------------------------- docs
@pytest.mark.parametrize("module", ["host_facts", "image", "run_model", "sync"])
def test_ansible_doc_renders(module: str) -> None:
    done = subprocess.run([ansible_bin("ansible-doc"), f"mad.engine.{module}"], env=ansible_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr
    options = {
        "host_facts": ["gpu_vendor", "docker_host", "api_timeout"],
        "image": ["name", "digest", "registry_username", "registry_password", "load_from", "docker_host"],
        "run_model": ["request", "cred_env", "docker_host", "api_timeout"],
        "sync": ["mode", "src", "dest", "paths", "python"],
    }[module]
    for option in options:
        assert option in done.stdout, option


def test_role_and_filters_docs_render() -> None:
    for args in (["-t", "role", "mad.engine.run_models"], ["-t", "filter", "mad.engine.run_plan"],
                 ["-t", "filter", "mad.engine.pull_errors"], ["-t", "filter", "mad.engine.pinned_reference"]):
        done = subprocess.run([ansible_bin("ansible-doc"), *args], env=ansible_env(), capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0 and "ERROR" not in done.stderr, (args, done.stderr)
        if args[1] == "role":
            assert "run_models_assignments" in done.stdout and "run_models_registry_password" in done.stdout


def test_action_group_lists_exactly_the_modules() -> None:
    runtime = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())
    modules = sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
    assert sorted(runtime["action_groups"]["madengine"]) == modules
    assert runtime["requires_ansible"] == ">=2.16.0"


def test_galaxy_version_is_the_package_version() -> None:
    import madengine

    assert yaml.safe_load((COLLECTION / "galaxy.yml").read_text())["version"] == madengine.__version__


def test_secret_options_are_no_log() -> None:
    source = (COLLECTION / "plugins/modules/image.py").read_text()
    assert 'registry_password=dict(type="str", no_log=True)' in source
    assert 'cred_env=dict(type="dict", default={}, no_log=True)' in (COLLECTION / "plugins/modules/run_model.py"
                                                                     ).read_text()
    tasks = yaml.safe_load((COLLECTION / "roles/run_models/tasks/main.yml").read_text())
    block = next(t for t in tasks if "block" in t)["block"]
    for task in block:
        if "run_models_registry_password" in json.dumps(task):
            assert task.get("no_log") is True, task["name"]


# ------------------------------------------------------------------------------------------- playbook
@pytest.mark.docker
def test_playbook_local_manifest_rows_and_identity(docker_client, base_image, tmp_path: Path) -> None:
    """The plain playbook on a manifest without registry; then the same models through the local CLI."""
    with built(docker_client, tmp_path / "b") as made:
        done, host_dir = run_playbook(made, tmp_path / "p", "ident-remote")
        remote = check_results(made, host_dir, done)
        # Only the needed subtree reached the host: the models' folders, scripts/common, data.json, local data.
        mad_on_host = tmp_path / "p" / "work" / "mad"
        assert (mad_on_host / "scripts" / "common" / "tools.json").is_file()
        assert (mad_on_host / "data.json").is_file() and (mad_on_host / "data" / "tiny").is_dir()
        assert sorted(p.name for p in (mad_on_host / "scripts").iterdir() if p.is_dir()) == [
            "common", "dummy", "dummy_data", "dummy_fail", "dummy_multi"]
        assert not (mad_on_host / "docker").exists() and not (mad_on_host / "models.json").exists()
        assert not [c for c in docker_client.containers.list(all=True) if made.uid in c.name]

        local_out = tmp_path / "local"
        local_out.mkdir()
        cli = madengine_cli("run", "--manifest-file", str(made.manifest_path), "--output",
                            str(local_out / "perf.csv"), cwd=made.root)
        assert cli.returncode in (0, 3), cli.stdout + cli.stderr  # dummy_fail fails: exit 3
        with open(local_out / "perf.csv", newline="") as handle:
            local = {row["model"]: row for row in csv.DictReader(handle)}
    assert set(local) == set(remote)
    for name, row in remote.items():
        mine = local[name]
        assert {k: v for k, v in row.items() if k not in VARYING} == {
            k: mine[k] for k in row if k not in VARYING}, name
        assert not any(v for k, v in mine.items() if k not in row), name  # perf.csv's extra columns: empty here
        assert row["run_id"] == "ident-remote" and row["host"] == "localhost"
        if row["status"] == "SUCCESS":
            assert float(row["performance"]) > 0 and float(mine["performance"]) > 0


@pytest.mark.docker
def test_playbook_with_registry_pulls_by_digest(docker_client, base_image, registry, tmp_path: Path) -> None:
    """A manifest built with --registry, given as content: the host pulls by digest, then runs."""
    with built(docker_client, tmp_path / "b", "--registry", registry) as made:
        manifest = made.manifest()
        images = list(manifest["built_images"].values())  # one tag (and registry image) per card
        pinned = {image["registry_image"] for image in images}
        assert all("@sha256:" in ref for ref in pinned) and all(image["image_digest"] for image in images)
        # Drop the registry references so the host has to pull (the local build tags keep the layers).
        for image in images:
            for ref in (image["registry_image"], image.get("registry_tag")):
                with contextlib.suppress(Exception):
                    docker_client.images.remove(ref)
            assert image["registry_image"] not in docker_client.images.get(image["docker_image"]).attrs["RepoDigests"]
        done, host_dir = run_playbook(made, tmp_path / "p", "reg1", run_models_manifest=manifest)
        rows = check_results(made, host_dir, done)
        assert "changed: [localhost] => (item=(censored due to no_log))" in done.stdout  # it pulled
        assert {row["docker_image"] for row in rows.values()} <= pinned  # each card's own image, by digest
        assert {row["image_digest"] for row in rows.values()} <= {image["image_digest"] for image in images}
        assert all(docker_client.images.get(row["docker_image"]).attrs["RepoDigests"] for row in rows.values())


@pytest.mark.docker
def test_pull_failure_is_a_failure_row_and_the_host_goes_on(docker_client, base_image, registry,
                                                            tmp_path: Path) -> None:
    with built(docker_client, tmp_path / "b") as made:
        manifest = made.manifest()
        for image in manifest["built_images"].values():
            image.update(registry_image=f"{registry}/{made.uid}-absent@sha256:" + "0" * 64,
                         image_digest="sha256:" + "0" * 64)
        done, host_dir = run_playbook(made, tmp_path / "p", "pullfail", run_models_manifest=manifest,
                                      run_models_models=[k for k in manifest["built_models"] if "dummy_dummy" in k])
        assert done.returncode == 0, done.stdout[-3000:]
        [row] = fetched_rows(host_dir).values()
        assert row["status"] == "FAILURE" and row["reason"].startswith("pull failed: "), row


# ------------------------------------------------------------------------------------------- image
@pytest.mark.docker
def test_image_changed_is_honest_in_check_and_normal_mode(docker_client, base_image, registry) -> None:
    repo = f"{registry}/mt{secrets.token_hex(4)}/img"
    docker_client.images.get(base_image).tag(repo, "1")
    try:
        docker_client.images.push(repo, "1")
        digest = docker_client.images.get_registry_data(f"{repo}:1").id
        pinned = f"{repo}@{digest}"
        docker_client.images.remove(f"{repo}:1")

        def image(*extra: str) -> dict[str, Any]:
            done = subprocess.run(
                [ansible_bin("ansible"), "localhost", "-c", "local", "-i", "localhost,", "-m", "mad.engine.image",
                 "-a", json.dumps({"name": pinned, "digest": digest}), "-e",
                 f"ansible_python_interpreter={sys.executable}", "--one-line", *extra],
                env=ansible_env(), capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            return json.loads(done.stdout.split(" => ", 1)[1])  # "localhost | CHANGED => {...}"

        def present() -> bool:
            return any(pinned in (img.attrs.get("RepoDigests") or []) for img in docker_client.images.list())

        assert not present()
        assert image("--check")["changed"] is True
        assert not present()  # check mode pulled nothing
        first = image()
        assert first["changed"] is True and first["digest"] == digest and present()
        assert image()["changed"] is False
        assert image("--check")["changed"] is False
    finally:
        import docker.errors

        for ref in (f"{repo}:1", repo):
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(ref, force=True)
        with contextlib.suppress(Exception):
            docker_client.images.remove(pinned, force=True)
        _delete_repo(repo.split("/", 1)[1])
