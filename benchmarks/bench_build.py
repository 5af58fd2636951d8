"""Build dedupe and overhead: 20 models sharing 2 Dockerfiles → exactly 2 docker builds.

Compares, in the same run and both cold (``--no-cache``; the base image is local so nothing is pulled):
  * madengine: ``madengine-cli build --tags bench --clean-docker-cache`` on a temp MAD tree of 20 models
    (10 per Dockerfile), end to end as a user runs it (process start, discovery, 2 builds, manifest);
  * by hand: ``docker build --network host --no-cache`` of the same 2 Dockerfiles, one after the other
    (``DOCKER_BUILDKIT=0``: the same classic builder the Docker SDK drives).
The number of docker builds madengine starts is counted in-process by wrapping the SDK's
``APIClient.build`` (a separate in-process run, so the timed CLI runs are not instrumented).
Each round also times ``build_models()`` in-process (the same build without the ~0.3 s of Python start and
imports). Rounds rotate the order; the ratio is median(madengine-cli) / median(by hand). Target ≤ 1.15.

Needs tests/infra/up.sh (dockerd + madengine-base:bookworm). Run: `python3 benchmarks/bench_build.py`.
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

TARGET_RATIO = 1.15
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
N_MODELS = 20
BASE = "madengine-base:bookworm"
CONTEXT = '{"gpu_vendor": "AMD", "guest_os": "UBUNTU"}'

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Two small but real images: a COPY from the build context, a CPU-bound python step of WORK_S seconds (real
# MAD images take minutes; BENCH_WORK_S=1 shows the fixed cost more), ENV, WORKDIR.
WORK_S = float(os.environ.get("BENCH_WORK_S", "3"))
WORK_PY = f"""import hashlib, sys, time
start, h = time.time(), sys.argv[1].encode()
while time.time() - start < {WORK_S}:
    h = hashlib.sha256(h).digest()
