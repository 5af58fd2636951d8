#!/bin/bash
# Example model "dummy": a tiny CPU micro-benchmark that prints one performance line.
# Extra arguments (model "args" and tag parameters such as `dummy:batch_size=8`) arrive as "$@".
set -euo pipefail

batch_size=64
while [ $# -gt 0 ]; do
    case "$1" in
        --batch_size) batch_size="${2:-64}"; shift 2 || shift ;;
        *) shift ;;
    esac
done

echo "dummy: batch_size=${batch_size}"
python3 - "$batch_size" <<'PY'
import sys
import time

batch = max(1, int(sys.argv[1]))
start = time.perf_counter()
samples = 0
while time.perf_counter() - start < 0.05:
    sum(i * i for i in range(batch))
    samples += batch
elapsed = time.perf_counter() - start
print(f"performance: {samples / elapsed:.1f} samples_per_second")
PY
