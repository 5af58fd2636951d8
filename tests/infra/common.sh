# Shared settings for tests/infra/up.sh and tests/infra/down.sh (sourced, not executed).
# Every path can be overridden from the environment; nothing here is secret.

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_DIR/../.." && pwd)"

# Runtime state: pidfiles, logs, lock. Caches live elsewhere and survive down.sh.
STATE_DIR="${MADENGINE_TEST_STATE_DIR:-/var/lib/madengine-test}"
CACHE_DIR="${MADENGINE_TEST_CACHE_DIR:-/var/cache/madengine-test}"

DOCKERD_PIDFILE="$STATE_DIR/dockerd.pid"
DOCKERD_LOG="$STATE_DIR/dockerd.log"
REGISTRY_PIDFILE="$STATE_DIR/registry.pid"
REGISTRY_LOG="$STATE_DIR/registry.log"
REGISTRY_CONFIG="$INFRA_DIR/registry.yml"
REGISTRY_ADDR="127.0.0.1:5000"
REGISTRY_URL="http://$REGISTRY_ADDR/v2/"

BASE_IMAGE="madengine-base:bookworm"
BASE_SUITE="bookworm"
BASE_PACKAGES="python3"          # on top of minbase (which already has bash)
BASE_TARBALL="$CACHE_DIR/base-bookworm.tar"
BASE_RECIPE="$BASE_TARBALL.recipe"

log()  { printf '[infra] %s\n' "$*" >&2; }
die()  { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

# pid_alive PIDFILE NAME: true if the pidfile names a live process whose command is NAME.
pid_alive() {
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"
}

# registry_status: prints the HTTP status of GET /v2/ on the test registry ("000" if nothing answers).
# Uses python3 so it needs neither curl nor a proxy-free environment.
registry_status() {
    python3 - "$REGISTRY_URL" <<'PY'
import sys, urllib.request, urllib.error
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(sys.argv[1], timeout=2) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
PY
}

# spawn_daemon PIDFILE LOG CMD...: start CMD in its own session, detached from our stdin/stdout/stderr
# and from every other inherited descriptor (our flock, a CI runner's pipes), so that it neither keeps
# the lock nor keeps a caller waiting for EOF. Writes the daemon's pid (setsid execs in place) to PIDFILE.
spawn_daemon() {
    local pidfile=$1 logfile=$2
    shift 2
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec setsid "$@" </dev/null >>"$logfile" 2>&1
    ) &
    echo "$!" >"$pidfile"
}
