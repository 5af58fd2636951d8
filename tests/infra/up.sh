#!/usr/bin/env bash
# Bring up the real test infrastructure for madengine on a Debian 12 machine (as root):
#   1. apt packages (docker.io, docker-registry, openssh-server, mmdebstrap/debootstrap, apache2-utils, git)
#   2. dockerd with --bridge=none --iptables=false (containers and builds use host networking)
#   3. a plain-HTTP registry on 127.0.0.1:5000 (tests/infra/registry.yml)
#   4. the local base image madengine-base:bookworm (Debian minbase + python3, rootfs cached)
#   5. pip install -e '.[test]'
# Idempotent: anything already running or present is left alone. Stop with tests/infra/down.sh.
# Environment overrides: MADENGINE_TEST_STATE_DIR, MADENGINE_TEST_CACHE_DIR, MADENGINE_DEBIAN_MIRROR,
# MADENGINE_SKIP_PIP=1, MADENGINE_FORCE_PIP=1.
set -euo pipefail

# shellcheck source=tests/infra/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

T_START=$(date +%s)
SUMMARY=()
note() { SUMMARY+=("$*"); log "$*"; }
elapsed() { echo "$(($(date +%s) - $1))s"; }

need_root() { [[ $EUID -eq 0 ]] || die "$1 needs root (re-run as root: sudo bash tests/infra/up.sh)"; }

mkdir -p "$STATE_DIR" "$CACHE_DIR" 2>/dev/null || need_root "creating $STATE_DIR and $CACHE_DIR"
# Serialise concurrent runs (two shells, or CI retrying) so they don't start two daemons.
exec 9>"$STATE_DIR/up.lock"
flock -w 900 9 || die "another tests/infra/up.sh still holds $STATE_DIR/up.lock"

###############################################################################
# 1. apt packages
###############################################################################
step_apt() {
    local t0 wanted=(docker.io docker-registry openssh-server mmdebstrap debootstrap apache2-utils git chromium)
    local missing=() p
    command -v python3 >/dev/null || wanted+=(python3)
    for p in "${wanted[@]}"; do
        [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) == installed ]] || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        note "apt: all packages present"
        return
    fi
    need_root "installing ${missing[*]}"
    t0=$(date +%s)
    log "apt: installing ${missing[*]}"
    # Keep maintainer scripts from starting services: Debian's docker.io would start dockerd with
    # the default bridge, and docker-registry would listen on :5000 with htpasswd auth.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, from madengine tests/infra/up.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    {
        export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
        apt-get update -qq &&
            apt-get install -y -qq --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
    } </dev/null >"$STATE_DIR/apt.log" 2>&1 || rc=$?
    ((made_policy)) && rm -f "$policy"
    if ((rc != 0)); then
        tail -n 30 "$STATE_DIR/apt.log" >&2
        die "apt-get install ${missing[*]} failed (exit $rc); see $STATE_DIR/apt.log"
    fi
    note "apt: installed ${missing[*]} in $(elapsed "$t0")"
}

###############################################################################
# 2. docker engine
###############################################################################
# Debian's client (/usr/bin/docker) matches the engine; a newer client elsewhere on PATH
# (/usr/local/bin/docker on some machines) may shadow it. Use Debian's for our own calls.
if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi

engine_up() { "$DOCKER" info >/dev/null 2>&1; }

