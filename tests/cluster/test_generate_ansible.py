"""The bundle of `madengine-cli generate ansible`, run with plain `ansible-playbook` on the test cluster.

A copy of examples/MAD (model names with a random prefix) is built and pushed to the registry on
127.0.0.1:5000, exported with `export-config` and turned into a bundle with `generate ansible
--inventory <the cluster's inventory>`. The bundle then passes `ansible-playbook --syntax-check` and
`ansible-lint` (production profile), and runs from its own folder (so its ansible.cfg applies: host-key
checking on, pipelining) against the 3 nodes: every host × model has a SUCCESS row in the fetched
`runs/<run_id>/results/<host>/*.rows.json`.

Afterwards the pulled images are removed from every node's engine (by the references this test made, so
images of tests running at the same time are left alone), and so are the local images, the registry
repository, the nodes' work dirs of this run and the bundle's ssh control masters.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
CTX = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'
TAGS = ("dummy", "data", "multi")
MULTI_ROWS = ("dummy_multi_dummy_multi_sort16", "dummy_multi_dummy_multi_sort256")
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def plain_env() -> dict[str, str]:
    """The environment a user would have: the venv's bin on PATH, a UTF-8 locale, the collection's source
    tree on the collections path, and no ANSIBLE_* setting that would override the bundle's ansible.cfg."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MAD_REGISTRY"))}
    return dict(env, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]),
                LC_ALL="C.UTF-8", LANG="C.UTF-8", ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"),
                ANSIBLE_NOCOLOR="1", COLUMNS="200")


def run(argv: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=plain_env(), capture_output=True, text=True, timeout=timeout,
                          check=False, stdin=subprocess.DEVNULL)


def tail(done: subprocess.CompletedProcess[str], size: int = 4000) -> str:
    return f"exit {done.returncode}\n{done.stdout[-size:]}\n{done.stderr[-size:]}"


def _delete_repo(registry: str, repo: str) -> None:
    accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
    with contextlib.suppress(OSError, ValueError):
        with _HTTP.open(f"http://{registry}/v2/{repo}/tags/list", timeout=10) as resp:
            tags = json.loads(resp.read()).get("tags") or []
        for tag in tags:
            req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", method="HEAD",
                                         headers={"Accept": accept})
            with _HTTP.open(req, timeout=10) as resp:
                digest = resp.headers.get("Docker-Content-Digest")
            if digest:
                with contextlib.suppress(urllib.error.HTTPError):
                    _HTTP.open(urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{digest}",
                                                      method="DELETE"), timeout=10).close()


def node_images(node: Any) -> list[str]:
    """Every reference (repo:tag or repo@digest) the node's engine holds."""
    done = node.docker("image", "ls", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}")
    refs = []
    for line in done.stdout.splitlines():
        repo, tag, digest = (line.split() + ["", "", ""])[:3]
        refs.append(f"{repo}@{digest}" if tag == "<none>" else f"{repo}:{tag}")
    return refs


def fetched_rows(results: Path) -> dict[str, dict[str, dict[str, str]]]:
    """{host: {model: row}} of the fetched results dir."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for path in sorted(results.glob("*/*.rows.json")):
        for row in json.loads(path.read_text()):
            out.setdefault(path.parent.name, {})[row["model"]] = row
    return out


def interfered(done: subprocess.CompletedProcess[str], rows: dict[str, dict[str, dict[str, str]]]) -> bool:
    """Whether a node went away under the run (other tests kill sshd/dockerd on the shared cluster)."""
    reasons = [row.get("reason") or "" for host in rows.values() for row in host.values()]
    return ("unreachable=1" in done.stdout or "UNREACHABLE" in done.stdout
            or any(r.startswith(("engine unreachable", "engine connection lost")) for r in reasons))


@pytest.fixture
def made(docker_client, registry: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A built, pushed and exported copy of examples/MAD; local images and the registry repo are removed after."""
    uid = f"ga{secrets.token_hex(4)}"
    mad = tmp_path / "MAD"
    shutil.copytree(REPO / "examples" / "MAD", mad, ignore=shutil.ignore_patterns(".ruff_cache", "__pycache__"))
    models = json.loads((mad / "models.json").read_text())
    for entry in models:
        entry["name"] = f"{uid}_{entry['name']}"
    (mad / "models.json").write_text(json.dumps(models, indent=1))
    tags = [arg for tag in TAGS for arg in ("--tags", tag)]
    refs: list[str] = []
    repos: list[str] = []
    try:
        done = run([tool("madengine-cli"), "build", *tags, "-c", CTX, "--registry", registry], cwd=mad)
        assert done.returncode == 0, tail(done)
        manifest = json.loads((mad / "build_manifest.json").read_text())
        for image in manifest["built_images"].values():
            assert image["registry_image"] and "@sha256:" in image["registry_image"], image
            refs += [r for r in (image.get("registry_image"), image.get("registry_tag"), image["docker_image"]) if r]
            repos.append(image["registry_image"].split("@")[0].split("/", 1)[1])
        done = run([tool("madengine-cli"), "export-config", *tags, "-c", CTX], cwd=mad)
        assert done.returncode == 0, tail(done)
        yield {"uid": uid, "mad": mad, "manifest": manifest}
    finally:
        import docker.errors

        for ref in refs:
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(ref, force=True)
        for repo in repos:
            _delete_repo(registry, repo)


