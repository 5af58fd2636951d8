"""Cluster runs that are interrupted, killed, handed secrets, refused a host key, or spread over 8 nodes.

Issue 16 items 1, 2, 3, 11 and 13, on the real loopback nodes (tests/infra/cluster.sh) with the CLI as a
subprocess. Processes of a run on the controller are found by the MAD tree's path in their command line
(ansible-playbook and its workers carry it) and, for the ssh masters, by the run's ControlPath dir.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import yaml

# The module's fixtures (`mad` and the cluster lock it takes) are reused, not copied.
from test_run_inventory import CTX, NODES, OK, REPO, cells, cli_command, cli_env, mad, nap, wait_for  # noqa: F401

pytestmark = pytest.mark.docker


def _cmdlines() -> dict[int, str]:
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                    out[int(entry.name)] = handle.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return out


def run_processes(tree) -> list[str]:
    """Processes of this test's run on the controller: ansible-playbook (its args name the MAD tree's
    runs/ dir) and its workers, and ssh masters of a madengine ControlPath dir."""
    mine = str(tree.root)
    return [f"{pid}: {cmd}" for pid, cmd in _cmdlines().items()
            if pid != os.getpid() and (mine in cmd and "madengine-cli" not in cmd and "pytest" not in cmd
                                       or (re.search(r'ControlPath="?/tmp/mad-cp-', cmd) and cmd.startswith("ssh")))]


def _artifacts(tree) -> list[str]:
    [run_dir] = tree.run_dirs()
    return sorted(p.name for p in (run_dir / "artifacts").iterdir())


def _start(tree, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([*cli_command(), "run", "--manifest-file", "build_manifest.json", *args],
                            cwd=tree.root, env=env or cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _no_containers(tree, cluster) -> bool:
    return not any(tree.node_containers(node) for node in cluster.nodes)


# ------------------------------------------------------------------------------------- item 1: Ctrl-C
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_stops_the_play_everywhere_and_resume_finishes(mad, cluster, sig) -> None:  # noqa: F811
    first = mad.add("first", OK)
    long = mad.add("long", nap(20, "long-started"))
    last = mad.add("last", OK)
    mad.build()
    proc = _start(mad, "--inventory", mad.inventory, "--retries", "2")
    try:
        for node in cluster.nodes:
            mad.wait_running(node, long)
        assert run_processes(mad), "no ansible-playbook found for this run"
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert took <= 20, f"exit {took:.1f} s after the signal"
    assert "Interrupted" in err and "retrying" not in out + err, out + err
    # Finished rows kept, nothing else (no FAILURE row for what was cut short, no retry's row).
    assert cells(mad.rows()) == Counter({(host, first): 1 for host in NODES}), mad.rows()
    assert {row["status"] for row in mad.rows()} == {"SUCCESS"}
    assert _artifacts(mad) == ["play-1"]
    wait_for(lambda: not run_processes(mad), 5, "no process of the run left on the controller")
    wait_for(lambda: _no_containers(mad, cluster), 15, "the run's containers removed on every host")

    [run_dir] = mad.run_dirs()
    res = mad.run("--resume", run_dir.name)
    assert res.code == 0, res.text
    rows = mad.rows()
    assert cells(rows) == Counter({(h, n): 1 for h in NODES for n in (first, long, last)})
    assert {row["status"] for row in rows} == {"SUCCESS"}, rows
    assert _artifacts(mad) == ["play-1", "play-2"]  # the first attempt's artifacts are kept
    assert not run_processes(mad)


# ---------------------------------------------------------------------------- item 2: kill -9, resume
def test_kill_9_takes_the_play_and_its_secrets_and_resume_cleans_up(mad, cluster, tmp_path: Path) -> None:  # noqa: F811
    first = mad.add("first", OK)
    long = mad.add("long", nap(20, "long-started"))
    mad.build()
    secret = "Sx" + secrets.token_hex(16)
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    env = cli_env(MAD_SECRETS_KILLTEST=secret, XDG_RUNTIME_DIR=str(runtime))
    proc = _start(mad, "--inventory", mad.inventory, env=env)
    try:
        for node in cluster.nodes:
            mad.wait_running(node, long)
        playing = run_processes(mad)
        assert playing, "no ansible-playbook found for this run"
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    wait_for(lambda: not run_processes(mad), 15, f"the play to die with the CLI (was: {playing})")

    def secret_files() -> list[str]:
        places = [runtime, Path.home() / ".cache" / "madengine" / "secrets", *Path("/tmp").glob("madengine-secrets-*")]
        found = []
        for place in places:
            for path in (place.rglob("*") if place.is_dir() else []):
                try:
                    if path.is_file() and secret.encode() in path.read_bytes():
                        found.append(str(path))
                except OSError:
                    continue
        return found

    wait_for(lambda: not secret_files(), 15, "the secrets file removed after the kill")
    wait_for(lambda: _no_containers(mad, cluster), 15, "the killed run's containers removed on every host")
    [run_dir] = mad.run_dirs()
    events_before = len(list((run_dir / "artifacts" / "play-1" / "job_events").iterdir()))
    assert events_before

    res = mad.run("--resume", run_dir.name, env=env)
    assert res.code == 0, res.text
    rows = mad.rows()
    assert cells(rows) == Counter({(h, n): 1 for h in NODES for n in (first, long)}), rows
    assert {row["status"] for row in rows} == {"SUCCESS"}, rows
    assert _artifacts(mad) == ["play-1", "play-2"]
    assert len(list((run_dir / "artifacts" / "play-1" / "job_events").iterdir())) == events_before
    assert not secret_files() and not run_processes(mad)


def test_a_second_cli_on_a_running_run_is_refused(mad, cluster) -> None:  # noqa: F811
    mad.add("long", nap(20, "long-started"))
    mad.build()
    proc = _start(mad, "--inventory", mad.inventory)
    try:
        mad.wait_running(cluster.nodes[0], mad.name("long"))
        [run_dir] = mad.run_dirs()
        res = mad.run("--resume", run_dir.name, timeout=60)
        assert res.code == 4, res.text
        assert f"Run {run_dir.name} is still in progress" in " ".join(res.err.split()), res.text
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130


# ------------------------------------------------------------------------------ item 3: context secrets
def test_context_secret_reaches_the_container_and_no_file_event_or_argv(mad, cluster) -> None:  # noqa: F811
    secret = "Tk" + secrets.token_hex(15)  # 32 characters
    model = mad.add("tok", 'sleep 3\necho "performance: ${#MY_API_TOKEN} chars"\n')
    mad.build()
    ctx = json.dumps({**json.loads(CTX), "docker_env_vars": {"MY_API_TOKEN": secret, "PLAIN": "visible"}})
    proc = _start(mad, "--inventory", mad.inventory, "-c", ctx)
    seen: list[str] = []
    try:
        while proc.poll() is None:  # `ps` during the run: no argv holds it (the CLI's own -c aside)
            ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
            seen += [line for line in ps.splitlines() if secret in line and str(proc.pid) != line.split()[0]]
            time.sleep(0.1)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert not seen, seen
    rows = mad.rows()
    assert cells(rows) == Counter({(h, model): 1 for h in NODES})
    assert {row["performance"] for row in rows} == {"32"}  # the container got it
    assert secret not in out + err
    [run_dir] = mad.run_dirs()
    assert list(run_dir.rglob("job_events/*.json"))
    leaks = [str(p) for p in mad.root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaks, leaks
    for node in cluster.nodes:
        results = node.workdir / "results" / run_dir.name
        assert not [str(p) for p in results.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


# ---------------------------------------------------------------------------------- item 11: host keys
def _inventory(cluster, path: Path, common_args: str) -> Path:
    data = yaml.safe_load(cluster.inventory.read_text())
    for host in data["all"]["children"][cluster.group]["hosts"].values():
        host["ansible_ssh_common_args"] = common_args
    path.write_text(yaml.safe_dump(data))
    return path


def test_lab_mode_saves_no_host_key(mad, cluster, tmp_path: Path) -> None:  # noqa: F811
    model = mad.add("lab", OK)
    mad.build()
    known = tmp_path / "known_hosts"
    inventory = _inventory(cluster, tmp_path / "lab.yml", f"-o UserKnownHostsFile={known}")
    user_known = Path.home() / ".ssh" / "known_hosts"
    before = user_known.read_bytes() if user_known.exists() else None
    res = mad.run("--inventory", str(inventory), "--limit", "node2", "--insecure-skip-host-key-check")
    assert res.code == 0, res.text
    assert cells(mad.rows()) == Counter({("node2", model): 1})
    assert not known.exists() or not known.read_text().strip(), known.read_text()
    assert (user_known.read_bytes() if user_known.exists() else None) == before


def test_a_refused_host_key_is_named_and_not_retried(mad, cluster, tmp_path: Path) -> None:  # noqa: F811
    model = mad.add("strict", OK)
    mad.build()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    lines = [line for line in cluster.known_hosts.read_text().splitlines() if not line.startswith("[127.0.0.2]")]
    known.write_text("\n".join([*lines, f"[127.0.0.2]:2222 {' '.join(other)}"]) + "\n")
    inventory = _inventory(cluster, tmp_path / "strict.yml",
                           f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes")
    res = mad.run("--inventory", str(inventory), "--limit", "node2,node3", "--retries", "2")
    assert res.code == 3, res.text
    rows = {row["host"]: row for row in mad.rows()}
    assert rows["node3"]["status"] == "SUCCESS", rows
    reason = rows["node2"]["reason"]
    assert rows["node2"]["status"] == "FAILURE", rows
    assert reason.startswith("host key verification failed for node2: "), reason
    assert "retrying" not in res.text
    [run_dir] = mad.run_dirs()
    attempts = [json.loads(line) for line in (run_dir / "ledger.jsonl").read_text().splitlines() if line.strip()]
    assert [a["attempt"] for a in attempts if a.get("type") == "attempt" and a["host"] == "node2"] == [1]
    assert cells(mad.rows()) == Counter({("node2", model): 1, ("node3", model): 1})


# ------------------------------------------------------------------------------- item 13: 8 nodes free
def _cluster_sh(*args: str) -> str:
    return subprocess.run(["bash", str(REPO / "tests" / "infra" / "cluster.sh"), *args], capture_output=True,
                          text=True, timeout=600, check=True, stdin=subprocess.DEVNULL).stdout


def test_eight_nodes_take_no_longer_than_two(mad, cluster) -> None:  # noqa: F811
    """8 nodes × 2 models of 5 s: with the default forks (one per host) and the free strategy every host
    starts at once (with 5 forks in lockstep hosts 7–9 waited for the first five). The wall-time ratio
    against 2 nodes is printed; its target lives in the benchmark."""
    names = [mad.add(f"s{i}", nap(5, f"s{i}-started")) for i in range(2)]
    mad.build()
    inventory = Path(_cluster_sh("up", "8").strip().splitlines()[-1])
    eight = [f"node{k}" for k in range(2, 10)]
    try:
        started = time.monotonic()
        res2 = mad.run("--inventory", str(inventory), "--limit", "node2,node3", "--output", "two.csv")
        two = time.monotonic() - started
        assert res2.code == 0, res2.text
        started = time.monotonic()
        res8 = mad.run("--inventory", str(inventory), "--output", "eight.csv")
        wall8 = time.monotonic() - started
        assert res8.code == 0, res8.text
        assert cells(mad.rows("eight.csv")) == Counter({(h, n): 1 for h in eight for n in names})
        [run8] = [d for d in mad.run_dirs() if (d / "artifacts" / "play-1" / "command").exists()
                  and "--limit" not in (d / "artifacts" / "play-1" / "command").read_text()]
        command = json.loads((run8 / "artifacts" / "play-1" / "command").read_text())["command"]
        assert command[command.index("--forks") + 1] == "8", command  # one fork per host by default
        print(f"\nwall: 2 nodes {two:.1f} s, 8 nodes {wall8:.1f} s, ratio {wall8 / two:.2f}")
        # Not a timing target (the loopback nodes share this machine's CPUs; benchmarks measure that).
        # node2/node3 hold the images from the 2-node run, the other six pull first. With the free strategy
        # the warm hosts do not wait at the image task for the pulls; with one fork per host the cold ones
        # start together, not in waves.
        first: dict[str, float] = {}
        for row in mad.rows("eight.csv"):
            at = datetime.fromisoformat(row["started_at"]).timestamp()
            first[row["host"]] = min(at, first.get(row["host"], at))
        warm = {"node2", "node3"}
        cold = [at for host, at in first.items() if host not in warm]
        assert max(first[h] for h in warm) < min(cold), f"warm hosts waited for the others' pulls: {first}"
        spread = max(cold) - min(cold)
        assert spread < 5, f"the cold hosts' first models started {spread:.1f} s apart (waves): {first}"
    finally:
        for k in range(5, 10):
            node_docker = ["bash", str(REPO / "tests" / "infra" / "cluster.sh"), "docker", str(k)]
            ids = subprocess.run([*node_docker, "images", "-q"], capture_output=True, text=True).stdout.split()
            names_ = subprocess.run([*node_docker, "ps", "-aq"], capture_output=True, text=True).stdout.split()
            if names_:
                subprocess.run([*node_docker, "rm", "-f", *names_], capture_output=True)
            if ids:
                subprocess.run([*node_docker, "rmi", "-f", *ids], capture_output=True)
            subprocess.run(["bash", str(REPO / "tests" / "infra" / "cluster.sh"), "stop-node", str(k)],
                           capture_output=True, timeout=120)
        _cluster_sh("up", "3")
