"""Per-model overhead of the local run phase: madengine vs plain `docker run`, 10 trivial models.

Compares, in the same run (the images are built first, outside the timing; the first round is a warm-up):
  * madengine: ``madengine-cli run --manifest-file build_manifest.json`` for 10 trivial models, end to end
    as a user runs it (process start, manifest, preflight, per model: image check, run directory, container
    create/start/logs/wait/remove, perf row appended to perf.csv, sysenv snapshot);
  * by hand: the same 10 containers with ``docker run --rm --network host IMAGE bash run.sh``, one after
    the other in one loop (the script is baked into the image, so nothing is mounted).
Rounds rotate the order. Per-model overhead = (median madengine - median by hand) / 10, target <= 0.5 s;
the ratio median(madengine) / median(by hand) is reported too. ``BENCH_SLEEP_S`` (default 0) makes each
model sleep, to show the overhead does not grow with the run time.

Needs tests/infra/up.sh (dockerd + madengine-base:bookworm). Run: `python3 benchmarks/bench_run.py`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_OVERHEAD_S = 0.5
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
N_MODELS = 10
SLEEP_S = float(os.environ.get("BENCH_SLEEP_S", "0"))
BASE = "madengine-base:bookworm"
CONTEXT = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'
RUN_SH = f'#!/bin/bash\nsleep {SLEEP_S:g}\necho "performance: $((RANDOM + 1)) items_per_second"\n'


def make_tree(root: Path, prefix: str) -> None:
    """10 models sharing one Dockerfile (run.sh baked in for the by-hand runs), so one image."""
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "run.sh").write_text(RUN_SH)
    (root / "docker" / "bench.Dockerfile").write_text(
        f"ARG BASE_DOCKER={BASE}\nFROM $BASE_DOCKER\nLABEL madengine.bench={prefix}\n"
        "COPY run.sh /workspace/run.sh\nWORKDIR /workspace\n")
    (root / "scripts" / "bench").mkdir(parents=True)
    (root / "scripts" / "bench" / "run.sh").write_text(RUN_SH)
    models = [{"name": f"{prefix}m{i:02d}", "tags": ["bench"], "dockerfile": "docker/bench",
               "scripts": "scripts/bench/run.sh", "n_gpus": "1"} for i in range(N_MODELS)]
    (root / "models.json").write_text(json.dumps(models))


def docker_cli() -> str:
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def madengine_cli() -> list[str]:
    exe = Path(sys.executable).with_name("madengine-cli")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from madengine.cli.app import main; main()"]


def build(mad: Path) -> list[str]:
    """Build the images; returns the image each model runs in (from the manifest), in model order."""
    subprocess.run(madengine_cli() + ["build", "--tags", "bench", "-c", CONTEXT], cwd=mad, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = json.loads((mad / "build_manifest.json").read_text())
    images = [model["docker_image"] for model in manifest["built_models"].values()]
    assert len(images) == N_MODELS, images
    return images


def run_madengine(mad: Path, out: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(madengine_cli() + ["run", "--manifest-file", str(mad / "build_manifest.json"),
                                             "--output", str(out / "perf.csv")],
                          cwd=mad, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"madengine-cli run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def run_by_hand(images: list[str]) -> float:
    start = time.perf_counter()
    for image in images:
        subprocess.run([docker_cli(), "run", "--rm", "--network", "host", image, "bash", "run.sh"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def check_rows(out: Path, rounds: int) -> None:
    import csv

    with open(out / "perf.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    bad = [row for row in rows if row["status"] != "SUCCESS"]
    if len(rows) != rounds * N_MODELS or bad:
        raise SystemExit(f"expected {rounds * N_MODELS} SUCCESS rows, got {len(rows)} ({len(bad)} not SUCCESS)")


def main() -> int:
    prefix = f"bench{secrets.token_hex(3)}-"
    with tempfile.TemporaryDirectory(prefix="mad-bench-run-") as tmp:
        mad, out = Path(tmp) / "MAD", Path(tmp) / "out"
        make_tree(mad, prefix)
        images: list[str] = []
        try:
            images = build(mad)
            ours: list[float] = []
            hand: list[float] = []
            runs = [("cli", lambda: ours.append(run_madengine(mad, out))),
                    ("hand", lambda: hand.append(run_by_hand(images)))]
            for _, run in runs:  # warm-up: page cache, engine, python bytecode
                run()
            ours.clear()
            hand.clear()
            for i in range(ROUNDS):
                for _, run in runs[i % 2:] + runs[:i % 2]:
                    run()
                print(f"  round {i + 1}: madengine-cli run {ours[-1]:.2f}s   docker run by hand {hand[-1]:.2f}s"
                      f"   overhead {(ours[-1] - hand[-1]) / N_MODELS:+.3f}s/model")
            check_rows(out, ROUNDS + 1)
        finally:
            subprocess.run([docker_cli(), "rmi", "-f", *sorted(set(images)), f"ci-{prefix}m00_bench"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    m_ours, m_hand = statistics.median(ours), statistics.median(hand)
    overhead = (m_ours - m_hand) / N_MODELS
    print(f"{N_MODELS} trivial models (sleep {SLEEP_S:g}s each), median of {ROUNDS}: madengine-cli run "
          f"{m_ours:.2f}s, docker run by hand {m_hand:.2f}s")
    print(f"per-model overhead {overhead:+.3f}s (target <= {TARGET_OVERHEAD_S}s), ratio {m_ours / m_hand:.2f} "
          "(madengine-cli run / docker run by hand; the CLI's process start is included)")
    ok = overhead <= TARGET_OVERHEAD_S
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
