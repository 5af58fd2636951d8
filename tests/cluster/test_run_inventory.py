"""`madengine-cli run --inventory` on the loopback test cluster (tests/infra/cluster.sh, 3 nodes).

Real sshd nodes, a dockerd per node, the real registry on 127.0.0.1:5000 (and a second one with
htpasswd auth). Every test builds a tiny MAD tree in tmp_path whose model names carry a random prefix
(``mc1a2b3c4d_ok``), so images (``ci-mc1a2b3c4d_ok_base``), registry repositories, containers
(``madengine-mc1a2b3c4d_…``) and node result dirs are unique. The ``mad`` fixture removes all of them
afterwards: from the main engine, from every node's engine (whose image store must stay empty for the
next test's pull assertions), from the registry, and the ``runs/`` dirs of the test.

The CLI runs as a subprocess (the console script), so exit codes and terminal output are real.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000"
CTX = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'
BASE_ARG = "ARG BASE_DOCKER=madengine-base:bookworm\nFROM $BASE_DOCKER\n"
OK = 'echo "ok: $MAD_MODEL_NAME on $(hostname)"\necho "performance: 42.5 items_per_second"\n'
NODES = ("node2", "node3", "node4")
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def nap(seconds: float, marker: str = "napping") -> str:
    """A model script that says it started, sleeps, then reports a performance line."""
    return f'echo "{marker}"\nsleep {seconds}\necho "performance: {seconds} naps"\n'


# ------------------------------------------------------------------------------------------- helpers
@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err


def cli_command() -> list[str]:
    exe = Path(sys.executable).parent / "madengine-cli"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("madengine-cli")
    return [found] if found else [sys.executable, "-c", "from madengine.cli.app import main; main()"]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8", COLUMNS="200", NO_COLOR="1", **extra)
    for name in ("MAD_REGISTRY_USER", "MAD_REGISTRY_PASSWORD", "DOCKER_HOST", "ANSIBLE_COLLECTIONS_PATH"):
        if name not in extra:
            env.pop(name, None)
    return env


def ansible_env() -> dict[str, str]:
    """What a person running plain ansible-playbook sets: the venv's bin on PATH, a UTF-8 locale, the
    collection from the source tree."""
    env = cli_env(ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1",
                  ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_PIPELINING="True")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    return env


def ansible_bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def cells(rows: list[dict[str, str]]) -> Counter[tuple[str, str]]:
    return Counter((row["host"], row["model"]) for row in rows)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with _HTTP.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), b""


def delete_repo(registry: str, repo: str, auth: str | None = None) -> None:
    """Delete every tag's manifest of ``repo`` (blobs stay until the registry's garbage collection)."""
    headers = {"Authorization": f"Basic {auth}"} if auth else {}
    with contextlib.suppress(OSError, ValueError):
        status, _, body = _request(f"http://{registry}/v2/{repo}/tags/list", headers=headers)
        if status != 200:
            return
        accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
        for tag in json.loads(body).get("tags") or []:
            status, head, _ = _request(f"http://{registry}/v2/{repo}/manifests/{tag}", "HEAD",
                                       {"Accept": accept, **headers})
            digest = head.get("Docker-Content-Digest")
            if status == 200 and digest:
                _request(f"http://{registry}/v2/{repo}/manifests/{digest}", "DELETE", headers)


class ClusterMad:
    """A MAD package in tmp_path (one Dockerfile, a models.json, a script per model) and the CLI on it."""

    def __init__(self, root: Path, uid: str, cluster) -> None:
        self.root = root
        self.uid = uid
        self.cluster = cluster
        self.models: list[dict[str, Any]] = []
        self.registries: dict[str, str | None] = {}  # registry → basic auth for cleanup
        self.write("docker/base.Dockerfile", BASE_ARG + f"LABEL madengine.test={uid}\n")
        self.write("scripts/common/tools.json", '{"tools": {}}\n')
        self.save()

    @property
    def inventory(self) -> str:
        return str(self.cluster.inventory)

    def name(self, short: str) -> str:
        return f"{self.uid}_{short}"

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def add(self, short: str, script: str, **fields: Any) -> str:
        name = self.name(short)
        self.write(f"scripts/{short}/run.sh", "#!/bin/bash\n" + script)
        self.models.append({"name": name, "tags": [self.uid, name], "dockerfile": "docker/base",
                            "scripts": f"scripts/{short}/run.sh", "n_gpus": "1", "args": "", **fields})
        self.save()
        return name

    def save(self) -> None:
        self.write("models.json", json.dumps(self.models, indent=1))

    def build(self, registry: str = REGISTRY, auth: str | None = None, env: dict[str, str] | None = None,
              ) -> dict[str, Any]:
        self.registries[registry] = auth
        done = subprocess.run([*cli_command(), "build", "--tags", self.uid, "-c", CTX, "--registry", registry],
                              cwd=self.root, env=env or cli_env(), capture_output=True, text=True, timeout=600,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return self.manifest()

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / "build_manifest.json").read_text())

    def pinned(self) -> dict[str, str]:
        """model name → the pinned registry reference (repo@sha256:…) the nodes must pull."""
        manifest = self.manifest()
        return {model["name"]: manifest["built_images"][model["docker_image"]]["registry_image"]
                for model in manifest["built_models"].values()}

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
        done = subprocess.run([*cli_command(), "run", "--manifest-file", "build_manifest.json", *args],
                              cwd=self.root, env=env or cli_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    @contextlib.contextmanager
    def background(self, *args: str) -> Iterator[subprocess.Popen[str]]:
        """`run` in the background while the test breaks something; killed if the test ends first."""
        proc = subprocess.Popen([*cli_command(), "run", "--manifest-file", "build_manifest.json", *args],
                                cwd=self.root, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    def rows(self, name: str = "perf.csv") -> list[dict[str, str]]:
        return read_rows(self.root / name)

    def run_dirs(self) -> list[Path]:
        runs = self.root / "runs"
        return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []

    # node side
    def node_images(self, node) -> list[str]:
        """Image IDs on the node that carry this test's label (built from its Dockerfile)."""
        return node.docker("images", "-q", "--no-trunc", "--filter", f"label=madengine.test={self.uid}").stdout.split()

    def node_containers(self, node) -> list[str]:
        done = node.docker("ps", "-a", "--format", "{{.Names}}")
        return [name for name in done.stdout.split() if self.uid in name]

    def wait_running(self, node, model: str) -> None:
        """Until the node runs the model's container."""
        def running() -> bool:
            names = node.docker("ps", "--format", "{{.Names}}", check=False).stdout.split()
            return any(model.lower() in name for name in names)

        wait_for(running, 120, f"{model} running on {node.name}")

    def node_events(self, node, since: float, event: str) -> list[str]:
        """The image IDs/references of the node engine's image ``event``s (pull, load) since ``since``."""
        done = node.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--filter",
                           "type=image", "--filter", f"event={event}", "--format", "{{.Actor.ID}}")
        return done.stdout.split()

    def node_pulls(self, node, since: float) -> list[str]:
        """The image references of this test that the node's engine pulled since ``since``."""
        return [ref for ref in self.node_events(node, since, "pull") if self.uid in ref]


