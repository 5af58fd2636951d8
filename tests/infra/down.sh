#!/usr/bin/env bash
# Stop what tests/infra/up.sh started (by its pidfiles): the registry, then dockerd.
# Services that up.sh found already running (no pidfile of ours) are left alone.
# Caches stay: the base rootfs tarball, docker's data root (images), the registry storage.
set -euo pipefail

# shellcheck source=tests/infra/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# stop NAME PIDFILE MATCH TIMEOUT_S
stop() {
    local name=$1 pidfile=$2 match=$3 timeout=$4 pid i
    if [[ ! -e $pidfile ]]; then
        log "$name: no pidfile ($pidfile); not started by up.sh, nothing to stop"
        return
    fi
    pid=$(<"$pidfile")
    if ! pid_alive "$pidfile" "$match"; then
        log "$name: pid $pid is not running (stale pidfile removed)"
        rm -f "$pidfile"
        return
    fi
    log "$name: stopping pid $pid"
    kill -TERM "$pid"
    for ((i = 0; i < timeout * 2; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name: pid $pid still alive after ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$pidfile"
    log "$name: stopped"
}

# The SLURM test cluster (tests/infra/slurm.sh), if it was started.
[[ -f $STATE_DIR/slurm/slurm.conf ]] && bash "$INFRA_DIR/slurm.sh" down || true
stop registry "$REGISTRY_PIDFILE" docker-registry 10
# dockerd stops its containers (10 s grace each) and its own containerd on SIGTERM.
stop dockerd "$DOCKERD_PIDFILE" dockerd 60
log "caches kept: $CACHE_DIR, /var/lib/docker, registry storage (see $REGISTRY_CONFIG)"