step_dockerd() {
    if engine_up; then
        note "dockerd: already running (left alone)"
    else
        [[ -z ${DOCKER_HOST:-} ]] ||
            die "DOCKER_HOST=$DOCKER_HOST is set but no engine answers there; unset it to use the local engine"
        need_root "starting dockerd"
        local t0 pid i
        t0=$(date +%s)
        if pid_alive "$DOCKERD_PIDFILE" dockerd; then
            pid=$(<"$DOCKERD_PIDFILE")
            log "dockerd: pid $pid exists but does not answer yet; waiting for it"
        else
            log "dockerd: starting (log: $DOCKERD_LOG)"
            printf '\n==== %s up.sh starting dockerd ====\n' "$(date -Is)" >>"$DOCKERD_LOG"
            # No default bridge, no iptables: only loopback traffic; containers use --network host.
            spawn_daemon "$DOCKERD_PIDFILE" "$DOCKERD_LOG" dockerd --bridge=none --iptables=false --ip-masq=false
            pid=$(<"$DOCKERD_PIDFILE")
        fi
        for ((i = 0; i < 120; i++)); do
            engine_up && break
            if ! kill -0 "$pid" 2>/dev/null; then
                tail -n 30 "$DOCKERD_LOG" >&2 || true
                die "dockerd (pid $pid) exited during startup; see $DOCKERD_LOG"
            fi
            sleep 0.5
        done
        if ! engine_up; then
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            die "dockerd (pid $pid) did not answer 'docker info' within 60 s; see $DOCKERD_LOG"
        fi
        note "dockerd: started pid $pid in $(elapsed "$t0") (--bridge=none --iptables=false)"
    fi
    # Whatever 'docker' resolves to on PATH must work against this engine too.
    local path_docker
    path_docker=$(command -v docker || true)
    if [[ -z $path_docker ]]; then
        die "no 'docker' command on PATH"
    elif ! docker version >/dev/null 2>&1; then
        docker version >&2 || true
        die "'docker' on PATH ($path_docker) cannot talk to the engine; /usr/bin/docker can." \
            "Put /usr/bin before $(dirname "$path_docker") in PATH or remove $path_docker"
    elif [[ $path_docker != "$DOCKER" && $DOCKER == /usr/bin/docker ]]; then
        log "dockerd: note: 'docker' on PATH is $path_docker (client $(docker version -f '{{.Client.Version}}' 2>/dev/null)); it works against the engine"
    fi
    if "$DOCKER" network inspect bridge >/dev/null 2>&1; then
        log "WARNING: this engine has a default 'bridge' network; the tests expect dockerd --bridge=none" \
            "(stop it and re-run up.sh, or keep using --network host everywhere)"
    fi
}

###############################################################################
# 3. registry on 127.0.0.1:5000
###############################################################################
step_registry() {
    local status t0 pid i rootdir
    status=$(registry_status)
    if [[ $status == 200 ]]; then
        note "registry: already answering on $REGISTRY_URL (left alone)"
        return
    elif [[ $status != 000 ]]; then
        die "something on $REGISTRY_ADDR answers $REGISTRY_URL with HTTP $status (not an open registry)." \
            "Debian's docker-registry service (htpasswd auth) does that: stop it (systemctl stop docker-registry) and re-run"
    fi
    t0=$(date +%s)
    rootdir=$(awk '/rootdirectory:/ {print $2; exit}' "$REGISTRY_CONFIG")
    [[ -n $rootdir ]] && mkdir -p "$rootdir"
    if pid_alive "$REGISTRY_PIDFILE" docker-registry; then
        pid=$(<"$REGISTRY_PIDFILE")
        log "registry: pid $pid exists but does not answer yet; waiting for it"
    else
        log "registry: starting (config: $REGISTRY_CONFIG, log: $REGISTRY_LOG)"
        printf '\n==== %s up.sh starting docker-registry ====\n' "$(date -Is)" >>"$REGISTRY_LOG"
        spawn_daemon "$REGISTRY_PIDFILE" "$REGISTRY_LOG" docker-registry serve "$REGISTRY_CONFIG"
        pid=$(<"$REGISTRY_PIDFILE")
    fi
    for ((i = 0; i < 60; i++)); do
        [[ $(registry_status) == 200 ]] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$REGISTRY_LOG" >&2 || true
            die "docker-registry (pid $pid) exited during startup; see $REGISTRY_LOG"
        fi
        sleep 0.5
    done
    if [[ $(registry_status) != 200 ]]; then
        tail -n 30 "$REGISTRY_LOG" >&2 || true
        die "registry did not answer $REGISTRY_URL within 30 s; see $REGISTRY_LOG"
    fi
    note "registry: started pid $pid on $REGISTRY_ADDR in $(elapsed "$t0") (storage: $rootdir)"
}

