"""Fixtures for `run --slurm` / `generate slurm` on the real SLURM test cluster (tests/infra/slurm.sh).

Skips cleanly when the SLURM daemons (or the cluster nodes' dockerd's) are not up. Each test builds a
tiny MAD tree whose model names carry a random prefix; containers, node images and registry repos of
that prefix are removed afterwards. Tests hold the cluster tests' lock (they share the nodes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from madengine.results import read_rows

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("MADENGINE_TEST_STATE_DIR", "/var/lib/madengine-test"))
SLURM_SH = REPO / "tests" / "infra" / "slurm.sh"
CLUSTER_JSON = Path(os.environ.get("MADENGINE_CLUSTER_DIR") or STATE / "cluster") / "cluster.json"
REGISTRY = "127.0.0.1:5000"
CTX = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'
BASE_ARG = "ARG BASE_DOCKER=madengine-base:bookworm\nFROM $BASE_DOCKER\n"
OK = 'echo "ok: $MAD_MODEL_NAME on $(hostname)"\necho "performance: 42.5 items_per_second"\n'
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def nap(seconds: float, marker: str = "napping") -> str:
    return f'echo "{marker}"\nsleep {seconds}\necho "performance: {seconds} naps"\n'


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def cli_command() -> list[str]:
    exe = Path(sys.executable).parent / "madengine-cli"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from madengine.cli.app import main; main()"]


@dataclass
class Node:
    name: str
    docker_host: str

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], env=dict(os.environ, DOCKER_HOST=self.docker_host),
                              capture_output=True, text=True, timeout=120, check=False)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err


class SlurmMad:
    """A MAD package in tmp_path and the CLI on it, with SLURM_CONF pointing at the test cluster."""

    def __init__(self, root: Path, uid: str, conf: str, nodes: list[Node]) -> None:
        self.root, self.uid, self.conf, self.nodes = root, uid, conf, nodes
        self.models: list[dict[str, Any]] = []
        self.write("docker/base.Dockerfile", BASE_ARG + f"LABEL madengine.test={uid}\n")
        self.write("scripts/common/tools.json", '{"tools": {}}\n')
        self.save()

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, LC_ALL="C.UTF-8", COLUMNS="200", NO_COLOR="1", SLURM_CONF=self.conf, **extra)
        env.pop("DOCKER_HOST", None)
        return env

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

    def build(self) -> dict[str, Any]:
        done = subprocess.run([*cli_command(), "build", "--tags", self.uid, "-c", CTX, "--registry", REGISTRY],
                              cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads((self.root / "build_manifest.json").read_text())

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
        done = subprocess.run([*cli_command(), *args], cwd=self.root, env=env or self.env(),
                              capture_output=True, text=True, timeout=timeout, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
        return self.cli("run", "--manifest-file", "build_manifest.json", "--slurm", *args, env=env, timeout=timeout)

    def background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*cli_command(), "run", "--manifest-file", "build_manifest.json", "--slurm", *args],
                                cwd=self.root, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def rows(self, name: str = "perf.csv") -> list[dict[str, str]]:
        return read_rows(self.root / name)

    def squeue(self) -> list[tuple[str, str, str, str]]:
        """(job id, state, name, comment) of this test's jobs still in the queue."""
        out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%j|%k"], env=self.env(), capture_output=True,
                             text=True, timeout=30, check=False).stdout
        rows = [tuple(line.split("|", 3)) for line in out.splitlines() if line.count("|") == 3]
        return [r for r in rows if self.uid in r[2]]  # type: ignore[misc]

    def containers(self) -> dict[str, list[str]]:
        out = {}
        for node in self.nodes:
            names = node.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
            out[node.name] = [n for n in names if self.uid in n]
        return out


@contextlib.contextmanager
def tests_lock() -> Iterator[None]:
    """The same lock file as tests/cluster/conftest.py's cluster_lock: one node-sharing test at a time."""
    lock_dir = CLUSTER_JSON.parent
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "tests.lock", "a+") as handle:
        deadline = time.monotonic() + 1800
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail("tests.lock held by another session for 30 min", pytrace=False)
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def slurm_sh(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SLURM_SH), *args], capture_output=True, text=True, timeout=timeout,
                          check=False, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def slurm_conf() -> str:
    """SLURM_CONF of the test cluster; skips when slurm (or the nodes) are not up."""
    if os.environ.get("MADENGINE_NO_DOCKER", "") == "1":
        pytest.skip("MADENGINE_NO_DOCKER=1")
    if shutil.which("sbatch") is None or not CLUSTER_JSON.is_file():
        pytest.skip("no SLURM test cluster (run tests/infra/up.sh: it starts tests/infra/slurm.sh up)")
    if slurm_sh("status").returncode != 0:
        pytest.skip("SLURM test cluster not up (bash tests/infra/slurm.sh up)")
    return slurm_sh("conf").stdout.strip()


@pytest.fixture
def nodes(slurm_conf: str) -> list[Node]:
    data = json.loads(CLUSTER_JSON.read_text())
    return [Node(n["name"], n["docker_host"]) for n in data["nodes"]]


def _delete_repo(repo: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        with _HTTP.open(f"http://{REGISTRY}/v2/{repo}/tags/list", timeout=5) as r:
            tags = json.loads(r.read()).get("tags") or []
        accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
        for tag in tags:
            req = urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/manifests/{tag}", method="HEAD",
                                         headers={"Accept": accept})
            with _HTTP.open(req, timeout=5) as r:
                digest = r.headers.get("Docker-Content-Digest")
            if digest:
                with contextlib.suppress(OSError):
                    _HTTP.open(urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/manifests/{digest}",
                                                      method="DELETE"), timeout=5)


@pytest.fixture
def smad(tmp_path: Path, unique_name: str, slurm_conf: str, nodes: list[Node], base_image, registry,
         ) -> Iterator[SlurmMad]:
    uid = unique_name.replace("mt-", "ms")
    with tests_lock():
        # Every node idle (idempotent): an earlier test may have killed one.
        up = slurm_sh("up")
        assert up.returncode == 0, up.stderr
        tree = SlurmMad(tmp_path / "mad", uid, slurm_conf, nodes)
        yield tree
        for job_id, *_ in tree.squeue():
            subprocess.run(["scancel", job_id], env=tree.env(), check=False, timeout=30)
        for node in nodes:
            for name in tree.containers()[node.name]:
                node.docker("rm", "-f", name)
            ids = node.docker("images", "-q", "--filter", f"label=madengine.test={uid}").stdout.split()
            for image_id in dict.fromkeys(ids):
                node.docker("rmi", "-f", image_id)
        for image_id in subprocess.run(["docker", "images", "-q", "--filter", f"label=madengine.test={uid}"],
                                       capture_output=True, text=True, check=False).stdout.split():
            subprocess.run(["docker", "rmi", "-f", image_id], capture_output=True, check=False)
        for model in tree.models:
            _delete_repo(f"ci-{model['name']}_base")
