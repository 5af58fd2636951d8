"""Cluster fan-out overhead and shard makespan of `madengine-cli run --inventory` on the loopback test nodes.

Part 1, fan-out overhead (replicate mode, 3 nodes x 4 trivial models), measured in the same run, rounds
alternating:
  * wall: ``madengine-cli run --inventory INV --manifest-file build_manifest.json`` end to end, as a user
    runs it (process start, plan, ansible-runner, facts, image check, sync, 4 model runs per host, fetch,
    rows into perf.csv);
  * ideal: the slowest host's summed container time (``test_duration`` of its rows in perf.csv);
  * ping floor: ``ansible all -i INV -m ping`` on the same inventory (fresh ssh masters, as the run has).
  Target: wall - ideal <= ping + 3 s + 0.5 s x models.  The images are pulled once before the rounds (a
  warm-up run whose time, with the pulls, is printed too), so the rounds measure the fan-out, not the
  registry.  Each round also prints where the CPU went (the CLI and Ansible on the controller, the
  modules on the hosts, the hosts' engines, the whole machine): the loopback nodes share the
  controller's CPUs, so on a small machine the fan-out is CPU-bound.  The last round's per-task times
  (runner events) show where the wall time went.
Part 2, shard makespan: 12 models sleeping 1..4 s (26 s in all) on 3 nodes, ``--distribute shard``, once
with the estimates from the models' ``timeout`` (no history yet) and once from perf.csv history; then the
same mix 3x longer (3..12 s, 78 s in all; ``BENCH_SHARD_SCALES``, default ``1,3``):
  * schedule makespan: the slowest host's summed container time, against the best possible split of the
    same measured durations (exhaustive search) and the sum/3 lower bound;
  * models phase: from the first model start to the last model end (runner events), which adds each
    model's fixed cost (module start, container create/start/remove, ssh) on its host; printed against the
    best split of the container times and against the best split of the per-model wall times.
  Target: within 15 % of the best split (reported for both the schedule and the models phase).

Needs tests/infra/up.sh and ``tests/infra/cluster.sh up 3``. Run: ``python3 benchmarks/bench_cluster.py``
(``BENCH_ROUNDS``, default 5; ``BENCH_PARTS``, default ``fanout,shard``; ``BENCH_INVENTORY``, default the
test cluster's). Everything it creates (images on the main engine and the nodes, registry repositories,
the temp MAD tree) is removed at the end.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fcntl
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INVENTORY = Path(os.environ.get("BENCH_INVENTORY", "/var/lib/madengine-test/cluster/inventory.yml"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
PARTS = os.environ.get("BENCH_PARTS", "fanout,shard").split(",")
REGISTRY = "127.0.0.1:5000"
BASE = "madengine-base:bookworm"
CONTEXT = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'
N_TRIVIAL = 4
SHARD_SLEEPS = [4, 3.5, 3, 3, 2.5, 2, 2, 1.5, 1.5, 1, 1, 1]
# The same mix stretched: each model's fixed cost (an Ansible task, container create/start/remove) weighs
# less against longer models (real ones run for minutes).
SHARD_SCALES = [float(x) for x in os.environ.get("BENCH_SHARD_SCALES", "1,3").split(",")]
FANOUT_FIXED_S = 3.0
FANOUT_PER_MODEL_S = 0.5
SHARD_TARGET = 0.15
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ------------------------------------------------------------------------------------------- setup
def make_tree(root: Path, prefix: str) -> None:
    """4 trivial models and 12 sleepers sharing one Dockerfile (one image for all)."""
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "bench.Dockerfile").write_text(
        f"ARG BASE_DOCKER={BASE}\nFROM $BASE_DOCKER\nLABEL madengine.bench={prefix}\n")
    (root / "scripts" / "common").mkdir(parents=True)
    (root / "scripts" / "common" / "tools.json").write_text('{"tools": {}}\n')
    models = []
    (root / "scripts" / "trivial").mkdir(parents=True)
    (root / "scripts" / "trivial" / "run.sh").write_text('#!/bin/bash\necho "performance: $((RANDOM + 1)) ops"\n')
    for i in range(N_TRIVIAL):
        models.append({"name": f"{prefix}t{i}", "tags": [f"{prefix}trivial"], "dockerfile": "docker/bench",
                       "scripts": "scripts/trivial/run.sh", "n_gpus": "1"})
    for scale in SHARD_SCALES:
        for i, base in enumerate(SHARD_SLEEPS):
            sleep = base * scale
            folder = root / "scripts" / f"sleep{scale:g}x{i:02d}"
            folder.mkdir(parents=True)
            folder.joinpath("run.sh").write_text(f'#!/bin/bash\nsleep {sleep:g}\necho "performance: {sleep:g} naps"\n')
            # A timeout proportional to the expected duration: the scheduler's estimate without history.
            models.append({"name": f"{prefix}s{i:02d}x{scale:g}", "tags": [f"{prefix}shard{scale:g}"],
                           "dockerfile": "docker/bench", "scripts": f"scripts/sleep{scale:g}x{i:02d}/run.sh",
                           "n_gpus": "1", "timeout": int(60 + 20 * sleep)})
    (root / "models.json").write_text(json.dumps(models, indent=1))


def madengine_cli() -> list[str]:
    exe = Path(sys.executable).with_name("madengine-cli")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from madengine.cli.app import main; main()"]


def ansible_bin(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else (shutil.which(name) or name)


def docker_cli() -> str:
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def env() -> dict[str, str]:
    out = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8", COLUMNS="200")
    out["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), out.get("PATH", "/usr/bin:/bin")])
    out.pop("DOCKER_HOST", None)
    return out


def build(mad: Path, tag: str, manifest: str) -> None:
    done = subprocess.run(madengine_cli() + ["build", "--tags", tag, "-c", CONTEXT, "--registry", REGISTRY,
                                             "--manifest-output", manifest],
                          cwd=mad, env=env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"build failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def node_docker_hosts() -> dict[str, str]:
    import yaml

    inv = yaml.safe_load(INVENTORY.read_text())
    hosts: dict[str, str] = {}

    def walk(group: dict) -> None:
        for name, hv in (group.get("hosts") or {}).items():
            hosts[name] = (hv or {}).get("mad_docker_host", "unix:///var/run/docker.sock")
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(inv.get("all") or {})
    return hosts


# ------------------------------------------------------------------------------------------- measuring
HZ = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: str, children: bool) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / HZ


def _pids(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout.split()


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds so far of: this process's children (the CLI, ansible, ssh), the nodes' sshd listeners
    with their reaped sessions (modules on the hosts), the nodes' dockerd/containerd, the whole machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cluster = str(INVENTORY.parent)
    stat = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return {
        "controller": usage.ru_utime + usage.ru_stime,
        "host modules": sum(_proc_cpu(p, True) for p in _pids(f"sshd: /usr/sbin/sshd -D -e -f {cluster}/node")),
        "host engines": sum(_proc_cpu(p, False) for p in _pids(f"{cluster}/node[0-9]+/(daemon.json|exec/containerd)")),
        "machine": sum(int(x) for x in stat[:3] + stat[5:8]) / HZ,
        "cpus": float(os.cpu_count() or 1),
    }


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> str:
    parts = [f"{k} {after[k] - before[k]:.1f}" for k in ("controller", "host modules", "host engines", "machine")]
    return "CPU-s: " + ", ".join(parts) + f" (on {int(after['cpus'])} CPUs)"


def run_cli(mad: Path, manifest: str, out: str, *extra: str) -> tuple[float, Path]:
    start = time.perf_counter()
    done = subprocess.run(madengine_cli() + ["run", "--inventory", str(INVENTORY), "--manifest-file", manifest,
                                             "--output", out, *extra],
                          cwd=mad, env=env(), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"madengine-cli run failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    run_dir = max((mad / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return elapsed, run_dir


def ping() -> float:
    control = Path(tempfile.mkdtemp(prefix="mad-bp-", dir="/tmp"))
    try:
        start = time.perf_counter()
        done = subprocess.run([ansible_bin("ansible"), "all", "-i", str(INVENTORY), "-m", "ping"],
                              env=dict(env(), ANSIBLE_SSH_CONTROL_PATH_DIR=str(control), ANSIBLE_PIPELINING="True"),
                              capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"ansible -m ping failed:\n{done.stdout}{done.stderr}")
        return elapsed
    finally:
        for sock in control.iterdir():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, check=False)
        shutil.rmtree(control, ignore_errors=True)


def rows_of(path: Path, run_id: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row["run_id"] == run_id]


def host_sums(rows: list[dict[str, str]]) -> dict[str, float]:
    sums: dict[str, float] = {}
    for row in rows:
        if row["status"] != "SUCCESS":
            raise SystemExit(f"a model failed: {row['host']} {row['model']} {row['reason']}")
        sums[row["host"]] = sums.get(row["host"], 0.0) + float(row["test_duration"])
    return sums


def event_files(run_dir: Path) -> list[Path]:
    """The runner's event files of a run (the first play: ``artifacts/play-1/``; no retries here)."""
    return sorted((run_dir / "artifacts").glob("play*/job_events/*.json"))


