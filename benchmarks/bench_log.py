"""Huge model output: CLI time and peak memory of `madengine-cli run` for pathological logs.

Two models, each run through the real CLI against the real dockerd, in a subprocess whose peak RSS is
taken from ``wait4``:
  * ``longline``: one 50 MB line without a break, then ``performance: 1 items_per_second``;
  * ``progress``: 100 MB of ``\\r``-only progress output (a progress bar), then the performance line.
For each: the model's own time in the container (``test_duration``), the CLI's wall time, the CLI time
beyond the model (wall - model; on a loaded machine mostly dockerd delivering the log), the CPU time of
the CLI process (user + sys: what madengine itself spends) and its peak RSS. Targets: CLI CPU <= 10 s
and peak RSS <= 150 MB for each (the log is streamed, never held whole). ``BENCH_MB_LINE`` and
``BENCH_MB_PROGRESS`` change the sizes.

Needs tests/infra/up.sh (dockerd + madengine-base:bookworm). Run: `python3 benchmarks/bench_log.py`.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB_LINE = int(os.environ.get("BENCH_MB_LINE", "50"))
MB_PROGRESS = int(os.environ.get("BENCH_MB_PROGRESS", "100"))
TARGET_CPU_S = 10.0
TARGET_RSS_MB = 150.0
BASE = "madengine-base:bookworm"
CONTEXT = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'
PERF = 'echo "performance: 1 items_per_second"\n'
SCRIPTS = {
    "longline": f"head -c {MB_LINE * 1000 * 1000} /dev/zero | tr '\\0' x\necho\n" + PERF,
    # 20-byte progress updates, each ending in a carriage return only.
    "progress": ("python3 - <<'EOF'\nimport sys\n"
                 "block = ''.join('progress %9d %%\\r' % i for i in range(50000)).encode()\n"
                 f"for _ in range({MB_PROGRESS} * 1000 * 1000 // len(block)):\n"
                 "    sys.stdout.buffer.write(block)\nEOF\n" + PERF),
}


def madengine_cli() -> list[str]:
    exe = Path(sys.executable).with_name("madengine-cli")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from madengine.cli.app import main; main()"]


def make_tree(root: Path, prefix: str) -> None:
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "bench.Dockerfile").write_text(
        f"ARG BASE_DOCKER={BASE}\nFROM $BASE_DOCKER\nLABEL madengine.bench={prefix}\n")
    models = []
    for short, script in SCRIPTS.items():
        (root / "scripts" / short).mkdir(parents=True)
        (root / "scripts" / short / "run.sh").write_text("#!/bin/bash\n" + script)
        models.append({"name": f"{prefix}{short}", "tags": [short], "dockerfile": "docker/bench",
                       "scripts": f"scripts/{short}/run.sh", "n_gpus": "1"})
    (root / "models.json").write_text(json.dumps(models))


def timed(cmd: list[str], cwd: Path) -> tuple[int, float, float, float]:
    """(exit code, wall seconds, CPU seconds, peak RSS in MB) of one command."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.monotonic() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> int:
    prefix = f"bl{secrets.token_hex(3)}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-log-"))
    mad = tmp / "mad"
    make_tree(mad, prefix)
    failed = False
    try:
        subprocess.run(madengine_cli() + ["build", "--tags", "longline,progress", "-c", CONTEXT], cwd=mad, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for short in SCRIPTS:
            out = tmp / f"{short}.csv"
            code, wall, cpu, rss = timed(madengine_cli() + ["run", "--manifest-file", "build_manifest.json",
                                                       "-o", str(out)], mad)
            with open(out, newline="", encoding="utf-8") as fh:
                row = next(csv.DictReader(fh))
            model = float(row["test_duration"] or 0)
            extra = wall - model
            ok = code == 0 and row["status"] == "SUCCESS" and cpu <= TARGET_CPU_S and rss <= TARGET_RSS_MB
            failed |= not ok
            size = f"{MB_LINE} MB single line" if short == "longline" else f"{MB_PROGRESS} MB of \\r progress"
            print(f"{size:28s} exit {code} {row['status']:8s} model {model:6.1f}s  CLI wall {wall:6.1f}s  "
                  f"beyond the model {extra:6.1f}s  CLI CPU {cpu:5.1f}s  peak RSS {rss:6.0f} MB  "
                  f"{'ok' if ok else 'OVER TARGET'}")
    finally:
        images = subprocess.run(["docker", "images", "-q", "--filter", f"label=madengine.bench={prefix}"],
                                capture_output=True, text=True, check=False).stdout.split()
        if images:
            subprocess.run(["docker", "rmi", "-f", *set(images)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"targets: CLI CPU <= {TARGET_CPU_S:g}s, peak RSS <= {TARGET_RSS_MB:g} MB")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
