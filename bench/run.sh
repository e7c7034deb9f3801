#!/usr/bin/env bash
# The README's benchmark command: builds Moat (release flags) and runs every benchmark
# against the local control plane, which it starts if $KUBECONFIG is not set and stops
# afterwards. Prints measured figures.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
export KUBECTL=$MOAT_CACHE/bin/kubectl
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOAT_TESTS=OFF >/dev/null
cmake --build build-bench >/dev/null
started=0
if [ -z "${KUBECONFIG:-}" ]; then
    bash e2e/tools/build.sh >/dev/null
    bash e2e/cluster/control-plane.sh up
    started=1
    eval "$(bash e2e/cluster/control-plane.sh env)"
fi
trap '[ $started = 1 ] && bash e2e/cluster/control-plane.sh down; [ $started = 2 ] && bash e2e/cluster/cluster.sh down' EXIT

echo "== Kubernetes client (bench/kube_bench.c): 1,000 Pods, 20 rounds of watch events"
build-bench/bench/kube_bench 1000 20

echo "== moat-operator (bench/operator_bench.py): 1,000 Sandboxes at once, then 10,000 held"
MOAT_KUBE_BENCH=build-bench/bench/kube_bench /usr/bin/python3 bench/operator_bench.py build-bench/operator/moat-operator "${BENCH_SANDBOXES:-1000}" "${BENCH_HELD:-10000}"

echo "== moat-operator (bench/operator_pending_bench.py): Node events while ${BENCH_PENDING:-2000} VM Sandboxes wait"
/usr/bin/python3 bench/operator_pending_bench.py build-bench/operator/moat-operator "${BENCH_PENDING:-2000}" 10

echo "== moat-cri relay (bench/cri_bench.sh): its own containerd; echo floor, latency, throughput, pod start, memory"
bash bench/cri_bench.sh

echo "== end to end (bench/e2e_bench.py): kubectl apply -> first output and -> Succeeded, Sandboxes (gVisor) beside runc Pods, ${BENCH_E2E_SEQ:-50} sequential and a burst of ${BENCH_E2E_BURST:-20}"
if [ $started = 1 ]; then
    # the whole local cluster (node, moat-cri, the chart) in place of the bare control plane
    bash e2e/cluster/control-plane.sh down
    started=0
    [ -x build-bench/isolation/installer/moat-install ] && export MOAT_INSTALL=$PWD/build-bench/isolation/installer/moat-install
    bash e2e/cluster/cluster.sh up
    started=2
fi
/usr/bin/python3 bench/e2e_bench.py "${BENCH_E2E_SEQ:-50}" "${BENCH_E2E_BURST:-20}"

echo "== Sessions (bench/session_bench.py): exec round trip of \`true\` over pods/exec (${BENCH_EXEC:-200}), files of 1 and 100 MiB through the helper, cold start with and without it; a runc Pod beside"
/usr/bin/python3 bench/session_bench.py "${BENCH_EXEC:-200}" "${BENCH_COLD:-8}"

echo "== Python SDK (bench/sdk_bench.py): Sandbox.create() to the output of exec(echo hi), ${BENCH_SDK_SEQ:-50} sequential and a burst of ${BENCH_SDK_BURST:-20}, a runc Pod beside; the SDK's memory moving 1 and 100 MiB"
"$(bash sdk/python/venv.sh)" bench/sdk_bench.py "${BENCH_SDK_SEQ:-50}" "${BENCH_SDK_BURST:-20}"
