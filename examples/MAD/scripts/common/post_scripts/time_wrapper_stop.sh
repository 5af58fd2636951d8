#!/bin/bash
# Post-script of the "time_wrapper" tool: print the wall time since the pre-script ran.
tool="${1:-time_wrapper}"
if [ -f "/tmp/${tool}_start" ]; then
    start=$(cat "/tmp/${tool}_start")
    now=$(date +%s.%N)
    python3 -c "import sys; print(f'${tool}: wall {float(sys.argv[2]) - float(sys.argv[1]):.3f} s')" "$start" "$now"
    rm -f "/tmp/${tool}_start"
else
    echo "${tool}: no start time recorded"
fi
