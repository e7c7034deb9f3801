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
