#!/bin/bash
# Pre-script of the "time_wrapper" tool: note the start time for the post-script.
tool="${1:-time_wrapper}"
date +%s.%N > "/tmp/${tool}_start"
echo "${tool}: started at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
