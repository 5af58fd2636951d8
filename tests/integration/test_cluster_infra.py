"""Prove the loopback test cluster from tests/infra/cluster.sh works.

Three nodes (node2…node4 on 127.0.0.2…4): ssh with host-key checking on, a separate docker engine per
node that pulls from the registry on 127.0.0.1:5000, an Ansible inventory that ``ansible -m ping``
accepts, and the failure-injection helpers (kill sshd / dockerd, restart) that cluster tests rely on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


def _load_cluster_fixtures():
    """tests/cluster/conftest.py, loaded by path (it only applies to tests/cluster/ otherwise)."""
    name = "madengine_tests_cluster_fixtures"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "cluster" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_fixtures = _load_cluster_fixtures()
cluster = _fixtures.cluster  # re-exported pytest fixtures
restore_nodes = _fixtures.restore_nodes
LoopbackCluster = _fixtures.LoopbackCluster
ClusterNode = _fixtures.ClusterNode

pytestmark = pytest.mark.docker

EXPECTED_NODES = [("node2", "127.0.0.2"), ("node3", "127.0.0.3"), ("node4", "127.0.0.4")]


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _image_present(node: ClusterNode, ref: str) -> bool:
    return node.docker("image", "inspect", ref, check=False).returncode == 0


###############################################################################
# inventory and ssh
###############################################################################
def test_inventory_lists_every_node_with_its_connection_vars(cluster: LoopbackCluster):
    import yaml  # PyYAML comes with ansible-core

    inv = yaml.safe_load(cluster.inventory.read_text())
    hosts = inv["all"]["children"]["mad_nodes"]["hosts"]
    assert [(name, hv["ansible_host"]) for name, hv in hosts.items()] == EXPECTED_NODES
    assert [n.name for n in cluster.nodes] == [name for name, _ in EXPECTED_NODES]
    common = f"-o UserKnownHostsFile={cluster.known_hosts} -o StrictHostKeyChecking=yes"
    for node in cluster.nodes:
        hv = hosts[node.name]
        assert hv == {
            "ansible_host": node.address,
            "ansible_port": 2222,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(cluster.client_key),
            "ansible_ssh_common_args": common,
            "ansible_python_interpreter": "/usr/bin/python3",
            "mad_docker_host": node.docker_host,
            "mad_workdir": str(node.workdir),
        }
        assert node.workdir.is_dir()
    # Nodes share this machine's filesystem: their work dirs and engines must not.
    assert len({n.workdir for n in cluster.nodes}) == len({n.docker_host for n in cluster.nodes}) == 3
    assert oct(cluster.client_key.stat().st_mode & 0o777) == "0o600"
    known = cluster.known_hosts.read_text().splitlines()
    for node in cluster.nodes:
        assert any(line.startswith(f"[{node.address}]:2222 ssh-ed25519 AAAA") for line in known), known


def test_ssh_to_each_node_with_host_key_checking(cluster: LoopbackCluster):
    for node in cluster.nodes:
        proc = cluster.ssh(node, 'echo "$(id -u) $SSH_CONNECTION"')
        assert proc.returncode == 0, proc.stderr
        uid, _client_ip, _client_port, server_ip, server_port = proc.stdout.split()
        # root, and really served by this node's sshd (address and port)
        assert (uid, server_ip, server_port) == ("0", node.address, "2222")


def test_ssh_fails_with_wrong_or_empty_known_hosts(cluster: LoopbackCluster, tmp_path: Path):
    node2, node3 = cluster.nodes[0], cluster.nodes[1]
    node3_key = (node3.node_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"[{node2.address}]:2222 {' '.join(node3_key)}\n")  # node3's key under node2's name
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    for known_hosts, message in ((wrong, "REMOTE HOST IDENTIFICATION HAS CHANGED"), (empty, "")):
        proc = cluster.ssh(node2, "true", known_hosts=known_hosts)
        assert proc.returncode == 255, (proc.returncode, proc.stderr)
        assert "Host key verification failed" in proc.stderr
        assert message in proc.stderr


###############################################################################
# docker engines
###############################################################################
def test_each_node_has_its_own_engine(cluster: LoopbackCluster, docker_client):
    main_id = docker_client.info()["ID"]
    ids = {}
    for node in cluster.nodes:
        info = json.loads(node.docker("info", "--format", "{{json .}}").stdout)
        ids[node.name] = info["ID"]
        assert info["DockerRootDir"] == str(node.node_dir / "data")
        # Same --bridge=none setup as the main engine: no default bridge, only host networking.
        networks = node.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert "bridge" not in networks and "host" in networks
        # The engine is reachable from an ssh session on the node through mad_docker_host.
        proc = cluster.ssh(node, f"DOCKER_HOST={node.docker_host} docker info --format '{{{{.ID}}}}'")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == info["ID"]
    assert len(set(ids.values())) == 3, ids
    assert main_id not in ids.values(), (main_id, ids)


@pytest.fixture(scope="module")
def pushed_image(docker_client, base_image, registry, cluster: LoopbackCluster) -> Iterator[dict[str, str]]:
    """The base image pushed from the main engine to 127.0.0.1:5000 under a fresh name; removed from the
    main engine, every node and the registry afterwards."""
    name = f"mt-cluster-{os.urandom(4).hex()}/base"
    ref = f"{registry}/{name}:v1"
    image = docker_client.images.get(base_image)
    image.tag(f"{registry}/{name}", "v1")
    digest = ""
    try:
        for event in docker_client.images.push(f"{registry}/{name}", tag="v1", stream=True, decode=True):
            assert "error" not in event, event
            digest = event.get("aux", {}).get("Digest", digest)
        assert digest.startswith("sha256:")
        yield {"ref": ref, "name": name, "digest": digest, "id": image.id}
    finally:
        for node in cluster.nodes:
            node.docker("image", "rm", "--force", ref, check=False)
        with contextlib.suppress(Exception):
            docker_client.images.remove(ref)
        if digest:
            req = urllib.request.Request(f"http://{registry}/v2/{name}/manifests/{digest}", method="DELETE")
            with contextlib.suppress(Exception), _no_proxy_opener().open(req, timeout=5):
                pass


def test_every_node_pulls_from_the_registry(cluster: LoopbackCluster, pushed_image):
    ref, image_id = pushed_image["ref"], pushed_image["id"]
    for node in cluster.nodes:
        # Not there before, not even under another name: the pull really transfers the image.
        assert not _image_present(node, image_id), f"{node.name} already has {image_id}"

    def pull_and_run(node: ClusterNode) -> tuple[list[str], str]:
        node.docker("pull", "--quiet", ref)
        digests = json.loads(node.docker("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout)
        out = node.docker("run", "--rm", "--network", "host", ref, "python3", "-c", "print('ran')").stdout
        return digests, out

    with ThreadPoolExecutor(len(cluster.nodes)) as pool:
        results = dict(zip(cluster.nodes, pool.map(pull_and_run, cluster.nodes), strict=True))
    for node, (digests, out) in results.items():
        assert f"{ref.rsplit(':', 1)[0]}@{pushed_image['digest']}" in digests, (node.name, digests)
        assert _image_present(node, image_id)
        assert out == "ran\n"


###############################################################################
# Ansible
###############################################################################
def _ansible_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}  # host key checking: default
    env.update(
        LC_ALL="C.UTF-8",  # Ansible refuses to start under a non-UTF-8 locale
        # A private ControlPath dir: no ControlMaster connection from another run is reused. Short,
        # because the socket path (dir + 10-char hash) must fit in a unix socket address.
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp),
        ANSIBLE_LOCAL_TEMP=str(tmp / "local"),
    )
    return env


def _ansible_bin() -> str:
    beside = Path(sys.executable).with_name("ansible")
    found = str(beside) if beside.exists() else shutil.which("ansible")
    if not found:
        pytest.fail("no `ansible` command (ansible-core is a dependency of madengine)", pytrace=False)
    return found


# ad-hoc output of the default callback: `node2 | SUCCESS => {` + indented JSON + `}` at column 0.
_ADHOC_RESULT = re.compile(r"^(\S+) \| (SUCCESS|CHANGED|FAILED!|UNREACHABLE!) => (\{.*?^\})$", re.M | re.S)


def _ansible_ping(cluster: LoopbackCluster, tmp: Path, *extra: str) -> tuple[int, dict[str, dict], str]:
    """`ansible -i INVENTORY mad_nodes -m ping`: exit code, {host: result with "status"}, all output."""
    # cwd outside the repo, so no ansible.cfg of the project changes the defaults under test.
    proc = subprocess.run(
        [_ansible_bin(), "-i", str(cluster.inventory), cluster.group, "-m", "ping", *extra],
        cwd=tmp,
        env=_ansible_env(tmp),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    hosts = {m[1]: {"status": m[2], **json.loads(m[3])} for m in _ADHOC_RESULT.finditer(proc.stdout)}
    return proc.returncode, hosts, proc.stdout + proc.stderr


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mcl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_ansible_ping_reaches_every_node(cluster: LoopbackCluster, short_tmp: Path):
    rc, hosts, output = _ansible_ping(cluster, short_tmp)
    assert rc == 0, output
    assert sorted(hosts) == [name for name, _ in EXPECTED_NODES], output
    for name, result in hosts.items():
        assert (result["status"], result["ping"]) == ("SUCCESS", "pong"), (name, result)


def test_ansible_checks_host_keys(cluster: LoopbackCluster, short_tmp: Path):
    # The same inventory with an empty known_hosts: every node is unreachable (exit 4), none is trusted.
    empty = short_tmp / "known_hosts_empty"
    empty.write_text("")
    args = f"ansible_ssh_common_args='-o UserKnownHostsFile={empty} -o StrictHostKeyChecking=yes'"
    rc, hosts, output = _ansible_ping(cluster, short_tmp, "-e", args)
    assert rc == 4, output
    assert sorted(hosts) == [name for name, _ in EXPECTED_NODES], output
    for name, result in hosts.items():
        assert result["status"] == "UNREACHABLE!" and result["unreachable"] is True, (name, result)
        assert "Host key verification failed" in result["msg"], (name, result)


###############################################################################
# failure injection (used by the cluster failure tests)
###############################################################################
def test_kill_sshd_and_dockerd_then_restart(cluster: LoopbackCluster, pushed_image, restore_nodes):
    victim, other = cluster.nodes[-1], cluster.nodes[0]
    engine_id = victim.docker("info", "--format", "{{.ID}}").stdout.strip()

    # An open session (like an Ansible ControlMaster connection) dies with the node's sshd.
    session = subprocess.Popen(
        cluster.ssh_argv(victim, "echo ready; sleep 120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert session.stdout and session.stdout.readline() == "ready\n"
        cluster.kill_sshd(victim)
        assert session.wait(timeout=15) != 0
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    refused = cluster.ssh(victim, "true")
    assert refused.returncode == 255 and "Connection refused" in refused.stderr, refused.stderr
    assert cluster.ssh(other, "true").returncode == 0  # the other nodes are not affected

    # dockerd killed while a container runs: the socket stops answering, the node's state survives.
    victim.docker("pull", "--quiet", pushed_image["ref"])
    victim.docker("run", "-d", "--network", "host", "--name", "mt-cluster-victim", pushed_image["ref"], "sleep", "300")
    try:
        cluster.kill_dockerd(victim)
        assert victim.docker("info", check=False).returncode != 0
        assert other.docker("info", check=False).returncode == 0

        cluster.start_node(victim)
        assert cluster.ssh(victim, "true").returncode == 0
        assert victim.docker("info", "--format", "{{.ID}}").stdout.strip() == engine_id
        # Without live-restore, the restarted engine stops what the killed one left running.
        state = victim.docker("inspect", "--format", "{{.State.Running}}", "mt-cluster-victim").stdout.strip()
        assert state == "false"
    finally:
        victim.docker("rm", "--force", "mt-cluster-victim", check=False)
