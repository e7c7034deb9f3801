#!/usr/bin/env bash
# The local node's networking add-ons, as a real node has them: kube-proxy (the `kubernetes`
# Service and every other ClusterIP, iptables mode) and kube-router's network-policy
# firewall (NetworkPolicies enforced with iptables and ipset; its router and service proxy
# are off: Debian's bridge plugin wires the pods, kube-proxy serves the Services).
#
#   addons.sh up     start both on the node that e2e/node/node.sh brought up
#   addons.sh down   stop both and remove the rules they made
#
# Each runs with a client certificate of its own: kube-proxy as system:kube-proxy (the
# built-in system:node-proxier binding), kube-router as moat:kube-router with the read-only
# ClusterRole below. State lives under $MOAT_CLUSTER_DIR/node/addons, so node.sh down
# removes it. kube-network-policies (kind's enforcer) cannot run here: it needs nftables'
# queue statement, and this kernel is built without CONFIG_NFT_QUEUE.
set -euo pipefail
# shellcheck source=../lib/procs.sh
. "$(dirname "$0")/../lib/procs.sh"

MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
cluster=${MOAT_CLUSTER_DIR:-/var/tmp/moat-cluster}
dir=$cluster/node/addons
bin=$MOAT_CACHE/bin
node_name=${MOAT_NODE_NAME:-moat-node}
pod_cidr=${MOAT_POD_CIDR:-10.88.0.0/16}
node_ip=${MOAT_NODE_IP:-10.88.0.1}
kubectl=("$bin/kubectl" --kubeconfig "$cluster/admin.kubeconfig")

say() { echo "addons: $*" >&2; }
die() { say "$*"; exit 1; }

start() { procs_start "$dir/$1.log" "$dir/$1.pid" "${@:2}"; }

alive() { procs_alive "$dir/$1.pid"; }

stop() { procs_stop "$dir/$1.pid" 50; }

# client_kubeconfig <name> <CN> : a client certificate signed by the cluster's CA.
client_kubeconfig() {
    local name=$1 cn=$2 pki=$cluster/pki kc=$dir/$1.kubeconfig port
    openssl genrsa -out "$dir/$name.key" 2048 2>/dev/null
    openssl req -new -key "$dir/$name.key" -subj "/CN=$cn" -out "$dir/$name.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' \
        >"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 30 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
    port=$(sed -n 's|.*server: https://127.0.0.1:\([0-9]*\).*|\1|p' "$cluster/admin.kubeconfig")
    procs_kubeconfig "$bin/kubectl" "$kc" "https://127.0.0.1:$port" "$pki/ca.crt" "$name" \
        "$dir/$name.crt" "$dir/$name.key"
    chmod 600 "$dir/$name.key"
}

kube_router_rbac() {
    "${kubectl[@]}" apply -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "moat:kube-router", labels: {app.kubernetes.io/part-of: moat-e2e}}
rules:
- apiGroups: [""]
  resources: [namespaces, pods, nodes, services, endpoints]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "moat:kube-router", labels: {app.kubernetes.io/part-of: moat-e2e}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "moat:kube-router"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "moat:kube-router"}
YAML
}

up() {
    [ -f "$cluster/admin.kubeconfig" ] || die "no control plane in $cluster"
    [ -d "$cluster/node" ] || die "no node in $cluster/node; run node.sh up"
    for b in kube-proxy kube-router; do
        [ -x "$bin/$b" ] || die "$bin/$b is missing; run e2e/tools/build.sh"
    done
    command -v ipset >/dev/null || die "ipset is missing (apt-get install ipset)"
    down
    mkdir -p "$dir"
    client_kubeconfig kube-proxy system:kube-proxy
    client_kubeconfig kube-router moat:kube-router
    kube_router_rbac
    # conntrack.maxPerCore 0: leave the host's conntrack table size alone.
    cat >"$dir/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $pod_cidr
hostnameOverride: $node_name
bindAddress: $node_ip
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0}
nodePortAddresses: ["$node_ip/32"]
YAML
    start kube-proxy "$bin/kube-proxy" --config="$dir/kube-proxy.yaml" --v=1
    start kube-router "$bin/kube-router" --run-firewall=true --run-router=false \
        --run-service-proxy=false --enable-cni=false --kubeconfig="$dir/kube-router.kubeconfig" \
        --hostname-override="$node_name" --health-port=0 --metrics-port=0 -v 1
    for _ in $(seq 1 100); do
        iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q 'default/kubernetes' &&
            iptables -S KUBE-ROUTER-FORWARD >/dev/null 2>&1 && break
        for c in kube-proxy kube-router; do
            alive "$c" || { tail -20 "$dir/$c.log" >&2; die "$c exited"; }
        done
        sleep 0.2
    done
    iptables -t nat -S KUBE-SERVICES | grep -q 'default/kubernetes' ||
        die "kube-proxy did not program the kubernetes Service"
    iptables -S KUBE-ROUTER-FORWARD >/dev/null 2>&1 || die "kube-router did not start its firewall"
    say "kube-proxy and kube-router running"
}

down() {
    # Only the add-ons this cluster directory started: another node's (a test's own, under
    # another MOAT_CLUSTER_DIR) may be running, and its rules are not ours to remove.
    [ -d "$dir" ] || return 0
    stop kube-router
    stop kube-proxy
    # Both leave their rules behind when they stop. kube-proxy removes its own on request;
    # kube-router 2.1's --cleanup-config says it cleaned up, leaves its chains in place, and
    # then crashes in its IPVS cleanup, so its rules and sets are removed here.
    if [ -x "$bin/kube-proxy" ] && iptables -t nat -S 2>/dev/null | grep -q KUBE-; then
        "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
    fi
    kube_router_cleanup
    rm -rf "$dir"
}

kube_router_cleanup() {
    local rule chains c
    iptables-save -t filter 2>/dev/null | grep -E '^-A (INPUT|FORWARD|OUTPUT) .*kube-router' |
        sed 's/^-A /-D /' | while read -r rule; do eval "iptables $rule" || true; done || true
    chains=$(iptables-save -t filter 2>/dev/null |
        sed -n 's/^:\(KUBE-ROUTER-[^ ]*\|KUBE-NWPLCY-[^ ]*\|KUBE-POD-FW-[^ ]*\) .*/\1/p' || true)
    for c in $chains; do iptables -F "$c" 2>/dev/null || true; done
    for c in $chains; do iptables -X "$c" 2>/dev/null || true; done
    ipset list -n 2>/dev/null | grep -E '^KUBE-(SRC|DST|NWPLCY|POD)' | while read -r c; do
        ipset destroy "$c" 2>/dev/null || true
    done || true
}

case ${1:-} in
up) up ;;
down) down ;;
*) die "usage: $0 up|down" ;;
esac
