#!/usr/bin/env bash
# The README's main command: bring up the local cluster (e2e/cluster/cluster.sh: control
# plane, node, moat-cri installed on the host, Moat from its Helm chart), apply
# crds/examples/hello.yaml (a short program, isolation Auto), wait for it to finish, and
# print its phase, the isolation it got and why (status.isolation, as the node reported
# it), its output (the logs of its pod) and its exit code.
#
# The cluster stays up afterwards: `e2e/quickstart.sh down` stops it and removes its state.
# Run it under `flock /tmp/moat-integration.lock` where other runs share this machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
kubectl=$MOAT_CACHE/bin/kubectl

if [ "${1:-}" = down ]; then
    exec bash "$root/e2e/cluster/cluster.sh" down
fi

if [ "${MOAT_QUICKSTART_SETUP:-1}" = 1 ]; then
    bash "$root/scripts/install-deps.sh"
    bash "$root/e2e/tools/build.sh"
    bash "$root/e2e/images/build.sh" >/dev/null
    if [ ! -x "$root/build-e2e/isolation/installer/moat-install" ]; then
        cmake -S "$root" -B "$root/build-e2e" -G Ninja -DCMAKE_BUILD_TYPE=Debug >/dev/null
        nice cmake --build "$root/build-e2e" --target moat-install >/dev/null
    fi
fi
bash "$root/e2e/cluster/cluster.sh" up
eval "$(bash "$root/e2e/cluster/cluster.sh" env)"

"$kubectl" delete sandbox hello --ignore-not-found --wait=true >/dev/null
"$kubectl" apply -f "$root/crds/examples/hello.yaml"
phase=""
for _ in $(seq 1 240); do
    phase=$("$kubectl" get sandbox hello -o jsonpath='{.status.phase}')
    case $phase in Succeeded | Failed | Expired) break ;; esac
    sleep 0.5
done

get() { "$kubectl" get sandbox hello -o jsonpath="{$1}"; }
echo
echo "phase:      $phase"
echo "isolation:  $(get .status.isolation.runtime) (handler $(get .status.isolation.handler), verified $(get .status.isolation.verified))"
echo "why:        $(get .status.isolation.reason)"
echo "exit code:  $(get .status.exitCode)"
echo "output (kubectl logs $(get .status.podName)):"
"$kubectl" logs "$(get .status.podName)" 2>&1 | sed 's/^/    /'
echo
echo "# kubectl get sbx -o wide"
"$kubectl" get sbx -o wide
echo
echo "The cluster is still running:  $(bash "$root/e2e/cluster/cluster.sh" env)"
echo "Stop it and remove its state:  e2e/quickstart.sh down"
case $phase in Succeeded) ;; *) exit 1 ;; esac
