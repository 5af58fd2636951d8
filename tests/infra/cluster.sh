#!/usr/bin/env bash
# Test "cluster" for madengine's Ansible path: N nodes on loopback addresses 127.0.0.2 … 127.0.0.(N+1).
# Each node K is
#   - an sshd on 127.0.0.K:2222 (its own host key, config and pidfile; root logs in with a generated
#     ed25519 client key; host-key checking stays on through a generated known_hosts), and
#   - its own dockerd (own data-root, exec-root, socket, pidfile and engine ID; --bridge=none
#     --iptables=false, so only host networking) whose image store starts empty: nodes get images
#     from the registry on 127.0.0.1:5000 (started by tests/infra/up.sh), like real hosts.
# All nodes share this machine's root account and filesystem; they are told apart by address, sshd
# and docker socket, and each gets its own work dir (inventory var mad_workdir).
#
# Usage (as root, after tests/infra/up.sh):
#   cluster.sh up [N]                 start nodes 2..N+1 (default 3); idempotent: running nodes are left
#                                     alone. Writes and prints <state>/inventory.yml (+ cluster.json).
#   cluster.sh down [--purge]         stop every node's sshd and dockerd by pidfile; keeps keys.
#                                     --purge also removes node data (images, work dirs, logs).
#   cluster.sh status                 each node's sshd/dockerd state; exit 0 only if every node of the
#                                     last `up` is fully up.
#   cluster.sh inventory              print the inventory path (exit 1 if there is none).
#   cluster.sh kill-sshd K [--listener-only]
#                                     SIGKILL node K's sshd and (unless --listener-only) every ssh session
#                                     it spawned: the host becomes unreachable, even over existing
#                                     ControlMaster connections.
#   cluster.sh kill-dockerd K         SIGKILL node K's dockerd (its containerd dies with it; running
#                                     containers are orphaned until start-node or down removes them).
#   cluster.sh start-node K           (re)start whatever of node K is not running and wait for it.
#   cluster.sh stop-node K            stop node K gracefully (like `down`, for one node).
#   cluster.sh docker K ARGS...       run the docker CLI against node K's engine.
#
# Environment: MADENGINE_CLUSTER_DIR (default $MADENGINE_TEST_STATE_DIR/cluster, i.e.
# /var/lib/madengine-test/cluster).
set -euo pipefail

# shellcheck source=tests/infra/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CLUSTER_DIR="${MADENGINE_CLUSTER_DIR:-$STATE_DIR/cluster}"
SSH_PORT=2222
CLIENT_KEY="$CLUSTER_DIR/id_ed25519"
KNOWN_HOSTS="$CLUSTER_DIR/known_hosts"
AUTH_KEYS="$CLUSTER_DIR/authorized_keys"
INVENTORY="$CLUSTER_DIR/inventory.yml"
CLUSTER_JSON="$CLUSTER_DIR/cluster.json"
SIZE_FILE="$CLUSTER_DIR/size"
SSHD_BIN=/usr/sbin/sshd
SFTP_SERVER=/usr/lib/openssh/sftp-server
SSHD_WAIT_S=20
DOCKERD_WAIT_S=90
if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi

clog() { printf '[cluster] %s\n' "$*" >&2; }
cdie() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
secs_since() { local d=$(($(now_ms) - $1)); printf '%d.%01ds' $((d / 1000)) $((d % 1000 / 100)); }

# Paths end up in sshd_config, ssh options (split on spaces by Ansible) and YAML: keep them plain.
[[ $CLUSTER_DIR =~ ^/[A-Za-z0-9/._-]+$ ]] ||
    cdie "MADENGINE_CLUSTER_DIR must be an absolute path of [A-Za-z0-9/._-] characters (got '$CLUSTER_DIR')"

node_dir() { echo "$CLUSTER_DIR/node$1"; }
node_addr() { echo "127.0.0.$1"; }
node_exec_root() { echo "$(node_dir "$1")/exec"; }
node_sock() { echo "$(node_dir "$1")/docker.sock"; }
node_docker() { local k=$1; shift; DOCKER_HOST="unix://$(node_sock "$k")" "$DOCKER" "$@"; }

valid_k() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= 2 && $1 <= 254)) || cdie "node number must be 2..254 (got '$1')"; }

