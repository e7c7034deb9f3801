# shellcheck shell=bash
# Sourced by the local cluster's scripts (control-plane.sh, node.sh, addons.sh): their
# components as plain processes, each in its own session, tracked by a pid file, and the
# kubeconfigs they hand those components.

# procs_start <log> <pidfile> <command...>
procs_start() {
    local log=$1 pidfile=$2
    shift 2
    setsid "$@" >"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

# procs_alive <pidfile>: the process it names runs.
procs_alive() { kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

# procs_stop <pidfile> <tenths>: TERM, up to <tenths> tenths of a second, then KILL.
procs_stop() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 "$2"); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

# procs_kubeconfig <kubectl> <file> <server> <ca> <user> <cert> <key>: a kubeconfig (mode
# 0600) for one client certificate, everything inlined, its one context current.
procs_kubeconfig() {
    local kubectl=$1 f=$2
    (umask 077 && : >>"$f") # the key goes in: never readable by others, not even for a moment
    KUBECONFIG=$f "$kubectl" config set-cluster local --server="$3" --certificate-authority="$4" \
        --embed-certs >/dev/null
    KUBECONFIG=$f "$kubectl" config set-credentials "$5" --client-certificate="$6" \
        --client-key="$7" --embed-certs >/dev/null
    KUBECONFIG=$f "$kubectl" config set-context local --cluster=local --user="$5" >/dev/null
    KUBECONFIG=$f "$kubectl" config use-context local >/dev/null
    chmod 600 "$f"
}

# procs_moat_cri <moat-cri> <dir> <upstream socket> <wall table>: moat-cri in front of a
# containerd, in the background, seeing no hypervisor whatever this machine has (its probe
# looks at paths that do not exist); its config, log and socket (cri.sock) in <dir>. Sets
# shim_pid; returns once it listens, or 1 (its log on stderr) when it exits or does not
# listen within 5 s.
procs_moat_cri() {
    local bin=$1 dir=$2 port
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$dir/moat-cri.yaml" <<YAML
listen: $dir/cri.sock
upstream: $3
metrics: 127.0.0.1:$port
probe: {kvm: /nonexistent, mshv: /nonexistent}
egressWall: {table: $4}
YAML
    "$bin" --config="$dir/moat-cri.yaml" >"$dir/moat-cri.log" 2>&1 &
    shim_pid=$!
    for _ in $(seq 1 100); do
        [ -S "$dir/cri.sock" ] && return 0
        kill -0 "$shim_pid" 2>/dev/null || { cat "$dir/moat-cri.log" >&2; return 1; }
        sleep 0.05
    done
    echo "moat-cri did not listen on $dir/cri.sock" >&2
    return 1
}
