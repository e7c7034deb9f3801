#!/usr/bin/env bash
# control-plane.sh keeps its promises: `up` after a crash cleans up first and comes up,
# and `down` leaves no process and no state. Runs on its own directory and ports, beside
# the shared test cluster.
set -euo pipefail
script=$(cd "$(dirname "$0")/../../../e2e/cluster" && pwd)/control-plane.sh
MOAT_CLUSTER_DIR=$(mktemp -d /var/tmp/moat-lifecycle.XXXXXX)
export MOAT_CLUSTER_DIR
export MOAT_APISERVER_PORT=16443 MOAT_ETCD_PORT=23890
fail() { echo "FAIL: $*" >&2; bash "$script" down || true; exit 1; }
# Processes with the cluster dir on their command line (a grep over /proc/*/cmdline
# would count itself).
ours() {
    local p n=0
    for p in /proc/[0-9]*; do
        tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$MOAT_CLUSTER_DIR/" && n=$((n + 1))
    done
    echo $n
}

rmdir "$MOAT_CLUSTER_DIR" # up creates it; an existing one means "clean up first"
bash "$script" up || fail "first up"
[ "$(ours)" -ge 4 ] || fail "expected 4 processes, found $(ours)"

# A crash: everything killed at once, pid files and state left behind.
pkill -KILL -f -- "$MOAT_CLUSTER_DIR/" || true
sleep 0.5
[ -d "$MOAT_CLUSTER_DIR/etcd" ] || fail "crash simulation removed state"
bash "$script" up || fail "up after a crash"
KUBECONFIG=$MOAT_CLUSTER_DIR/admin.kubeconfig "${MOAT_CACHE:-/var/cache/moat}/bin/kubectl" \
    get --raw /readyz >/dev/null || fail "not ready after the second up"

bash "$script" down || fail "down"
[ "$(ours)" -eq 0 ] || fail "$(ours) processes left after down"
[ ! -e "$MOAT_CLUSTER_DIR" ] || fail "state left after down"
echo "lifecycle: up, crash, up, down: no process and no state left"