def created(event: dict) -> float:
    """An event's time (ansible-runner writes UTC without an offset)."""
    when = dt.datetime.fromisoformat(event["created"])
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()


def item_walls(run_dir: Path) -> list[float]:
    """Each model's wall time on its host, overhead included: from the run task's start (first model)
    or the previous model's result to this model's result (runner events)."""
    last: dict[str, float] = {}
    walls = []
    events = [json.loads(path.read_text()) for path in event_files(run_dir)]
    for event in sorted(events, key=lambda e: e["counter"]):
        data = event.get("event_data") or {}
        if data.get("task_action") not in ("mad.engine.run_model", "run_model"):
            continue
        if event["event"] == "runner_on_start":
            last[data["host"]] = created(event)
        elif event["event"] == "runner_item_on_ok":
            walls.append(created(event) - last[data["host"]])
            last[data["host"]] = created(event)
    return walls


def models_phase(run_dir: Path) -> float:
    """Seconds from the first 'Run the models' start to its last per-host end (runner events)."""
    starts, ends = [], []
    for path in event_files(run_dir):
        event = json.loads(path.read_text())
        data = event.get("event_data") or {}
        if data.get("task_action") not in ("mad.engine.run_model", "run_model"):
            continue
        when = created(event)
        if event["event"] == "runner_on_start":
            starts.append(when)
        elif event["event"] in ("runner_on_ok", "runner_on_failed"):
            ends.append(when)
    return max(ends) - min(starts)