# Node numbers that have a directory, in numeric order.
known_nodes() {
    local d
    for d in "$CLUSTER_DIR"/node*; do
        [[ -d $d && ${d##*/node} =~ ^[0-9]+$ ]] && echo "${d##*/node}"
    done | sort -n
}

need_tools() {
    [[ $EUID -eq 0 ]] || cdie "run as root (the nodes' sshd and dockerd need it)"
    local t
    for t in "$SSHD_BIN" /usr/bin/ssh /usr/bin/ssh-keygen /usr/sbin/dockerd "$SFTP_SERVER" /usr/bin/unshare /usr/bin/mount; do
        [[ -x $t ]] || cdie "$t is missing; run 'bash tests/infra/up.sh' first (it installs openssh-server and docker.io)"
    done
}

lock() {
    mkdir -p "$CLUSTER_DIR"
    exec 8>"$CLUSTER_DIR/cluster.lock"
    flock -w 300 8 || cdie "another cluster.sh still holds $CLUSTER_DIR/cluster.lock"
}

###############################################################################
# processes
###############################################################################
# pidfile_pid PIDFILE MATCH: print the pid if PIDFILE names a live process whose command line contains
# MATCH (a path unique to the node, so a recycled pid is never mistaken for ours).
pidfile_pid() {
    pid_alive "$1" "$2" || return 1
    cat "$1"
}

sshd_match() { echo "$(node_dir "$1")/sshd_config"; }
dockerd_match() { echo "$(node_dir "$1")/daemon.json"; }
sshd_pid() { pidfile_pid "$(node_dir "$1")/sshd.pid" "$(sshd_match "$1")"; }
# dockerd writes its --pidfile itself once it has started (and refuses to start if that file names a
# live process), so spawn_daemon records the pid in dockerd.launch.pid, which covers the startup.
dockerd_pid() {
    pidfile_pid "$(node_dir "$1")/docker.pid" "$(dockerd_match "$1")" ||
        pidfile_pid "$(node_dir "$1")/dockerd.launch.pid" "$(dockerd_match "$1")"
}

# descendants PID: every live descendant of PID (children first), from /proc.
descendants() {
    local parent=$1 child
    for child in $(ps -o pid= --ppid "$parent" 2>/dev/null); do
        descendants "$child"
        echo "$child"
    done
}

# running PID: the process exists and is not a zombie (PID 1 on these machines reaps only every ~2 s).
running() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# wait_gone TIMEOUT_S PID...: wait for the pids to exit; SIGKILL what is left after TIMEOUT_S.
wait_gone() {
    local timeout=$1 i p alive
    shift
    for ((i = 0; i < timeout * 10; i++)); do
        alive=0
        for p in "$@"; do running "$p" && alive=1; done
        ((alive)) || return 0
        sleep 0.1
    done
    for p in "$@"; do
        if running "$p"; then
            clog "pid $p still alive after ${timeout}s: SIGKILL"
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    sleep 0.2
}

# shim_pids K: containerd-shim processes serving node K's containerd (left behind when dockerd died).
shim_pids() {
    local addr p comm
    addr="$(node_exec_root "$1")/containerd/containerd.sock"
    for p in /proc/[0-9]*; do
        comm=""
        { read -r comm <"$p/comm"; } 2>/dev/null || continue
        [[ $comm == containerd-shim* ]] || continue
        tr '\0' '\n' <"$p/cmdline" 2>/dev/null | {
            read -r exe || exit 1
            [[ $exe == *containerd-shim* ]] || exit 1
            grep -qxF -- "$addr"
        } && echo "${p#/proc/}"
    done
    return 0
}

###############################################################################
# keys, configs, inventory
###############################################################################
ensure_client_key() {
    if [[ ! -s $CLIENT_KEY || ! -s $CLIENT_KEY.pub ]]; then
        rm -f "$CLIENT_KEY" "$CLIENT_KEY.pub"
        ssh-keygen -q -t ed25519 -N '' -C "madengine-test-client" -f "$CLIENT_KEY" </dev/null
        clog "generated client key $CLIENT_KEY"
    fi
    chmod 600 "$CLIENT_KEY"
    cp "$CLIENT_KEY.pub" "$AUTH_KEYS.tmp" && mv -f "$AUTH_KEYS.tmp" "$AUTH_KEYS"
}

# write_if_changed FILE: replace FILE with stdin only if the content differs (keeps mtimes stable).
write_if_changed() {
    local f=$1 tmp="$1.tmp.$$"
    cat >"$tmp"
    if [[ -f $f ]] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; else mv -f "$tmp" "$f"; fi
}

ensure_node_files() {
    local k=$1 d exec_root
    d=$(node_dir "$k")
    exec_root=$(node_exec_root "$k")
    # unix socket paths are limited to 107 bytes; the longest one dockerd makes under the exec-root is
    # containerd/containerd.sock.ttrpc (and containerd-debug.sock).
    ((${#exec_root} + 34 <= 107)) ||
        cdie "exec-root $exec_root is too long for unix sockets; use a shorter MADENGINE_CLUSTER_DIR"
    mkdir -p "$d" "$d/work"
    if [[ ! -s $d/ssh_host_ed25519_key || ! -s $d/ssh_host_ed25519_key.pub ]]; then
        rm -f "$d/ssh_host_ed25519_key" "$d/ssh_host_ed25519_key.pub"
        ssh-keygen -q -t ed25519 -N '' -C "madengine-test-node$k" -f "$d/ssh_host_ed25519_key" </dev/null
    fi
    chmod 600 "$d/ssh_host_ed25519_key"
    write_if_changed "$d/sshd_config" <<EOF
# madengine test node $k (generated by tests/infra/cluster.sh; do not edit)
ListenAddress $(node_addr "$k")
Port $SSH_PORT
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
AuthorizedKeysFile $AUTH_KEYS
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AcceptEnv LANG LC_*
# Ansible opens many sessions per host (forks, ControlMaster): don't throttle them.
MaxSessions 100
MaxStartups 100:30:200
Subsystem sftp $SFTP_SERVER
EOF
    # The engine ID comes from a key file, /etc/docker/key.json by default: give each node its own,
    # or every node would report the main engine's ID. --config-file also keeps /etc/docker/daemon.json out.
    write_if_changed "$d/daemon.json" <<EOF
{"deprecated-key-path": "$d/key.json"}
EOF
}

write_known_hosts() {
    local k
    for k in $(known_nodes); do
        [[ -s $(node_dir "$k")/ssh_host_ed25519_key.pub ]] || continue
        printf '[%s]:%s %s\n' "$(node_addr "$k")" "$SSH_PORT" \
            "$(cut -d' ' -f1,2 "$(node_dir "$k")/ssh_host_ed25519_key.pub")"
    done | write_if_changed "$KNOWN_HOSTS"
}

write_inventory() {
    local n=$1 k d common
    common="-o UserKnownHostsFile=$KNOWN_HOSTS -o StrictHostKeyChecking=yes"
    {
        echo "# Test cluster inventory: $n node(s) on loopback, generated by tests/infra/cluster.sh up $n."
        echo "# Every node is an sshd on 127.0.0.K:$SSH_PORT with its own dockerd (mad_docker_host)."
        echo "all:"
        echo "  children:"
        echo "    mad_nodes:"
        echo "      hosts:"
        for ((k = 2; k <= n + 1; k++)); do
            d=$(node_dir "$k")
            cat <<EOF
        node$k:
          ansible_host: $(node_addr "$k")
          ansible_port: $SSH_PORT
          ansible_user: root
          ansible_ssh_private_key_file: $CLIENT_KEY
          ansible_ssh_common_args: "$common"
          ansible_python_interpreter: /usr/bin/python3
          mad_docker_host: unix://$(node_sock "$k")
          mad_workdir: $d/work
EOF
        done
    } | write_if_changed "$INVENTORY"
    {
        printf '{\n  "cluster_dir": "%s",\n  "inventory": "%s",\n  "client_key": "%s",\n' \
            "$CLUSTER_DIR" "$INVENTORY" "$CLIENT_KEY"
        printf '  "known_hosts": "%s",\n  "ssh_port": %d,\n  "group": "mad_nodes",\n  "nodes": [' \
            "$KNOWN_HOSTS" "$SSH_PORT"
        for ((k = 2; k <= n + 1; k++)); do
            d=$(node_dir "$k")
            ((k > 2)) && printf ','
            printf '\n    {"name": "node%d", "index": %d, "address": "%s", "port": %d, ' "$k" "$k" "$(node_addr "$k")" "$SSH_PORT"
            printf '"docker_host": "unix://%s", "workdir": "%s", "node_dir": "%s", "exec_root": "%s", ' \
                "$(node_sock "$k")" "$d/work" "$d" "$(node_exec_root "$k")"
            printf '"sshd_pidfile": "%s", "dockerd_pidfile": "%s"}' "$d/sshd.pid" "$d/docker.pid"
        done
        printf '\n  ]\n}\n'
    } | write_if_changed "$CLUSTER_JSON"
    echo "$n" | write_if_changed "$SIZE_FILE"
}

###############################################################################
# health checks
###############################################################################
ssh_ok() {
    timeout 15 ssh -F /dev/null -i "$CLIENT_KEY" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o UserKnownHostsFile="$KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes \
        -o ConnectTimeout=5 -o LogLevel=ERROR -p "$SSH_PORT" "root@$(node_addr "$1")" true </dev/null >/dev/null 2>&1
}
docker_ok() { node_docker "$1" info >/dev/null 2>&1; }

###############################################################################
# start / stop one node
###############################################################################
# start_daemons K: start node K's sshd and dockerd if they are not running (no waiting).
start_daemons() {
    local k=$1 d
    d=$(node_dir "$k")
    mkdir -p /run/sshd
    if ! sshd_pid "$k" >/dev/null; then
        "$SSHD_BIN" -t -f "$d/sshd_config" || cdie "node$k: sshd rejects $d/sshd_config"
        printf '\n==== %s cluster.sh starting sshd ====\n' "$(date -Is)" >>"$d/sshd.log"
        # A node is a fresh machine: its root account must not run this machine's ~/.bashrc (bash sources
        # it for every ssh command; here it runs `pyenv init`, 0.1 s per Ansible task). sshd runs in its
        # own mount namespace where an empty file covers it (slave propagation: the machine's mounts and
        # unmounts, such as containers', still reach it). -D: stay in the foreground
        # (spawn_daemon detaches it); -e: log to stderr, i.e. sshd.log.
        local -a sshd_cmd=("$SSHD_BIN" -D -e -f "$d/sshd_config")
        if [[ -f /root/.bashrc ]]; then
            : >"$d/bashrc"
            sshd_cmd=(unshare --mount --propagation slave sh -c \
                'mount --bind "$1" /root/.bashrc && shift && exec "$@"' sh "$d/bashrc" "${sshd_cmd[@]}")
        fi
        spawn_daemon "$d/sshd.pid" "$d/sshd.log" "${sshd_cmd[@]}"
        clog "node$k: started sshd pid $(<"$d/sshd.pid") on $(node_addr "$k"):$SSH_PORT"
    fi
    if ! dockerd_pid "$k" >/dev/null; then
        # A killed dockerd leaves its pidfile behind, and dockerd refuses to start while the pid in it
        # exists, even as a zombie not reaped yet. It is not our dockerd any more (checked above).
        rm -f "$d/docker.pid"
        # Containers of a killed dockerd: stop them now, as a restarted host would.
        cleanup_engine "$k"
        # Its containerd's pidfile: dockerd would wait 15 s for a dead (zombie) containerd to answer.
        rm -f "$(node_exec_root "$k")/containerd/containerd.pid"
        printf '\n==== %s cluster.sh starting dockerd ====\n' "$(date -Is)" >>"$d/dockerd.log"
        spawn_daemon "$d/dockerd.launch.pid" "$d/dockerd.log" dockerd --config-file "$d/daemon.json" \
            --data-root "$d/data" --exec-root "$(node_exec_root "$k")" --pidfile "$d/docker.pid" \
            -H "unix://$(node_sock "$k")" --bridge=none --iptables=false --ip-masq=false
        clog "node$k: started dockerd pid $(<"$d/dockerd.launch.pid") on unix://$(node_sock "$k")"
    fi
}

# wait_node K: wait until node K's sshd accepts our key and its dockerd answers `docker info`.
wait_node() {
    local k=$1 d t0 pid
    d=$(node_dir "$k")
    t0=$(now_ms)
    until ssh_ok "$k"; do
        if ! pid=$(sshd_pid "$k"); then
            tail -n 20 "$d/sshd.log" >&2 || true
            cdie "node$k: sshd is not running (exited during startup?); see $d/sshd.log"
        fi
        (($(now_ms) - t0 < SSHD_WAIT_S * 1000)) ||
            cdie "node$k: sshd pid $pid does not accept 'ssh root@$(node_addr "$k") -p $SSH_PORT' after ${SSHD_WAIT_S}s; see $d/sshd.log"
        sleep 0.1
    done
    until docker_ok "$k"; do
        if ! pid=$(dockerd_pid "$k"); then
            tail -n 20 "$d/dockerd.log" >&2 || true
            cdie "node$k: dockerd is not running (exited during startup?); see $d/dockerd.log"
        fi
        (($(now_ms) - t0 < DOCKERD_WAIT_S * 1000)) ||
            cdie "node$k: dockerd pid $pid does not answer on $(node_sock "$k") after ${DOCKERD_WAIT_S}s; see $d/dockerd.log"
        sleep 0.2
    done
}

# wait_nodes K...: wait_node for all of them at once (each ssh login costs about 0.3 s here).
wait_nodes() {
    local k pids=() failed=0 p
    for k in "$@"; do
        wait_node "$k" &
        pids+=("$!")
    done
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    ((!failed)) || cdie "not every node came up (see above)"
}

# signal_node K: ask node K's sshd (and its sessions) and dockerd to stop; prints the pids to wait for.
signal_node() {
    local k=$1 pid kids
    if pid=$(sshd_pid "$k"); then
        kids=$(descendants "$pid")
        kill -TERM "$pid" 2>/dev/null || true
        # shellcheck disable=SC2086
        [[ -n $kids ]] && kill -TERM $kids 2>/dev/null || true
        echo "$pid" $kids
    fi
    if pid=$(dockerd_pid "$k"); then
        kill -TERM "$pid" 2>/dev/null || true
        echo "$pid"
    fi
}

# cleanup_engine K: with node K's dockerd gone, remove what a killed dockerd leaves behind: its
# containerd if still alive, and the shims with their containers (a restarted dockerd would otherwise
# give each of them a 10 s stop timeout before answering).
cleanup_engine() {
    local k=$1 exec_root pid shims=() id
    exec_root=$(node_exec_root "$k")
    if pid=$(pidfile_pid "$exec_root/containerd/containerd.pid" "$exec_root/containerd/containerd.toml"); then
        clog "node$k: stopping leftover containerd pid $pid"
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone 10 "$pid"
    fi
    mapfile -t shims < <(shim_pids "$k")
    if ((${#shims[@]})); then
        clog "node$k: removing ${#shims[@]} orphaned container(s) of the killed dockerd"
        for id in $(ls "$exec_root/runtime-runc/moby" 2>/dev/null); do
            runc --root "$exec_root/runtime-runc/moby" delete --force "$id" >/dev/null 2>&1 || true
        done
        kill -TERM "${shims[@]}" 2>/dev/null || true
        wait_gone 5 "${shims[@]}"
    fi
}

# cleanup_node K: after dockerd is gone, make sure the node is really stopped (cleanup_engine) and
# nothing is mounted under its directory any more, so its data can be removed.
cleanup_node() {
    local k=$1 d m
    d=$(node_dir "$k")
    cleanup_engine "$k"
    for m in $(findmnt -rn -o TARGET | grep -F "$d/" | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || clog "node$k: cannot unmount $m"
    done
    rm -f "$d/sshd.pid" "$d/docker.pid" "$d/dockerd.launch.pid"
}

stop_nodes() {
    local k pids=()
    for k in "$@"; do
        mapfile -t -O "${#pids[@]}" pids < <(signal_node "$k" | tr ' ' '\n' | grep .)
    done
    # dockerd gives each running container 10 s to stop.
    ((${#pids[@]})) && wait_gone 60 "${pids[@]}"
    for k in "$@"; do cleanup_node "$k"; done
}

###############################################################################
# commands
###############################################################################
cmd_up() {
    local n=${1:-3} k t0 nodes=()
    [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 253)) || cdie "up N: N must be 1..253 (got '$n')"
    need_tools
    lock
    t0=$(now_ms)
    ensure_client_key
    for ((k = 2; k <= n + 1; k++)); do
        nodes+=("$k")
        ensure_node_files "$k"
    done
    write_known_hosts
    local started=0
    for k in "${nodes[@]}"; do
        if sshd_pid "$k" >/dev/null && dockerd_pid "$k" >/dev/null; then continue; fi
        start_daemons "$k"
        started=$((started + 1))
    done
    wait_nodes "${nodes[@]}"
    write_inventory "$n"
    local extra=()
    for k in $(known_nodes); do
        ((k > n + 1)) && { sshd_pid "$k" >/dev/null || dockerd_pid "$k" >/dev/null; } && extra+=("node$k")
    done
    ((${#extra[@]})) && clog "note: ${extra[*]} still running but not in the inventory (cluster.sh down stops them)"
    clog "$n node(s) up ($started started, $((n - started)) already running) in $(secs_since "$t0")"
    echo "$INVENTORY"
}

cmd_down() {
    local purge=0 k nodes=()
    [[ ${1:-} == --purge ]] && purge=1
    [[ $EUID -eq 0 ]] || cdie "run as root"
    [[ -d $CLUSTER_DIR ]] || { clog "no cluster state at $CLUSTER_DIR; nothing to stop"; return; }
    lock
    mapfile -t nodes < <(known_nodes)
    stop_nodes "${nodes[@]}"
    if ((purge)); then
        for k in "${nodes[@]}"; do
            local d
            d=$(node_dir "$k")
            rm -rf "$d/data" "$d/exec" "$d/work" "$d"/*.log "$d/docker.sock" "$d/key.json"
        done
        clog "stopped ${#nodes[@]} node(s); purged their data (keys kept in $CLUSTER_DIR)"
    else
        clog "stopped ${#nodes[@]} node(s); keys and data kept in $CLUSTER_DIR"
    fi
}

cmd_status() {
    local k n=0 all_ok=1 s_state d_state pid images
    [[ -s $SIZE_FILE ]] && n=$(<"$SIZE_FILE")
    local nodes
    nodes=$(known_nodes)
    if [[ -z $nodes ]]; then
        echo "no test nodes under $CLUSTER_DIR (start them with: bash tests/infra/cluster.sh up 3)"
        return 1
    fi
    echo "cluster: $CLUSTER_DIR   inventory: $([[ -s $INVENTORY ]] && echo "$INVENTORY ($n node(s))" || echo none)"
    for k in $nodes; do
        if pid=$(sshd_pid "$k"); then
            if ssh_ok "$k"; then s_state="running (pid $pid, ssh ok)"; else s_state="running (pid $pid, ssh FAILS)"; fi
        else
            s_state="stopped"
        fi
        if pid=$(dockerd_pid "$k"); then
            if images=$(node_docker "$k" images -q 2>/dev/null | wc -l) && docker_ok "$k"; then
                d_state="running (pid $pid, $images image(s))"
            else
                d_state="running (pid $pid, NOT answering)"
            fi
        else
            d_state="stopped"
        fi
        printf 'node%-4s %-16s sshd: %-28s dockerd: %s\n' "$k" "$(node_addr "$k"):$SSH_PORT" "$s_state" "$d_state"
        if ((k <= n + 1)) && [[ $s_state != *"ssh ok"* || $d_state != *image* ]]; then all_ok=0; fi
    done
    ((all_ok && n > 0))
}

cmd_kill_sshd() {
    local k=$1 pid kids=""
    valid_k "$k"
    pid=$(sshd_pid "$k") || cdie "node$k: sshd is not running"
    [[ ${2:-} == --listener-only ]] || kids=$(descendants "$pid")
    kill -KILL "$pid"
    # shellcheck disable=SC2086
    [[ -n $kids ]] && kill -KILL $kids 2>/dev/null || true
    # shellcheck disable=SC2086
    wait_gone 5 "$pid" $kids
    clog "node$k: killed sshd pid $pid${kids:+ and $(echo $kids | wc -w) session process(es)}"
}

cmd_kill_dockerd() {
    local k=$1 pid
    valid_k "$k"
    pid=$(dockerd_pid "$k") || cdie "node$k: dockerd is not running"
    kill -KILL "$pid"
    wait_gone 5 "$pid"
    clog "node$k: killed dockerd pid $pid"
}

cmd_start_node() {
    local k=$1
    valid_k "$k"
    need_tools
    lock
    [[ -s $(node_dir "$k")/sshd_config ]] || cdie "node$k was never set up; use: cluster.sh up N"
    ensure_client_key
    start_daemons "$k"
    wait_nodes "$k"
    clog "node$k: up"
}

cmd_stop_node() {
    local k=$1
    valid_k "$k"
    [[ $EUID -eq 0 ]] || cdie "run as root"
    lock
    stop_nodes "$k"
    clog "node$k: stopped"
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

case ${1:-} in
    up) cmd_up "${2:-3}" ;;
    down) cmd_down "${2:-}" ;;
    status) cmd_status ;;
    inventory) [[ -s $INVENTORY ]] && echo "$INVENTORY" || cdie "no inventory at $INVENTORY; run: cluster.sh up N" ;;
    kill-sshd) [[ $# -ge 2 ]] || usage; cmd_kill_sshd "$2" "${3:-}" ;;
    kill-dockerd) [[ $# -ge 2 ]] || usage; cmd_kill_dockerd "$2" ;;
    start-node) [[ $# -ge 2 ]] || usage; cmd_start_node "$2" ;;
    stop-node) [[ $# -ge 2 ]] || usage; cmd_stop_node "$2" ;;
    docker) [[ $# -ge 2 ]] || usage; valid_k "$2"; k=$2; shift 2; node_docker "$k" "$@" ;;
    *) usage ;;
esac
