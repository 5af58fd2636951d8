"""Start-up cost of `madengine-cli --help`, side by side with a bare interpreter start.

Target (issue 2): `madengine-cli --help` under 0.35 s wall, with none of docker, ansible,
ansible_runner or jinja2 imported. Run: `python3 benchmarks/bench_startup.py`.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

HEAVY = ("docker", "ansible", "ansible_runner", "jinja2")
TARGET_S = 0.35


def wall(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main(runs: int = 15) -> int:
    exe = shutil.which("madengine-cli")
    if not exe:
        print("madengine-cli is not installed (pip install -e .)")
        return 1
    wall([exe, "--help"], 2)  # warm the page cache and .pyc files
    cli = wall([exe, "--help"], runs)
    bare = wall([sys.executable, "-c", "pass"], runs)
    probe = ("import sys; from madengine.cli.app import invoke, app; invoke(app, ['--help'], 'x');"
             f" print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    err = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stderr
    heavy = next((line[6:] for line in err.splitlines() if line.startswith("HEAVY=")), "?")
    med_cli, med_bare = statistics.median(cli), statistics.median(bare)
    print(f"madengine-cli --help   median {med_cli:.3f} s  min {min(cli):.3f} s  ({runs} runs)")
    print(f"python3 -c pass        median {med_bare:.3f} s  min {min(bare):.3f} s")
    print(f"ratio cli/bare         {med_cli / med_bare:.2f}x   target < {TARGET_S:.2f} s: "
          f"{'met' if med_cli < TARGET_S else 'MISSED'}")
    print(f"heavy modules imported by --help: {heavy or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
