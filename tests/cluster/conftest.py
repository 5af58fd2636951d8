"""The loopback test cluster (``tests/infra/cluster.sh``) as pytest fixtures.

``cluster`` (session scope) makes sure 3 nodes are up (``cluster.sh up 3`` is idempotent: about 1 s
when they already run, about 1.5 s from cold) and returns a :class:`LoopbackCluster` with the inventory
path and the facts of every node. Nodes are ``node2``…``node4`` on 127.0.0.2…127.0.0.4, sshd on port
2222, each with its own dockerd (``node.docker_host``) whose image store starts empty.

Tests under ``tests/cluster/`` get the fixtures from here. Tests elsewhere load this file by path and
re-export the fixtures, as ``tests/integration/test_cluster_infra.py`` does (``_load_cluster_fixtures``).

Failure tests use ``cluster.kill_sshd(node)``, ``cluster.kill_dockerd(node)`` and
``cluster.start_node(node)``; a test that kills something must restart it (``restore_nodes`` does).

This file must not import madengine itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO_ROOT / "tests" / "infra" / "cluster.sh"
CLUSTER_SIZE = 3
DOCKER_CLI = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
UP_HINT = "run `bash tests/infra/up.sh && bash tests/infra/cluster.sh up 3` (as root) first"


@dataclass(frozen=True)
class ClusterNode:
    """One test node: an sshd on ``address:port`` and a dockerd on ``docker_host``."""

    name: str  # inventory hostname, e.g. "node2"
    index: int  # K in 127.0.0.K
    address: str
    port: int
    docker_host: str  # unix:///…/nodeK/docker.sock (inventory var mad_docker_host)
    workdir: Path  # inventory var mad_workdir
    node_dir: Path  # keys, configs, logs, data-root of this node

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this node's engine (from the test machine, not over ssh)."""
        env = {**os.environ, "DOCKER_HOST": self.docker_host}
        env.pop("DOCKER_CONTEXT", None)
        return subprocess.run(
            [DOCKER_CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=check
        )


@dataclass(frozen=True)
class LoopbackCluster:
    """What ``cluster.sh up`` wrote: inventory, keys, and the nodes in inventory order."""

    cluster_dir: Path
    inventory: Path
    client_key: Path
    known_hosts: Path
    group: str
    nodes: tuple[ClusterNode, ...]

    def node(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.name == name)

    def ssh_argv(self, node: ClusterNode, *command: str, known_hosts: Path | None = None) -> list[str]:
        """An ``ssh`` command line to ``root@node`` with host-key checking on (``-F /dev/null``)."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=5",
            "-p",
            str(node.port),
            f"root@{node.address}",
            *command,
        ]

    def ssh(
        self, node: ClusterNode, command: str, *, known_hosts: Path | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.ssh_argv(node, command, known_hosts=known_hosts),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    # Failure injection (tests/infra/cluster.sh kill-sshd / kill-dockerd / start-node).
    def kill_sshd(self, node: ClusterNode, *, listener_only: bool = False) -> None:
        """SIGKILL the node's sshd (and its open sessions unless ``listener_only``): the host is unreachable."""
        _cluster_sh("kill-sshd", str(node.index), *(["--listener-only"] if listener_only else []))

    def kill_dockerd(self, node: ClusterNode) -> None:
        """SIGKILL the node's dockerd (and with it its containerd): its socket stops answering."""
        _cluster_sh("kill-dockerd", str(node.index))

    def start_node(self, node: ClusterNode) -> None:
        """Restart whatever of the node is not running, and wait until ssh and docker answer."""
        _cluster_sh("start-node", str(node.index), timeout=180)


def _cluster_sh(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["bash", str(CLUSTER_SH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cluster.sh {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


def load_cluster(cluster_json: Path) -> LoopbackCluster:
    data = json.loads(cluster_json.read_text())
    nodes = tuple(
        ClusterNode(
            name=n["name"],
            index=n["index"],
            address=n["address"],
            port=n["port"],
            docker_host=n["docker_host"],
            workdir=Path(n["workdir"]),
            node_dir=Path(n["node_dir"]),
        )
        for n in data["nodes"]
    )
    return LoopbackCluster(
        cluster_dir=Path(data["cluster_dir"]),
        inventory=Path(data["inventory"]),
        client_key=Path(data["client_key"]),
        known_hosts=Path(data["known_hosts"]),
        group=data["group"],
        nodes=nodes,
    )


@contextlib.contextmanager
def _tests_lock() -> Iterator[None]:
    """The lock a cluster test holds while it uses (or kills) nodes (``cluster_lock``): a pytest session
    starting meanwhile on this machine must not restart a node that such a test has just killed."""
    cluster_dir = Path(os.environ.get("MADENGINE_CLUSTER_DIR")
                       or Path(os.environ.get("MADENGINE_TEST_STATE_DIR", "/var/lib/madengine-test")) / "cluster")
    cluster_dir.mkdir(parents=True, exist_ok=True)
    with open(cluster_dir / "tests.lock", "a+") as handle:
        deadline = time.monotonic() + 1800
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{cluster_dir / 'tests.lock'} held by another session for 30 min") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@pytest.fixture
def cluster_lock(cluster: LoopbackCluster) -> Iterator[None]:
    """One cluster test at a time on this machine: several pytest sessions may share the loopback nodes,
    and a test that kills a node's sshd or dockerd must not run beside one that needs them."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(_tests_lock())
        except RuntimeError as exc:  # the lock was not ours within 30 min
            pytest.fail(str(exc), pytrace=False)
        yield


@pytest.fixture(scope="session")
def cluster() -> LoopbackCluster:
    """3 loopback test nodes, up (``cluster.sh up 3``); their inventory and facts."""
    if os.environ.get("MADENGINE_NO_DOCKER", "") == "1":
        pytest.skip("MADENGINE_NO_DOCKER=1")
    if os.geteuid() != 0:
        pytest.fail(f"the test cluster needs root; {UP_HINT}", pytrace=False)
    try:
        with _tests_lock():
            proc = _cluster_sh("up", str(CLUSTER_SIZE), timeout=300)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"{exc}\n{UP_HINT}", pytrace=False)
    inventory = Path(proc.stdout.strip().splitlines()[-1])
    loaded = load_cluster(inventory.with_name("cluster.json"))
    assert loaded.inventory == inventory
    assert len(loaded.nodes) == CLUSTER_SIZE
    return loaded


@pytest.fixture
def restore_nodes(cluster: LoopbackCluster) -> Iterator[None]:
    """For tests that kill a node's sshd or dockerd: afterwards every node is started again."""
    yield
    _cluster_sh("up", str(CLUSTER_SIZE), timeout=300)  # restarts whatever is down, all nodes at once