open(f"/workspace/{{sys.argv[1]}}.txt", "w").write(h.hex())
"""
DOCKERFILES = {
    stem: (f"ARG BASE_DOCKER={BASE}\nFROM $BASE_DOCKER\nCOPY work.py /opt/work.py\n"
           f"RUN mkdir -p /workspace && python3 /opt/work.py {stem}\nENV MODE={stem}\nWORKDIR /workspace\n")
    for stem in ("train", "infer")
}


def make_tree(root: Path, prefix: str) -> list[str]:
    """20 models, alternating between the 2 Dockerfiles; returns the 2 image names madengine will use."""
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "work.py").write_text(WORK_PY)
    for stem, text in DOCKERFILES.items():
        (root / "docker" / f"{prefix}{stem}.Dockerfile").write_text(text)
    stems = list(DOCKERFILES)
    models = [{"name": f"{prefix}m{i:02d}", "tags": ["bench"], "dockerfile": f"docker/{prefix}{stems[i % 2]}",
               "scripts": "scripts/run.sh", "n_gpus": "1", "args": f"--variant {i}"} for i in range(N_MODELS)]
    (root / "models.json").write_text(json.dumps(models))
    return [f"ci-{prefix}m00_{prefix}train", f"ci-{prefix}m01_{prefix}infer"]


def docker_cli() -> str:
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def image_ids(names: list[str]) -> set[str]:
    done = subprocess.run([docker_cli(), "image", "inspect", "-f", "{{.Id}}", *names], capture_output=True,
                          text=True, check=False)
    return {line.strip() for line in done.stdout.splitlines() if line.strip()}


def run_madengine(mad: Path, out: Path) -> float:
    exe = Path(sys.executable).with_name("madengine-cli")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from madengine.cli.app import main; main()"]
    start = time.perf_counter()
    subprocess.run(cmd + ["build", "--tags", "bench", "--mad-dir", str(mad), "-c", CONTEXT, "--clean-docker-cache",
                          "--manifest-output", str(out / "build_manifest.json")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_by_hand(mad: Path, prefix: str) -> float:
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    start = time.perf_counter()
    for stem in DOCKERFILES:
        subprocess.run([docker_cli(), "build", "--network", "host", "--no-cache", "-t", f"{prefix}hand-{stem}",
                        "-f", f"docker/{prefix}{stem}.Dockerfile", "docker"],
                       cwd=mad, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _build_in_process(mad: Path, out: Path) -> tuple[float, object]:
    from madengine.build import BuildOptions, build_models
    from madengine.discover import discover_models

    start = time.perf_counter()
    result = build_models(discover_models(mad, ["bench"]),
                          BuildOptions(mad_dir=mad, context=json.loads(CONTEXT), clean_docker_cache=True,
                                       manifest_output=out / "build_manifest.json"))
    return time.perf_counter() - start, result


def run_in_process(mad: Path, out: Path) -> float:
    return _build_in_process(mad, out)[0]


def count_builds(mad: Path, out: Path) -> tuple[int, int, int]:
    """(SDK build calls, images in the manifest, models in the manifest) of one in-process build."""
    from docker.api.client import APIClient

    calls = []
    original = APIClient.build

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("tag"))
        return original(self, *args, **kwargs)

    APIClient.build = counting
    try:
        _, result = _build_in_process(mad, out)
    finally:
        APIClient.build = original
    assert result.exit_code == 0, result.summary["failed_builds"]
    data = json.loads((out / "build_manifest.json").read_text())
    return len(calls), len(data["built_images"]), len(data["built_models"])


def main() -> int:
    prefix = f"bench{secrets.token_hex(3)}-"
    built_ids: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="mad-bench-build-") as tmp:
        mad, out = Path(tmp) / "MAD", Path(tmp) / "out"
        images = make_tree(mad, prefix)
        try:
            builds, n_images, n_models = count_builds(mad, out)
            built_ids.update(image_ids(images))
            print(f"{N_MODELS} models sharing 2 Dockerfiles: {builds} docker builds "
                  f"({n_images} images, {n_models} models in the manifest)")
            ours: list[float] = []
            hand: list[float] = []
            inproc: list[float] = []
            runs = [("cli", lambda: ours.append(run_madengine(mad, out))),
                    ("hand", lambda: hand.append(run_by_hand(mad, prefix))),
                    ("inproc", lambda: inproc.append(run_in_process(mad, out)))]
            names = images + [f"{prefix}hand-{stem}" for stem in DOCKERFILES]
            for i in range(ROUNDS):
                for _, run in runs[i % 3:] + runs[:i % 3]:  # rotate the order each round
                    run()
                    built_ids.update(image_ids(names))  # each cold build leaves the previous one untagged
                print(f"  round {i + 1}: madengine-cli {ours[-1]:.2f}s   docker build by hand {hand[-1]:.2f}s"
                      f"   build_models() in-process {inproc[-1]:.2f}s")
        finally:
            names = images + [f"{prefix}hand-{stem}" for stem in DOCKERFILES]
            built_ids.update(image_ids(names))
            subprocess.run([docker_cli(), "rmi", "-f", *names, *sorted(built_ids)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
    m_ours, m_hand, m_in = statistics.median(ours), statistics.median(hand), statistics.median(inproc)
    ratio = m_ours / m_hand
    print(f"cold (--no-cache) builds with a {WORK_S:g}s RUN step each, median of {ROUNDS}: "
          f"madengine-cli {m_ours:.2f}s, by hand {m_hand:.2f}s, ratio {ratio:.3f} (target <= {TARGET_RATIO})")
    print(f"  in-process build_models() {m_in:.2f}s, ratio {m_in / m_hand:.3f}; fixed cost of the CLI "
          f"(process start, imports, discovery, manifest) {m_ours - m_hand:+.2f}s over docker build")
    ok = builds == 2 and ratio <= TARGET_RATIO
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
