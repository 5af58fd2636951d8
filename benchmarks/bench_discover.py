"""Discovery speed on a large synthetic MAD package, and on the real hub's cards.

Targets (issue 13): `madengine discover --tags all --json` over 5,000 models (the root models.json plus
200 scripts dirs, 50 of them dynamic get_models_json.py) as a whole process, median <= 0.30 s, and the
in-process discovery walk (`discover_models(root, ["all"])`) <= 60 ms; the share of start-up (`madengine
--version`: interpreter, imports, CLI) in the whole process is printed too.
Issue 14: discovery of the real cards (/work/shared/realmad, skipped when absent) and `build --dry-run
--tags all` on them (with one stand-in Dockerfile per prefix): whole-process time and peak memory.
Run: `python3 benchmarks/bench_discover.py` (from the repository root, or with madengine installed).
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WHOLE_TARGET_S = 0.30
WALK_TARGET_S = 0.060
REALMAD = Path("/work/shared/realmad")
N_MODELS = 5000
N_DIRS = 200
N_DYNAMIC = 50
N_ROOT = 1000

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DYNAMIC_TEMPLATE = '''\
from madengine.tools.discover_models import CustomModel


class LazyModel(CustomModel):
    def update_model(self):
        self.owner = "perf@example.com"


def list_models(params):
    bs = params.get("batch_size", "32")
    return [
        LazyModel(name=f"m{{i}}", tags=["synthetic", "dyn", "{dir}"], dockerfile="../../docker/base",
                  scripts="run.sh", n_gpus="1", args=f"--batch_size {{bs}} --variant {{i}}",
                  timeout=600, training_precision="fp16")
        for i in range({count})
    ]
'''


def _model(name: str, i: int, dockerfile: str, scripts: str, tags: list[str]) -> dict:
    return {
        "name": name, "url": "https://example.com/repo", "dockerfile": dockerfile, "scripts": scripts,
        "n_gpus": "-1" if i % 3 == 0 else "1", "owner": "perf@example.com",
        "training_precision": "fp16" if i % 2 else "", "tags": tags, "args": f"--variant {i}",
        "timeout": 3600, "multiple_results": f"perf_{i}.csv" if i % 5 == 0 else "",
    }


def make_tree(root: Path) -> None:
    """Write the synthetic package: N_ROOT root models, the rest spread evenly over N_DIRS dirs."""
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "base.Dockerfile").write_text("FROM scratch\n")
    root_models = [_model(f"root_model_{i}", i, "docker/base", f"scripts/d000/run{i % 7}.sh",
                          ["synthetic", "root", f"group{i % 10}"]) for i in range(N_ROOT)]
    (root / "models.json").write_text(json.dumps(root_models, indent=2))
    per_dir = (N_MODELS - N_ROOT) // N_DIRS
    for d in range(N_DIRS):
        name = f"d{d:03d}"
        folder = root / "scripts" / name
        folder.mkdir(parents=True)
        (folder / "run.sh").write_text("#!/bin/bash\necho 'performance: 1 x'\n")
        if d % (N_DIRS // N_DYNAMIC) == 0:
            (folder / "get_models_json.py").write_text(DYNAMIC_TEMPLATE.format(dir=name, count=per_dir))
        else:
            models = [_model(f"m{i}", i, "../../docker/base", "run.sh", ["synthetic", name])
                      for i in range(per_dir)]
            (folder / "models.json").write_text(json.dumps(models, indent=2))


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time (s) and peak RSS (KiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 2):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return wall, usage.ru_maxrss


def median_child(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, int]:
    results = [run_child(cmd, env) for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def stand_in_copy(source: Path, target: Path) -> None:
    """A copy of the real cards with one small stand-in Dockerfile per card prefix (none are kept)."""
    shutil.copytree(source, target)
    for path in target.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    for file in [target / "models.json", *target.glob("scripts/**/models.json")]:
        base = file.parent.relative_to(target).as_posix()
        for card in json.loads(file.read_text()):
            prefix = posixpath.normpath(posixpath.join(base, card["dockerfile"]) if base != "." else card["dockerfile"])
            out = target / f"{prefix}.ubuntu.amd.Dockerfile"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text('# CONTEXT {"gpu_vendor": "AMD", "guest_os": "UBUNTU"}\nFROM madengine-base:bookworm\n')


def main(runs: int = 9) -> int:
    from madengine.discover import discover_models

    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    cli = [sys.executable, "-c", "from madengine.cli.app import legacy_main; legacy_main()"]
    with tempfile.TemporaryDirectory(prefix="mad_bench_") as tmp:
        root = Path(tmp) / "MAD"
        make_tree(root)

        start = time.perf_counter()
        models = discover_models(root, ["all"])
        cold = time.perf_counter() - start
        warm = []
        for _ in range(runs):
            start = time.perf_counter()
            discover_models(root, ["all"])
            warm.append(time.perf_counter() - start)
        walk = statistics.median(warm)

        whole, whole_rss = median_child([*cli, "discover", "--tags", "all", "--json", "--mad-dir", str(root)], env,
                                        runs)
        startup, _ = median_child([*cli, "--version"], env, runs)
        bare, _ = median_child([sys.executable, "-c", "pass"], env, runs)

        real = None
        if REALMAD.is_dir():
            copy = Path(tmp) / "realmad"
            stand_in_copy(REALMAD, copy)
            ctx = '{"gpu_vendor": "AMD", "guest_os": "UBUNTU"}'
            real = (median_child([*cli, "discover", "--tags", "all", "--json", "--mad-dir", str(REALMAD)], env, runs),
                    median_child([*cli, "build", "--dry-run", "--json", "--tags", "all", "--mad-dir", str(copy),
                                  "-c", ctx], env, runs))

    dyn = sum(1 for m in models if m.source == "dynamic")
    print(f"synthetic MAD: {len(models)} models ({N_ROOT} root, {N_DIRS} scripts dirs, "
          f"{N_DYNAMIC} dynamic with {dyn} models); medians of {runs} runs")
    walk_ok, whole_ok = walk <= WALK_TARGET_S, whole <= WHOLE_TARGET_S
    print(f"in-process discover_models(all): median {walk * 1000:.0f} ms (first {cold * 1000:.0f} ms), "
          f"target {WALK_TARGET_S * 1000:.0f} ms -> {'met' if walk_ok else 'MISSED'}")
    print(f"whole process `madengine discover --tags all --json`: median {whole:.3f} s, peak RSS "
          f"{whole_rss / 1024:.0f} MiB, target {WHOLE_TARGET_S:.2f} s -> {'met' if whole_ok else 'MISSED'}")
    print(f"start-up (`madengine --version`) {startup:.3f} s = {startup / whole:.0%} of the whole process "
          f"(bare python3 {bare:.3f} s)")
    if real is None:
        print(f"real hub cards: skipped ({REALMAD} absent)")
    else:
        (d_wall, d_rss), (p_wall, p_rss) = real
        print(f"real hub cards (108): `discover --tags all --json` {d_wall:.3f} s, peak RSS {d_rss / 1024:.0f} MiB; "
              f"`build --dry-run --json --tags all` {p_wall:.3f} s, peak RSS {p_rss / 1024:.0f} MiB")
    return 0 if walk_ok and whole_ok else 1


if __name__ == "__main__":
    sys.exit(main())
