#!/usr/bin/env bash
# The README's main command: bring up the local cluster, install the Sandbox API, apply
# crds/examples/hello.yaml, and print what the API server says about it.
#
# Today the control plane and one node run here; the operator (a later issue) is what turns
# the Sandbox into a running pod, so until it is installed the Sandbox stays without status.
# The cluster stays up afterwards: `e2e/quickstart.sh down` stops it and removes its state.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
kubectl=$MOAT_CACHE/bin/kubectl

if [ "${1:-}" = down ]; then
    bash "$root/e2e/node/node.sh" down
    bash "$root/e2e/cluster/control-plane.sh" down
    exit 0
fi

bash "$root/scripts/install-deps.sh"
bash "$root/e2e/tools/build.sh"
bash "$root/e2e/images/build.sh" >/dev/null
bash "$root/e2e/cluster/control-plane.sh" up
bash "$root/e2e/node/node.sh" up
eval "$(bash "$root/e2e/cluster/control-plane.sh" env)"

"$kubectl" apply --server-side -f "$root/crds/moat.dev_sandboxes.yaml" -f "$root/crds/runtimeclasses.yaml"
"$kubectl" wait --for=condition=Established --timeout=60s crd/sandboxes.moat.dev >/dev/null
for i in $(seq 1 40); do "$kubectl" get sbx >/dev/null 2>&1 && break; sleep 0.25; done
"$kubectl" apply -f "$root/crds/examples/hello.yaml"

echo
echo "# kubectl get sandbox hello -o yaml"
"$kubectl" get sandbox hello -o yaml
echo
echo "# kubectl get sbx"
"$kubectl" get sbx
echo
echo "# kubectl get nodes -o wide"
"$kubectl" get nodes -o wide
echo
echo "The cluster is still running:  $(bash "$root/e2e/cluster/control-plane.sh" env)"
echo "Stop it and remove its state:  e2e/quickstart.sh down"
