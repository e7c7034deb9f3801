#!/usr/bin/env bash
# moat-cri's relay benchmark (bench/cri_bench.c): builds Moat with release flags, starts its
# own containerd (e2e/node/node.sh containerd, a state directory of its own) and moat-cri in
# front of it, runs the benchmark, and stops both. Prints measured figures; asserts nothing.
#
#   bash bench/cri_bench.sh [cri_bench options: --calls N --seconds S --callers C --pods P]
#
# MOAT_CRI=path uses that moat-cri instead of the one built here; BENCH_BUILD=dir builds in
# another directory (default build-bench, as bench/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../e2e/lib/procs.sh
. e2e/lib/procs.sh
export MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
build=${BENCH_BUILD:-build-bench}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOAT_TESTS=OFF >/dev/null
cmake --build "$build" --target cri_bench moat-cri >/dev/null
shim_bin=${MOAT_CRI:-$build/cri-shim/moat-cri}

work=$(mktemp -d /tmp/moat-cri-bench.XXXXXX)
# Its own bridge and pod range, apart from the e2e node's and the shim tests'.
node_env=(MOAT_CLUSTER_DIR="$work" MOAT_BRIDGE=moat-brb MOAT_POD_CIDR=10.91.0.0/16
    MOAT_NODE_IP=10.91.0.1)
shim_pid=
cleanup() {
    if [ -n "$shim_pid" ]; then
        kill -TERM "$shim_pid" 2>/dev/null || true
        wait "$shim_pid" 2>/dev/null || true
        "$shim_bin" --config="$work/moat-cri.yaml" --remove-wall >/dev/null 2>&1 || true
    fi
    env "${node_env[@]}" bash e2e/node/node.sh down >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

env "${node_env[@]}" bash e2e/node/node.sh containerd 2>/dev/null
containerd_sock=$work/node/containerd/containerd.sock
containerd_pid=$(cat "$work/node/run/containerd.pid")

procs_moat_cri "$shim_bin" "$work" "$containerd_sock" moat_bench

"$build/bench/cri_bench" --containerd "$containerd_sock" --containerd-pid "$containerd_pid" \
    --shim "$work/cri.sock" --shim-pid "$shim_pid" --work "$work" "$@"