###############################################################################
# 4. base image madengine-base:bookworm
###############################################################################
# The Debian mirror apt already uses (only the package mirror is reachable from these machines).
debian_mirror() {
    if [[ -n ${MADENGINE_DEBIAN_MIRROR:-} ]]; then
        echo "$MADENGINE_DEBIAN_MIRROR"
        return
    fi
    python3 - "$BASE_SUITE" <<'PY'
import glob, re, sys
suite = sys.argv[1]
files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*"))
found = None
for f in files:
    try:
        text = open(f).read()
    except OSError:
        continue
    if f.endswith(".sources"):  # deb822
        for para in re.split(r"\n\s*\n", text):
            fields = {}
            for line in para.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.split()
            if "deb" in fields.get("types", []) and suite in fields.get("suites", []):
                found = found or fields.get("uris", [None])[0]
    elif f.endswith(".list"):
        for line in text.splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == suite:
                found = found or m.group(1)
print(found or "http://deb.debian.org/debian")
PY
}

base_recipe() { echo "suite=$BASE_SUITE variant=minbase include=$BASE_PACKAGES format=v1"; }

build_rootfs() {
    local mirror tmp t0
    mirror=$(debian_mirror)
    tmp="$CACHE_DIR/.base-$BASE_SUITE.$$.tar"  # mmdebstrap picks the format from ".tar"
    t0=$(date +%s)
    need_root "building the base rootfs"
    if command -v mmdebstrap >/dev/null; then
        log "base: mmdebstrap $BASE_SUITE minbase +$BASE_PACKAGES from $mirror (about 30 s)"
        # The mirror may be a frozen snapshot whose Release files are "expired": don't check dates.
        mmdebstrap --quiet --mode=root --variant=minbase --include="${BASE_PACKAGES// /,}" \
            --aptopt='Acquire::Check-Valid-Until "false"' \
            --aptopt='Acquire::Languages "none"' \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            "$BASE_SUITE" "$tmp" "deb $mirror $BASE_SUITE main" </dev/null >&2 ||
            { rm -f "$tmp"; die "mmdebstrap failed"; }
    else
        local dir="$CACHE_DIR/rootfs.tmp.$$"
        log "base: debootstrap $BASE_SUITE minbase +$BASE_PACKAGES from $mirror (about 45 s)"
        debootstrap --variant=minbase --include="${BASE_PACKAGES// /,}" "$BASE_SUITE" "$dir" "$mirror" \
            </dev/null >"$CACHE_DIR/debootstrap.log" 2>&1 ||
            { tail -n 30 "$CACHE_DIR/debootstrap.log" >&2; rm -rf "$dir"; die "debootstrap failed"; }
        rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
        tar -C "$dir" --numeric-owner -cf "$tmp" . || { rm -rf "$dir" "$tmp"; die "tar of rootfs failed"; }
        rm -rf "$dir"
    fi
    [[ -f $tmp ]] || { rm -rf "$tmp"; die "rootfs build did not produce a tar file"; }
    mv -f "$tmp" "$BASE_TARBALL"
    base_recipe >"$BASE_RECIPE"
    BASE_BUILD_TIME=$(elapsed "$t0")
    note "base: built rootfs $BASE_TARBALL ($(du -h "$BASE_TARBALL" | cut -f1)) in $BASE_BUILD_TIME"
}

step_base_image() {
    if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        note "base: image $BASE_IMAGE present (left alone)"
        return
    fi
    if [[ -s $BASE_TARBALL && -s $BASE_RECIPE && $(<"$BASE_RECIPE") == "$(base_recipe)" ]]; then
        log "base: reusing cached rootfs $BASE_TARBALL"
    else
        build_rootfs
    fi
    local t0
    t0=$(date +%s)
    "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'LABEL org.opencontainers.image.title=madengine-base org.opencontainers.image.version=bookworm' \
        --change 'CMD ["/bin/bash"]' \
        "$BASE_TARBALL" "$BASE_IMAGE" >/dev/null || die "docker import of $BASE_TARBALL failed"
    local out
    out=$("$DOCKER" run --rm --network host "$BASE_IMAGE" bash -c 'python3 -c "print(1)"' 2>&1) ||
        die "the fresh $BASE_IMAGE cannot run bash/python3: $out"
    [[ $out == 1 ]] || die "unexpected output from $BASE_IMAGE smoke test: $out"
    note "base: imported $BASE_IMAGE in $(elapsed "$t0") (bash + python3 checked)"
}