def test_generated_bundle_runs_with_plain_ansible_playbook(cluster, made, tmp_path):
    uid, mad, manifest = made["uid"], made["mad"], made["manifest"]
    bundle = tmp_path / "bundle"
    playbook = bundle / "madengine_distributed.yml"
    pulled = sorted({image["registry_image"] for image in manifest["built_images"].values()})
    control_dir: Path | None = None
    run_ids: list[str] = []
    try:
        done = run([tool("madengine-cli"), "generate", "ansible", "--manifest-file", "build_manifest.json",
                    "--execution-config", "execution_config.json", "--output", str(playbook),
                    "--inventory", str(cluster.inventory)], cwd=mad)
        assert done.returncode == 0, tail(done)
        assert {"madengine_vars.yml", "build_manifest.json", "ansible.cfg", "inventory.yml", "README.md",
                "mad"} <= {p.name for p in bundle.iterdir()}
        control_dir = Path(os.path.expanduser(
            next(line.split("=", 1)[1].strip() for line in (bundle / "ansible.cfg").read_text().splitlines()
                 if line.startswith("control_path_dir"))))

        done = run([tool("ansible-playbook"), playbook.name, "--syntax-check"], cwd=bundle)
        assert done.returncode == 0, tail(done)
        done = run([tool("ansible-lint"), "--profile", "production", "--offline"], cwd=bundle)
        assert done.returncode == 0, tail(done)
        assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr

        for attempt in range(2):
            run_id = f"{uid}-{attempt}"
            run_ids.append(run_id)
            # A work dir of this run on each node, so nothing is shared with tests running at the same time.
            done = run([tool("ansible-playbook"), playbook.name, "-e", f"run_models_run_id={run_id}",
                        "-e", f"run_models_workdir={{{{ mad_workdir }}}}/{run_id}"], cwd=bundle)
            rows = fetched_rows(bundle / "runs" / run_id / "results")
            if attempt == 0 and interfered(done, rows):
                for node in cluster.nodes:  # a node was killed by another test: start it again, run again
                    cluster.start_node(node)
                continue
            break
        assert done.returncode == 0, tail(done)
        assert "unreachable=0" in done.stdout and "failed=0" in done.stdout
        expected = {f"{uid}_dummy", f"{uid}_dummy_data"} | {f"{uid}_{name}" for name in MULTI_ROWS}
        assert set(rows) == {node.name for node in cluster.nodes}, rows
        for node in cluster.nodes:
            host_rows = rows[node.name]
            assert set(host_rows) == expected, (node.name, sorted(host_rows))
            for model, row in host_rows.items():
                assert row["status"] == "SUCCESS", (node.name, model, row.get("reason"))
                assert row["host"] == node.name and row["run_id"] == run_id
                assert float(row["performance"]) > 0
            assert host_rows[f"{uid}_dummy_data"]["dataname"] == "tiny"
            host_dir = bundle / "runs" / run_id / "results" / node.name
            assert "performance:" in (host_dir / f"{uid}_dummy_dummy.run.live.log").read_text()
            assert (host_dir / f"{uid}_dummy.sysenv.json").is_file()
            # Pulled by registry digest: the node holds exactly the manifest's pinned reference.
            assert set(pulled) <= set(node_images(node)), node.name
    finally:
        for node in cluster.nodes:
            for ref in pulled:
                with contextlib.suppress(subprocess.SubprocessError):
                    node.docker("rmi", ref, check=False)
            for run_id in run_ids:
                shutil.rmtree(node.workdir / run_id, ignore_errors=True)
        if control_dir is not None and control_dir.is_dir():
            for sock in control_dir.iterdir():
                subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "control-master"],
                               capture_output=True, timeout=10, check=False, stdin=subprocess.DEVNULL)
            shutil.rmtree(control_dir, ignore_errors=True)
    # Nothing of this test is left in the nodes' image stores (other tests may have images of their own).
    for node in cluster.nodes:
        assert not [ref for ref in node_images(node) if uid in ref], node.name
        assert not node.docker("ps", "-a", "--filter", f"name={uid}", "-q").stdout.strip()
