#!/usr/bin/env bash
# Ansible test dependencies for madengine, after tests/infra/up.sh (as root, offline from Galaxy):
#   1. molecule, molecule-plugins[docker] and ansible-lint in python3 (the `test` extra has them; this
#      installs them only if an older checkout's install lacks them)
#   2. community.docker, ansible.posix and community.library_inventory_filtering_v1 (molecule's docker
#      driver needs them) extracted from the `ansible` wheel on PyPI, since Galaxy is unreachable, into
#      $CACHE_DIR/collections/ansible_collections/ (put that dir in ANSIBLE_COLLECTIONS_PATH)
#   3. ansible-test's pip bootstrap script: `ansible-test sanity --venv` downloads get-pip.py from
#      ci-files.testing.ansible.com, which we cannot reach; an offline stand-in goes into its cache
#   4. the image madengine-molecule-node:bookworm (molecule/nodes/node.Dockerfile, FROM the base image)
#      that molecule's `nodes` scenario starts with pre_build_image (nothing can be pulled)
# Idempotent: what is present and current is left alone. Environment overrides: MADENGINE_TEST_CACHE_DIR,
# MADENGINE_ANSIBLE_WHEEL_VERSION (an `ansible` release whose collections support ansible-core 2.19).
set -euo pipefail

# shellcheck source=tests/infra/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

T_START=$(date +%s)
SUMMARY=()
note() { SUMMARY+=("$*"); log "$*"; }
elapsed() { echo "$(($(date +%s) - $1))s"; }

# ansible 12.x is the package line built for ansible-core 2.19.
ANSIBLE_WHEEL_VERSION="${MADENGINE_ANSIBLE_WHEEL_VERSION:-12.3.0}"
COLLECTIONS_DIR="$CACHE_DIR/collections"
WANTED_COLLECTIONS=(community/docker ansible/posix community/library_inventory_filtering_v1)
NODE_IMAGE="madengine-molecule-node:bookworm"
NODE_DOCKERFILE="$REPO_ROOT/molecule/nodes/node.Dockerfile"

if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi

mkdir -p "$CACHE_DIR" "$STATE_DIR"
exec 9>"$STATE_DIR/ansible_deps.lock"
flock -w 900 9 || die "another tests/infra/ansible_deps.sh still holds $STATE_DIR/ansible_deps.lock"

###############################################################################
# 1. Python tools
###############################################################################
step_tools() {
    if python3 -c 'import molecule, molecule_plugins.docker, ansiblelint' 2>/dev/null; then
        note "tools: molecule $(python3 -c 'import importlib.metadata as m; print(m.version("molecule"))')," \
            "ansible-lint $(python3 -c 'import importlib.metadata as m; print(m.version("ansible-lint"))') present"
        return
    fi
    local t0 extra=()
    t0=$(date +%s)
    if python3 -c 'import os, sys, sysconfig
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(
    os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
        extra+=(--break-system-packages)
    fi
    log "tools: installing molecule, molecule-plugins[docker], ansible-lint"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --disable-pip-version-check --no-input -q "${extra[@]}" \
        "molecule>=25,<27" "molecule-plugins[docker]>=23.5,<27" "ansible-lint>=25,<27" "ansible-core>=2.19,<2.20" \
        </dev/null || die "pip install of molecule / ansible-lint failed"
    note "tools: installed molecule, molecule-plugins[docker], ansible-lint in $(elapsed "$t0")"
}

###############################################################################
# 2. collections from the ansible wheel (Galaxy is unreachable)
###############################################################################
step_collections() {
    local stamp="$COLLECTIONS_DIR/.from-ansible-$ANSIBLE_WHEEL_VERSION" c ok=1
    for c in "${WANTED_COLLECTIONS[@]}"; do
        [[ -f $COLLECTIONS_DIR/ansible_collections/$c/MANIFEST.json ]] || ok=0
    done
    if ((ok)) && [[ -f $stamp ]]; then
        note "collections: ${WANTED_COLLECTIONS[*]} from ansible $ANSIBLE_WHEEL_VERSION present in $COLLECTIONS_DIR"
        return
    fi
    local t0 tmp
    t0=$(date +%s)
    tmp=$(mktemp -d "$CACHE_DIR/.ansible-wheel.XXXXXX")
    log "collections: pip download --no-deps ansible==$ANSIBLE_WHEEL_VERSION (about 55 MB)"
    python3 -m pip download --disable-pip-version-check --no-input -q --no-deps \
        "ansible==$ANSIBLE_WHEEL_VERSION" -d "$tmp" </dev/null || { rm -rf "$tmp"; die "pip download ansible failed"; }
    # Extract into a fresh dir, then swap it in: a reader never sees half a collection.
    python3 - "$tmp" "$COLLECTIONS_DIR" "${WANTED_COLLECTIONS[@]}" <<'PY' || { rm -rf "$tmp"; die "extracting collections failed"; }
import glob, os, shutil, sys, zipfile
tmp, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
(wheel,) = glob.glob(os.path.join(tmp, "ansible-*.whl"))
staging = os.path.join(tmp, "collections")
prefixes = tuple(f"ansible_collections/{c}/" for c in wanted)
with zipfile.ZipFile(wheel) as z:
    members = [n for n in z.namelist() if n.startswith(prefixes)]
    z.extractall(staging, members)
for c in wanted:
    if not os.path.isfile(os.path.join(staging, "ansible_collections", c, "MANIFEST.json")):
        sys.exit(f"{c} is not in {os.path.basename(wheel)}")
for c in wanted:
    target = os.path.join(dest, "ansible_collections", c)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target):
        shutil.rmtree(target)
    shutil.move(os.path.join(staging, "ansible_collections", c), target)
PY
    rm -f "$COLLECTIONS_DIR"/.from-ansible-*
    touch "$stamp"
    rm -rf "$tmp"
    note "collections: extracted ${WANTED_COLLECTIONS[*]} from ansible $ANSIBLE_WHEEL_VERSION into" \
        "$COLLECTIONS_DIR in $(elapsed "$t0")"
}

