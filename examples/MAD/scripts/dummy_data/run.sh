#!/bin/bash
# Example model "dummy_data": needs the "tiny" dataset of data.json, mounted at $MAD_DATAHOME (default /data).
set -euo pipefail

datahome="${MAD_DATAHOME:-/data}"
if [ ! -f "${datahome}/numbers.txt" ]; then
    echo "dummy_data: dataset not found: ${datahome}/numbers.txt" >&2
    exit 1
fi
python3 - "${datahome}/numbers.txt" <<'PY'
import sys
import time

start = time.perf_counter()
with open(sys.argv[1]) as f:
    values = [int(line) for line in f if line.strip()]
total = sum(values)
elapsed = max(time.perf_counter() - start, 1e-6)
print(f"dummy_data: {len(values)} values, sum {total}")
print(f"performance: {len(values) / elapsed:.1f} values_per_second")
PY
