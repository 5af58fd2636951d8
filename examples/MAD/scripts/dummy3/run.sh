#!/bin/bash
# Example model "dummy3/dummy_3" (from scripts/dummy3/get_models_json.py). Takes --batch_size N.
set -euo pipefail

batch_size=256
while [ $# -gt 0 ]; do
    case "$1" in
        --batch_size) batch_size="${2:-256}"; shift 2 || shift ;;
        *) shift ;;
    esac
done

echo "dummy_3: batch_size=${batch_size}"
python3 - "$batch_size" <<'PY'
import sys
import time

batch = max(1, int(sys.argv[1]))
start = time.perf_counter()
samples = 0
while time.perf_counter() - start < 0.05:
    [x * 0.5 for x in range(batch)]
    samples += batch
print(f"performance: {samples / (time.perf_counter() - start):.1f} samples_per_second")
PY
