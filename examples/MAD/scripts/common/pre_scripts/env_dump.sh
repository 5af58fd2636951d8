#!/bin/bash
# Pre-script of the "env_dump" tool: a short, secret-free view of the container environment.
echo "env_dump: $(uname -srm)"
echo "env_dump: $(python3 --version 2>&1)"
echo "env_dump: cpus=$(nproc 2>/dev/null || echo '?')"