def _force_remove_images(node_or_engine, image_ids: list[str]) -> None:
    for image_id in image_ids:
        node_or_engine("rmi", "-f", image_id, check=False)


@pytest.fixture
def mad(tmp_path: Path, unique_name: str, cluster, cluster_lock, docker_client, base_image, registry,
        ) -> Iterator[ClusterMad]:
    uid = unique_name.replace("mt-", "mc")  # model names go into image names: keep them simple
    # Every node up (idempotent, about 1 s): an earlier test, or another session, may have killed one.
    subprocess.run(["bash", str(REPO / "tests" / "infra" / "cluster.sh"), "up", str(len(cluster.nodes))],
                   capture_output=True, timeout=300, check=True, stdin=subprocess.DEVNULL)
    tree = ClusterMad(tmp_path / "mad", uid, cluster)
    for node in cluster.nodes:  # the image store of each node holds nothing of this test yet
        assert not tree.node_images(node), node.name
    yield tree
    import docker.errors

    for node in cluster.nodes:
        with contextlib.suppress(Exception):  # a node whose dockerd a test killed is restarted by restore_nodes
            for name in tree.node_containers(node):
                node.docker("rm", "-f", name, check=False)
            refs = node.docker("images", "--format", "{{.Repository}}@{{.Digest}} {{.ID}}").stdout.splitlines()
            ids = tree.node_images(node) + [line.split()[-1] for line in refs if uid in line]
            _force_remove_images(node.docker, list(dict.fromkeys(ids)))
            for run_dir in tree.run_dirs():
                shutil.rmtree(node.workdir / "results" / run_dir.name, ignore_errors=True)
    for container in docker_client.api.containers(all=True):
        if any(uid in n for n in container["Names"]):
            with contextlib.suppress(docker.errors.APIError):
                docker_client.api.remove_container(container["Id"], force=True)
    for image in docker_client.images.list(filters={"label": f"madengine.test={uid}"}):
        for ref in image.tags or []:
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(ref, force=True)
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(image.id, force=True)
    for reg, auth in tree.registries.items():
        for model in tree.models:
            delete_repo(reg, f"ci-{model['name']}_base", auth)
    if os.environ.get("MADENGINE_TEST_KEEP_RUNS") != "1":  # kept only when debugging a test
        for run_dir in tree.run_dirs():
            shutil.rmtree(run_dir, ignore_errors=True)


