#!/bin/bash
# Example model "dummy2/dummy_2" (from scripts/dummy2/models.json): string-building micro-benchmark.
set -euo pipefail

python3 - <<'PY'
import time

start = time.perf_counter()
count = 0
while time.perf_counter() - start < 0.05:
    "-".join(str(i) for i in range(100))
    count += 1
print(f"performance: {count / (time.perf_counter() - start):.1f} joins_per_second")
PY
