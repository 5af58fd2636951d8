#!/bin/bash
# molecule/default's model: prints its batch size and one performance line.
set -euo pipefail
batch_size=64
while [ $# -gt 0 ]; do
    case "$1" in
        --batch_size) batch_size="${2:-64}"; shift 2 || shift ;;
        *) shift ;;
    esac
done
echo "molecule_tiny: batch_size=${batch_size}"
echo "performance: $((batch_size * 10)) samples_per_second"