def task_breakdown(run_dir: Path) -> list[tuple[str, float]]:
    """Per task of the play: seconds from its start to the start of the next (runner events)."""
    starts: list[tuple[float, str]] = []
    last = 0.0
    for path in event_files(run_dir):
        event = json.loads(path.read_text())
        when = created(event)
        last = max(last, when)
        if event["event"] == "playbook_on_task_start":
            starts.append((when, str((event.get("event_data") or {}).get("task") or "?")))
    starts.sort()
    return [(name.split(" (")[0][:48], (starts[i + 1][0] if i + 1 < len(starts) else last) - when)
            for i, (when, name) in enumerate(starts)]


def best_split(durations: list[float], bins: int = 3) -> float:
    """The optimal makespan of ``durations`` on ``bins`` identical machines (exhaustive, symmetry-pruned)."""
    best = float("inf")
    order = sorted(durations, reverse=True)

    def place(i: int, loads: list[float]) -> None:
        nonlocal best
        if max(loads) >= best:
            return
        if i == len(order):
            best = max(loads)
            return
        seen = set()
        for b in range(bins):
            if loads[b] in seen:
                continue
            seen.add(loads[b])
            loads[b] += order[i]
            place(i + 1, loads)
            loads[b] -= order[i]

    place(0, [0.0] * bins)
    return best