###############################################################################
# 5. pip install -e '.[test]'
###############################################################################
step_pip() {
    if [[ ${MADENGINE_SKIP_PIP:-0} == 1 ]]; then
        note "pip: skipped (MADENGINE_SKIP_PIP=1)"
        return
    fi
    if ! python3 -m pip --version >/dev/null 2>&1; then
        need_root "installing python3-pip"
        log "pip: python3 has no pip; installing python3-pip"
        DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
            apt-get install -y -qq --no-install-recommends python3-pip python3-venv </dev/null \
            >"$STATE_DIR/apt.log" 2>&1 || { tail -n 30 "$STATE_DIR/apt.log" >&2; die "apt-get install python3-pip failed"; }
    fi
    local stamp_file="$STATE_DIR/pip.stamp" stamp
    stamp="$(command -v python3) $(python3 -c 'import sys; print(sys.version.split()[0])') $REPO_ROOT \
$(sha256sum pyproject.toml | cut -c1-16)"
    # Up to date if the stamp matches and madengine is still an editable install of this checkout.
    if [[ ${MADENGINE_FORCE_PIP:-0} != 1 && -s $stamp_file && $(<"$stamp_file") == "$stamp" ]] &&
        python3 -I - "$REPO_ROOT" <<'PY'  # -I: not the cwd's madengine.egg-info
import importlib.metadata as md, json, sys, pathlib
root = pathlib.Path(sys.argv[1]).resolve().as_uri()
d = md.distribution("madengine")
url = json.loads(d.read_text("direct_url.json") or "{}")
assert url.get("url") == root and url.get("dir_info", {}).get("editable"), url
for name in ("pytest", "ruff", "docker"):
    md.distribution(name)
PY
    then
        note "pip: madengine already installed editable from $REPO_ROOT (pyproject unchanged)"
        return
    fi
    local t0 extra=()
    t0=$(date +%s)
    # Debian's own python3 refuses pip installs (PEP 668) outside a venv; CI machines are throwaway.
    if python3 -c 'import os, sys, sysconfig
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(
    os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
        extra+=(--break-system-packages)
    fi
    log "pip: python3 -m pip install -e '.[test]' ($(command -v python3))"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --disable-pip-version-check --no-input -q "${extra[@]}" -e ".[test]" </dev/null ||
        die "pip install -e '.[test]' failed (is pyproject.toml / the madengine package in a buildable state?)"
    echo "$stamp" >"$stamp_file"
    note "pip: installed -e '.[test]' in $(elapsed "$t0")"
}

step_apt
step_dockerd
step_registry
step_base_image
step_pip

# sshd test nodes are started per test with their own config; they need this directory.
mkdir -p /run/sshd 2>/dev/null || true

# Ansible test deps (community.docker & co. from the `ansible` wheel, ansible-test's offline pip
# bootstrap, the molecule node image), then three loopback cluster nodes (sshd + dockerd each).
bash "$REPO_ROOT/tests/infra/ansible_deps.sh"
bash "$REPO_ROOT/tests/infra/cluster.sh" up "${MADENGINE_TEST_NODES:-3}"
SUMMARY+=("ansible test deps ready; ${MADENGINE_TEST_NODES:-3} cluster nodes up (tests/infra/cluster.sh status)")
# A real SLURM cluster (munged, slurmctld, one slurmd per cluster node) for tests/slurm/.
bash "$REPO_ROOT/tests/infra/slurm.sh" up >/dev/null
SUMMARY+=("slurm up over the cluster nodes (tests/infra/slurm.sh status)")

echo
echo "madengine test infra is up ($(elapsed "$T_START")):"
for line in "${SUMMARY[@]}"; do echo "  - $line"; done
echo "  engine:   $("$DOCKER" version -f 'server {{.Server.Version}} (API {{.Server.APIVersion}})')," \
    "storage driver $("$DOCKER" info -f '{{.Driver}}')"
echo "  registry: $REGISTRY_ADDR   base image: $BASE_IMAGE   state: $STATE_DIR   cache: $CACHE_DIR"
echo "  stop with: bash tests/infra/down.sh"
