#!/bin/bash
# Example model "dummy_multi": reports several results through a CSV file (its "multiple_results").
# The CSV goes to the current directory, with columns model,performance,metric.
set -euo pipefail

out=perf_dummy_multi.csv
python3 - "$out" <<'PY'
import sys
import time

rows = []
for size in (16, 256):
    start = time.perf_counter()
    count = 0
    while time.perf_counter() - start < 0.03:
        sorted(range(size, 0, -1))
        count += 1
    rows.append((f"dummy_multi_sort{size}", count / (time.perf_counter() - start), "sorts_per_second"))
with open(sys.argv[1], "w") as f:
    f.write("model,performance,metric\n")
    for name, perf, metric in rows:
        f.write(f"{name},{perf:.1f},{metric}\n")
# The headline figure, like every model prints.
print(f"performance: {rows[0][1]:.1f} {rows[0][2]}")
PY
cat "$out"