# ------------------------------------------------------------------------------------------- cleanup
def cleanup(prefix: str, mad: Path) -> None:
    for docker_host in node_docker_hosts().values():
        node_env = dict(env(), DOCKER_HOST=docker_host)
        ids = subprocess.run([docker_cli(), "images", "-q", "--filter", f"label=madengine.bench={prefix}"],
                             env=node_env, capture_output=True, text=True, check=False).stdout.split()
        for image_id in dict.fromkeys(ids):
            subprocess.run([docker_cli(), "rmi", "-f", image_id], env=node_env, capture_output=True, check=False)
    ids = subprocess.run([docker_cli(), "images", "-q", "--filter", f"label=madengine.bench={prefix}"],
                         env=env(), capture_output=True, text=True, check=False).stdout.split()
    for image_id in dict.fromkeys(ids):
        subprocess.run([docker_cli(), "rmi", "-f", image_id], env=env(), capture_output=True, check=False)
    for manifest in [mad / "trivial.json", *(mad / f"shard{scale:g}.json" for scale in SHARD_SCALES)]:
        with contextlib.suppress(ValueError, KeyError, OSError, AttributeError):
            for image in json.loads(manifest.read_text()).get("built_images", {}).values():
                ref = image.get("registry_image") or ""
                if "@" in ref:
                    repo, digest = ref.split("/", 1)[1].split("@")
                    with contextlib.suppress(OSError, urllib.error.HTTPError):
                        _HTTP.open(urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/manifests/{digest}",
                                                          method="DELETE"), timeout=10).close()


# ------------------------------------------------------------------------------------------- main
def fanout(mad: Path, hosts: list[str]) -> None:
    print(f"fan-out: {len(hosts)} nodes x {N_TRIVIAL} trivial models, replicate, {ROUNDS} round(s)")
    cold, run_dir = run_cli(mad, "trivial.json", "warmup.csv")
    print(f"  warm-up run (pulls the image on every node): {cold:.2f} s")
    walls, ideals, pings, overheads = [], [], [], []
    t_last = time.time()
    for r in range(ROUNDS):
        pings.append(ping())
        t_last = time.time()
        before = cpu_snapshot()
        wall, run_dir = run_cli(mad, "trivial.json", "fanout.csv")
        time.sleep(0.3)  # the ssh sessions of the run are reaped: their CPU shows in the sshd listeners
        cpu = cpu_delta(before, cpu_snapshot())
        sums = host_sums(rows_of(mad / "fanout.csv", run_dir.name))
        if len(sums) != len(hosts):
            raise SystemExit(f"rows from {sorted(sums)} only")
        walls.append(wall)
        ideals.append(max(sums.values()))
        overheads.append(wall - ideals[-1] - pings[-1])
        print(f"  round {r + 1}: wall {wall:.2f} s, ideal {ideals[-1]:.2f} s, ping {pings[-1]:.2f} s, "
              f"models phase {models_phase(run_dir):.2f} s, overhead over ping {overheads[-1]:.2f} s")
        print(f"           {cpu}")
    events = event_files(run_dir)
    first = min(created(json.loads(path.read_text())) for path in events)
    before = cpu_snapshot()
    ping()
    time.sleep(0.3)
    print(f"  ping {cpu_delta(before, cpu_snapshot())}")
    print(f"  last round, per task (the play's first event came {first - t_last:.2f} s after the CLI started):")
    for name, seconds in task_breakdown(run_dir):
        print(f"    {seconds:6.2f} s  {name}")
    target = FANOUT_FIXED_S + FANOUT_PER_MODEL_S * N_TRIVIAL
    med = statistics.median(overheads)
    print(f"  median: wall {statistics.median(walls):.2f} s, ideal {statistics.median(ideals):.2f} s, "
          f"ping {statistics.median(pings):.2f} s")
    verdict = "OK" if med <= target else "MISSED"
    print(f"  overhead over the ping floor: {med:.2f} s (target <= {target:.1f} s: "
          f"{FANOUT_FIXED_S:.0f} s + {FANOUT_PER_MODEL_S} s x {N_TRIVIAL}) -> {verdict}")