def assert_pulled(mad: ClusterMad, nodes, since: float) -> None:
    """Each node's engine pulled every pinned reference from the registry, and now holds it by digest."""
    pinned = sorted(set(mad.pinned().values()))
    for node in nodes:
        pulled = mad.node_pulls(node, since)
        for ref in pinned:
            repo, digest = ref.split("@")
            assert any(p in (ref, repo, f"{repo}:{digest}") or p.startswith(repo) for p in pulled), (node.name, ref,
                                                                                                  pulled)
            inspect = json.loads(node.docker("image", "inspect", ref).stdout)[0]
            assert ref in inspect["RepoDigests"], (node.name, inspect["RepoDigests"])


def assert_success_rows(rows: list[dict[str, str]], expected: Counter[tuple[str, str]], run_id: str) -> None:
    assert cells(rows) == expected
    for row in rows:
        assert row["status"] == "SUCCESS", row
        assert row["run_id"] == run_id
        assert float(row["performance"]) > 0


def only_run_id(mad: ClusterMad) -> str:
    [run_dir] = mad.run_dirs()
    return run_dir.name


# ------------------------------------------------------------------------------------------- tests
def test_replicate_every_node_pulls_and_runs_every_model(mad: ClusterMad, cluster) -> None:
    names = [mad.add(f"m{i}", OK) for i in range(3)]
    mad.build()
    for node in cluster.nodes:  # every layer has to come from the registry: start from an empty store
        left = node.docker("ps", "-aq").stdout.split()  # what earlier tests left (the cluster lock is ours)
        if left:
            node.docker("rm", "-f", *left)
        node.docker("image", "prune", "-af")
        assert not node.docker("images", "-aq").stdout.split(), f"{node.name}'s image store is not empty"
    since = time.time() - 1
    res = mad.run("--inventory", mad.inventory)
    assert res.code == 0, res.text
    run_id = only_run_id(mad)
    rows = mad.rows()
    assert_success_rows(rows, Counter({(h, n): 1 for h in NODES for n in names}), run_id)
    assert {row["docker_image"] for row in rows} == set(mad.pinned().values())
    assert_pulled(mad, cluster.nodes, since)
    # Results of every host fetched back into the kept private data dir; nothing left running.
    for node in cluster.nodes:
        fetched = mad.root / "runs" / run_id / "results" / node.name
        assert sorted(p.name for p in fetched.glob("*.rows.json")) == sorted(f"{n}.rows.json" for n in names)
        assert not mad.node_containers(node)
    assert "9 succeeded, 0 failed" in " ".join(res.text.split())


def test_shard_runs_each_model_once_across_the_nodes(mad: ClusterMad, cluster) -> None:
    names = [mad.add(f"s{i}", OK, timeout=100 + i) for i in range(6)]
    mad.build()
    since = time.time() - 1
    res = mad.run("--inventory", mad.inventory, "--distribute", "shard")
    assert res.code == 0, res.text
    rows = mad.rows()
    assert sorted(row["model"] for row in rows) == sorted(names)  # each model exactly once
    per_host = Counter(row["host"] for row in rows)
    assert per_host == Counter({h: 2 for h in NODES}), per_host  # 6 models of similar length: 2 each
    assert_success_rows(rows, cells(rows), only_run_id(mad))
    # A node pulls the images of its own models only.
    for node in cluster.nodes:
        mine = {mad.pinned()[row["model"]] for row in rows if row["host"] == node.name}
        pulled = mad.node_pulls(node, since)
        assert len(pulled) == len(mine), (node.name, pulled)
        for ref in mine:
            assert ref in json.loads(node.docker("image", "inspect", ref).stdout)[0]["RepoDigests"]