###############################################################################
# 3. ansible-test's pip bootstrap, offline
###############################################################################
step_get_pip() {
    local version cache script
    # The pip version ansible-test bootstraps its venvs with (24.2 for ansible-core 2.19).
    version=$(python3 - <<'PY'
import pathlib, re, ansible_test
text = (pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
m = re.search(r"default_packages = dict\(\s*pip='([0-9.]+)'", text)
print(m.group(1) if m else "24.2")
PY
)
    cache="${HOME:-/root}/.ansible/test/cache"
    script="$cache/get_pip_${version//./_}.py"
    mkdir -p "$cache"
    local body
    # ansible-test runs this as get-pip.py with pip's options and `pip==VERSION` (PyPI is reachable,
    # its bootstrap host is not). ensurepip sets PIP_CONFIG_FILE=/dev/null in os.environ, which would
    # hide /etc/pip.conf (the CA bundle PyPI validates with here), so the install gets a copy saved first.
    body=$(cat <<'PY'
"""Offline stand-in for ansible-test's get-pip.py (written by madengine's tests/infra/ansible_deps.sh)."""
import os
import subprocess
import sys

env = dict(os.environ)  # before ensurepip, which sets PIP_CONFIG_FILE=/dev/null
import ensurepip  # noqa: E402

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]  # get-pip.py-only options
if args:
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args], env=env))
PY
)
    if [[ -f $script && $(<"$script") == "$body" ]]; then
        note "get_pip: $script present"
        return
    fi
    printf '%s\n' "$body" >"$script.tmp"
    mv -f "$script.tmp" "$script"
    rm -f "$script.download"
    note "get_pip: wrote the offline stand-in $script (pip $version)"
}

###############################################################################
# 4. the molecule `nodes` image
###############################################################################
step_node_image() {
    local want have t0
    want=$(sha256sum "$NODE_DOCKERFILE" | cut -c1-16)
    have=$("$DOCKER" image inspect -f '{{ index .Config.Labels "io.madengine.dockerfile-sha" }}' "$NODE_IMAGE" 2>/dev/null || true)
    if [[ $have == "$want" ]]; then
        note "node image: $NODE_IMAGE present"
        return
    fi
    "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "base image $BASE_IMAGE is missing: run tests/infra/up.sh first"
    t0=$(date +%s)
    # Host networking: the engine has no bridge (dockerd --bridge=none).
    # No build context: the Dockerfile copies nothing.
    "$DOCKER" build -q --network host --label "io.madengine.dockerfile-sha=$want" -t "$NODE_IMAGE" - \
        <"$NODE_DOCKERFILE" >/dev/null || die "docker build of $NODE_IMAGE failed"
    note "node image: built $NODE_IMAGE in $(elapsed "$t0")"
}

step_tools
step_collections
step_get_pip
step_node_image

echo
echo "madengine ansible test deps are ready ($(elapsed "$T_START")):"
for line in "${SUMMARY[@]}"; do echo "  - $line"; done
echo "  collections: ANSIBLE_COLLECTIONS_PATH=$COLLECTIONS_DIR"