def shard(mad: Path, hosts: list[str], prefix: str, scale: float) -> None:
    sleeps = [s * scale for s in SHARD_SLEEPS]
    print(f"shard: {len(sleeps)} models sleeping {min(sleeps):g}..{max(sleeps):g} s "
          f"({sum(sleeps):g} s in all) on {len(hosts)} nodes")
    verdicts = []
    manifest, perf = f"shard{scale:g}.json", f"shard{scale:g}.csv"
    # The same perf.csv twice: the first run has no history, the second plans from the first's durations.
    for label in ("estimates from timeout", "estimates from perf.csv history"):
        wall, run_dir = run_cli(mad, manifest, perf, "--distribute", "shard")
        rows = rows_of(mad / perf, run_dir.name)
        sums = host_sums(rows)
        durations = [float(row["test_duration"]) for row in rows]
        best = best_split(durations, len(hosts))
        bound = sum(durations) / len(hosts)
        schedule = max(sums.values())
        phase = models_phase(run_dir)
        split = {h: sorted(row["model"][len(prefix):].split("x")[0] for row in rows if row["host"] == h)
                 for h in sorted(sums)}
        print(f"  {label}: wall {wall:.2f} s; split {split}")
        print(f"    schedule makespan {schedule:.2f} s vs best split {best:.2f} s "
              f"(+{100 * (schedule / best - 1):.1f} %), sum/3 bound {bound:.2f} s")
        print(f"    models phase {phase:.2f} s vs best split {best:.2f} s (+{100 * (phase / best - 1):.1f} %)")
        walls = item_walls(run_dir)
        best_walls = best_split(walls, len(hosts))
        print(f"    per-model wall {statistics.mean(walls) - statistics.mean(durations):.2f} s over the container "
              f"time on average; models phase vs the best split of the per-model walls {best_walls:.2f} s: "
              f"+{100 * (phase / best_walls - 1):.1f} %")
        verdicts.append((schedule / best - 1, phase / best - 1))
    worst_schedule = max(v[0] for v in verdicts)
    worst_phase = max(v[1] for v in verdicts)
    print(f"  target within {100 * SHARD_TARGET:.0f} % of the best split: schedule makespan "
          f"{'OK' if worst_schedule <= SHARD_TARGET else 'MISSED'} (worst +{100 * worst_schedule:.1f} %); "
          f"models phase wall {'OK' if worst_phase <= SHARD_TARGET else 'MISSED'} (worst +{100 * worst_phase:.1f} %)")


def main() -> int:
    if not INVENTORY.is_file():
        raise SystemExit(f"no inventory at {INVENTORY}: run `bash tests/infra/cluster.sh up 3` first")
    # The cluster tests' lock (tests/cluster/test_run_inventory.py): they need the nodes' image stores
    # empty and the nodes up, so the benchmark never runs beside them.
    lock = open(INVENTORY.parent / "tests.lock", "a+")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("waiting for the cluster tests to finish (they hold the lock)...", flush=True)
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    prefix = f"bc{secrets.token_hex(3)}"
    tmp = Path(tempfile.mkdtemp(prefix="madengine-bench-cluster-"))
    mad = tmp / "mad"
    hosts = list(node_docker_hosts())
    try:
        make_tree(mad, prefix)
        if "fanout" in PARTS:
            build(mad, f"{prefix}trivial", "trivial.json")
            fanout(mad, hosts)
        if "shard" in PARTS:
            for scale in SHARD_SCALES:
                build(mad, f"{prefix}shard{scale:g}", f"shard{scale:g}.json")
                shard(mad, hosts, prefix, scale)
    finally:
        cleanup(prefix, mad)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