def test_limit_runs_on_that_node_only(mad: ClusterMad, cluster) -> None:
    names = [mad.add("l1", OK), mad.add("l2", OK)]
    mad.build()
    since = time.time() - 1
    res = mad.run("--inventory", mad.inventory, "--limit", "node3")
    assert res.code == 0, res.text
    rows = mad.rows()
    assert_success_rows(rows, Counter({("node3", n): 1 for n in names}), only_run_id(mad))
    assert_pulled(mad, [cluster.node("node3")], since)
    for other in ("node2", "node4"):
        assert not mad.node_images(cluster.node(other)) and not mad.node_pulls(cluster.node(other), since)
    assert sorted(p.name for p in (mad.run_dirs()[0] / "results").iterdir()) == ["node3"]


def test_image_transfer_copy_builds_here_and_loads_on_the_nodes_without_a_registry(mad: ClusterMad, cluster) -> None:
    """A full workflow with --image-transfer copy: no registry anywhere; each node loads a docker save
    tarball. A second run finds the images present: nothing is saved, copied or loaded again. A rebuild
    under the same tag is shipped again (presence is by image ID, not by tag)."""
    names = [mad.add("c1", OK), mad.add("c2", OK)]
    mad.write("docker/other.Dockerfile", BASE_ARG + f"LABEL madengine.test={mad.uid} other=1\n")
    names.append(mad.add("c3", OK, dockerfile="docker/other"))
    nodes = [cluster.node("node2"), cluster.node("node3")]
    cache = mad.root.parent / "cache"
    env = cli_env(XDG_CACHE_HOME=str(cache))
    copy_run = ("--inventory", mad.inventory, "--limit", "node2:node3", "--image-transfer", "copy")
    since = time.time() - 1
    done = subprocess.run([*cli_command(), "run", "--tags", mad.uid, "-c", CTX, *copy_run],
                          cwd=mad.root, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = only_run_id(mad)
    assert_success_rows(mad.rows(), Counter({(n.name, m): 1 for n in nodes for m in names}), run_id)
    manifest = mad.manifest()
    assert not any(image.get("registry_image") for image in manifest["built_images"].values())
    local_tags = sorted(image["docker_image"] for image in manifest["built_images"].values())
    assert len(local_tags) == 3  # a tag per card; c1 and c2 share one build
    tarballs = sorted((cache / "madengine" / "images").glob("*.tar"))
    assert len(tarballs) == 2  # one per image ID (holding each of its tags), kept for the next run
    for node in nodes:
        assert not mad.node_pulls(node, since), node.name  # nothing came from a registry
        assert len(mad.node_events(node, since, "load")) == 2, node.name
        for tag in local_tags:  # loaded under the tag it was built with
            assert node.docker("image", "inspect", tag, check=False).returncode == 0, (node.name, tag)
        assert not list((node.workdir / "images").rglob("*.tar")), "the tarballs stay on the host"
    assert not mad.node_images(cluster.node("node4"))
    # Warm hosts: the images are there, so no tarball is saved, shipped or loaded.
    inodes = [p.stat().st_ino for p in tarballs]
    since = time.time()
    res = mad.run(*copy_run, "--output", "again.csv", env=env)
    assert res.code == 0, res.text
    assert [r["status"] for r in mad.rows("again.csv")] == ["SUCCESS"] * 6
    # The cached tarballs were reused, not saved again (a save writes a new file).
    assert [p.stat().st_ino for p in tarballs] == inodes and len(list(tarballs[0].parent.glob("*.tar"))) == 2
    for node in nodes:
        assert not mad.node_events(node, since, "load"), node.name
    # A rebuild of one image under the same tag: the nodes hold the old build by that tag, and load the new.
    mad.write("docker/other.Dockerfile", BASE_ARG + f"LABEL madengine.test={mad.uid} other=2\n")
    since = time.time()
    done = subprocess.run([*cli_command(), "run", "--tags", mad.uid, "-c", CTX, *copy_run, "--output", "new.csv"],
                          cwd=mad.root, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rebuilt = next(i for i in mad.manifest()["built_images"].values() if "other" in i["dockerfile"])
    local_id = json.loads(subprocess.run(["docker", "image", "inspect", rebuilt["docker_image"]], capture_output=True,
                                         text=True, check=True).stdout)[0]["Id"]
    for node in nodes:
        assert len(mad.node_events(node, since, "load")) == 1, node.name
        inspect = json.loads(node.docker("image", "inspect", rebuilt["docker_image"]).stdout)[0]
        assert inspect["Id"] == local_id, node.name
        assert inspect["Config"]["Labels"]["other"] == "2"


def test_image_transfer_copy_of_an_image_this_engine_lacks_is_a_clear_error(mad: ClusterMad) -> None:
    mad.add("gone", OK)
    mad.build()
    local = next(iter(mad.manifest()["built_images"].values()))["docker_image"]
    subprocess.run(["docker", "rmi", "-f", local], capture_output=True, check=True)
    res = mad.run("--inventory", mad.inventory, "--limit", "node2", "--image-transfer", "copy")
    assert res.code == 4, res.text
    text = " ".join(res.text.split())
    assert f"--image-transfer copy: image {local}:latest is not in the local Docker engine" in text
    assert "Traceback" not in res.text and not mad.rows()


def test_remote_timeout_fails_the_model_and_removes_its_container(mad: ClusterMad, cluster) -> None:
    slow = mad.add("slow", nap(60))
    fast = mad.add("fast", OK)
    mad.build()
    started = time.monotonic()
    res = mad.run("--inventory", mad.inventory, "--timeout", "2")
    assert time.monotonic() - started < 50, "the timeout did not stop the 60 s model"
    assert res.code == 3, res.text
    rows = mad.rows()
    assert cells(rows) == Counter({(h, n): 1 for h in NODES for n in (slow, fast)})
    for row in rows:
        if row["model"] == slow:
            assert (row["status"], row["reason"]) == ("FAILURE", "timeout after 2 s"), row
            # The 2 s count from the container's creation; its own run is shorter on a busy machine.
            assert 0 < float(row["test_duration"]) < 10, row
        else:
            assert row["status"] == "SUCCESS", row
    for node in cluster.nodes:
        assert not mad.node_containers(node), node.name


def test_unreachable_node_and_dockerd_killed_mid_run(mad: ClusterMad, cluster, restore_nodes) -> None:
    """node2's sshd is dead before the run; node3's dockerd dies while its second model runs."""
    first = mad.add("first", OK)
    long = mad.add("long", nap(8, "long-started"))
    last = mad.add("last", OK)
    mad.build()
    node2, node3 = cluster.node("node2"), cluster.node("node3")
    cluster.kill_sshd(node2)
    with mad.background("--inventory", mad.inventory) as proc:
        mad.wait_running(node3, long)
        time.sleep(0.5)
        cluster.kill_dockerd(node3)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, out + err
    rows = {(row["host"], row["model"]): row for row in mad.rows()}
    assert cells(mad.rows()) == Counter({(h, n): 1 for h in NODES for n in (first, long, last)})
    for name in (first, long, last):
        assert (rows["node2", name]["status"], rows["node2", name]["reason"]) == ("FAILURE", "host unreachable")
        assert rows["node4", name]["status"] == "SUCCESS", rows["node4", name]
    assert rows["node3", first]["status"] == "SUCCESS", rows["node3", first]  # finished before: kept
    for name in (long, last):
        row = rows["node3", name]
        assert row["status"] == "FAILURE" and row["reason"].startswith("host failed: "), row
    run_id = only_run_id(mad)
    assert {row["run_id"] for row in rows.values()} == {run_id}
    assert "4 succeeded, 5 failed" in " ".join(out.split())


def test_sshd_killed_mid_run_keeps_the_finished_rows(mad: ClusterMad, cluster, restore_nodes) -> None:
    """node4's sshd (listener and sessions) dies while its second model runs: that model and the next are
    `host unreachable`, the first one's row is kept, node2 and node3 finish."""
    first = mad.add("first", OK)
    long = mad.add("long", nap(8, "long-started"))
    last = mad.add("last", OK)
    mad.build()
    node4 = cluster.node("node4")
    with mad.background("--inventory", mad.inventory) as proc:
        mad.wait_running(node4, long)
        cluster.kill_sshd(node4)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, out + err
    rows = {(row["host"], row["model"]): row for row in mad.rows()}
    assert cells(mad.rows()) == Counter({(h, n): 1 for h in NODES for n in (first, long, last)})
    assert rows["node4", first]["status"] == "SUCCESS", rows["node4", first]
    for name in (long, last):
        assert (rows["node4", name]["status"], rows["node4", name]["reason"]) == ("FAILURE", "host unreachable")
    for host in ("node2", "node3"):
        assert {rows[host, name]["status"] for name in (first, long, last)} == {"SUCCESS"}
    assert "7 succeeded, 2 failed" in " ".join(out.split())
    # `last` never started on node4. (`long`'s container outlives its SIGKILLed module process: nothing on
    # the host is left to remove it; the fixture does.)
    assert not any(last.lower() in name for name in mad.node_containers(node4))


# ------------------------------------------------------------------------------------------- auth
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AuthRegistry:
    address: str
    username: str
    password: str

    @property
    def basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[AuthRegistry]:
    """A second `docker-registry serve` on a free loopback port, with htpasswd (bcrypt) auth."""
    import secrets

    if not shutil.which("htpasswd") or not shutil.which("docker-registry"):
        pytest.fail("htpasswd (apache2-utils) and docker-registry are needed; run tests/infra/up.sh", pytrace=False)
    user, password = f"mad{secrets.token_hex(3)}", f"Pw-{secrets.token_urlsafe(18)}"
    root = tmp_path / "auth-registry"
    root.mkdir()
    line = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True).stdout
    (root / "htpasswd").write_text(line.strip() + "\n")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    config = {"version": 0.1, "log": {"level": "warn"},
              "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
              "http": {"addr": address},
              "auth": {"htpasswd": {"realm": "madengine-test", "path": str(root / "htpasswd")}}}
    (root / "config.yml").write_text(yaml.safe_dump(config))
    log = open(root / "registry.log", "wb")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: _status(f"http://{address}/v2/") == 401 or proc.poll() is not None, 30, "the auth registry")
        assert proc.poll() is None, (root / "registry.log").read_text()
        auth = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
        assert _request(f"http://{address}/v2/", headers=auth)[0] == 200
        yield AuthRegistry(address, user, password)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _status(url: str) -> int | None:
    with contextlib.suppress(OSError):
        return _request(url)[0]
    return None


def _files_containing(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                data = path.read_bytes()
                found += [f"{path}: {needle!r}" for needle in needles if needle in data]
    return found


def test_registry_with_auth_the_password_is_in_no_file_and_no_output(mad: ClusterMad, cluster,
                                                                     auth_registry: AuthRegistry) -> None:
    names = [mad.add("a1", OK), mad.add("a2", OK)]
    mad.write("credential.json", json.dumps({auth_registry.address: {"username": auth_registry.username,
                                                                      "password": auth_registry.password}}))
    docker_config = Path.home() / ".docker" / "config.json"
    config_before = docker_config.read_bytes() if docker_config.exists() else b""
    mad.build(registry=auth_registry.address, auth=auth_registry.basic)
    assert all(ref.startswith(auth_registry.address + "/") for ref in mad.pinned().values())
    since = time.time() - 1
    res = mad.run("--inventory", mad.inventory)
    assert res.code == 0, res.text
    rows = mad.rows()
    assert_success_rows(rows, Counter({(h, n): 1 for h in NODES for n in names}), only_run_id(mad))
    assert_pulled(mad, cluster.nodes, since)

    needles = [auth_registry.password.encode(), auth_registry.basic.encode(),
               base64.b64encode(auth_registry.password.encode()).rstrip(b"=")]
    for text in (res.out, res.err):
        assert not any(n.decode() in text for n in needles)
    [run_dir] = mad.run_dirs()
    assert (run_dir / "artifacts").is_dir() and (run_dir / "env").is_dir()  # what the runner wrote is searched
    assert list(run_dir.rglob("job_events/*.json")), "no runner events kept"
    assert not _files_containing(mad.root / "runs", needles)
    # In the whole MAD tree (perf.csv, the manifest, logs) only credential.json holds it.
    assert _files_containing(mad.root, needles) == [f"{mad.root / 'credential.json'}: {needles[0]!r}"]
    for node in cluster.nodes:  # nor on a node, nor in the shared docker client config
        assert not _files_containing(node.workdir / "results" / run_dir.name, needles)
    assert (docker_config.read_bytes() if docker_config.exists() else b"") == config_before


# ------------------------------------------------------------------------------------------- identity
# Columns that legitimately differ between a local and a remote run of the same model:
#   host (empty locally, the inventory hostname remotely), run_id, started_at and test_duration (timing),
#   performance (a measurement: compared as "both numbers" for SUCCESS rows),
#   machine_name (the host's name; the nodes share this machine's kernel, so it may even be equal).
VARYING = {"host", "run_id", "started_at", "test_duration", "machine_name", "performance"}
MULTI = ('printf "model,performance,metric\\nalpha,1.5,ops\\nbeta,2.5,ops\\n" > perf_multi.csv\n'
         'echo "done"\n')


def test_local_and_remote_rows_are_identical(mad: ClusterMad, cluster) -> None:
    ok = mad.add("ok", OK)
    mad.add("multi", MULTI, multiple_results="perf_multi.csv")
    failing = mad.add("fail", 'echo "performance: 1 x"\nexit 1\n')
    noperf = mad.add("noperf", 'echo "no line"\n')
    mad.build()
    local = mad.run("--output", "local.csv")
    assert local.code == 3, local.text  # fail and noperf fail
    remote = mad.run("--inventory", mad.inventory, "--limit", "node4", "--output", "remote.csv")
    assert remote.code == 3, remote.text
    local_rows = {row["model"]: row for row in mad.rows("local.csv")}
    remote_rows = {row["model"]: row for row in mad.rows("remote.csv")}
    assert set(local_rows) == set(remote_rows) == {ok, failing, noperf, f"{mad.name('multi')}_alpha",
                                                  f"{mad.name('multi')}_beta"}
    assert list(mad.rows("local.csv")[0]) == list(mad.rows("remote.csv")[0])  # same columns, same order
    for name, theirs in remote_rows.items():
        mine = local_rows[name]
        assert {k: v for k, v in theirs.items() if k not in VARYING} == {
            k: v for k, v in mine.items() if k not in VARYING}, name
        assert theirs["host"] == "node4" and mine["host"] in ("", socket.gethostname(), "localhost")
        assert theirs["run_id"] != mine["run_id"]
        if theirs["status"] == "SUCCESS":
            assert float(theirs["performance"]) > 0 and float(mine["performance"]) > 0
    assert remote_rows[ok]["status"] == "SUCCESS" and remote_rows[failing]["status"] == "FAILURE"


# ------------------------------------------------------------------------------------------- ansible-playbook
def test_plain_ansible_playbook_without_the_cli(mad: ClusterMad, cluster, tmp_path: Path) -> None:
    names = [mad.add("p1", OK), mad.add("p2", MULTI, multiple_results="perf_multi.csv")]
    mad.build()
    results = tmp_path / "fetched"
    run_id = f"plain-{mad.uid}"
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text(yaml.safe_dump({
        "run_models_manifest_file": str(mad.root / "build_manifest.json"),
        "run_models_mad_dir": str(mad.root),
        "run_models_results_dir": str(results),
        "run_models_run_id": run_id,
    }))
    since = time.time() - 1
    try:
        argv = [ansible_bin("ansible-playbook"), "-i", str(cluster.inventory), "playbooks/run_models.yml",
                "-e", f"@{vars_file}"]
        done = subprocess.run(argv, cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=600,
                              check=False, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
        for node in NODES:
            assert f"{node}" in done.stdout and "failed=0" in done.stdout and "unreachable=0" in done.stdout
        assert sorted(p.name for p in results.iterdir()) == sorted(NODES)
        for node in cluster.nodes:
            host_dir = results / node.name
            rows = [row for path in sorted(host_dir.glob("*.rows.json")) for row in json.loads(path.read_text())]
            assert sorted(row["model"] for row in rows) == sorted(
                [names[0], f"{names[1]}_alpha", f"{names[1]}_beta"]), node.name
            assert {(row["status"], row["host"], row["run_id"]) for row in rows} == {("SUCCESS", node.name, run_id)}
            for name in names:
                assert (host_dir / f"{name}.sysenv.json").is_file()
                assert (host_dir / f"{name}_base.run.live.log").read_text().startswith("$ docker run")
        assert_pulled(mad, cluster.nodes, since)
    finally:
        for node in cluster.nodes:
            shutil.rmtree(node.workdir / "results" / run_id, ignore_errors=True)
