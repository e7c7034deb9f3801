#!/usr/bin/env bash
# The project's local cluster, end to end: the control plane (control-plane.sh), one node
# (node.sh: containerd 2.x, kubelet, kube-proxy and kube-router's NetworkPolicy firewall),
# Moat's images imported, the node image's installer run on the host in shim mode (what the
# DaemonSet's init container does on a real node: moat-cri in front of containerd), and Moat
# installed with the Helm chart (operator + node agent). Waits until the node is Ready and
# Moat's pods run.
#
#   cluster.sh up        everything above (an earlier cluster is cleaned up first)
#   cluster.sh down      stop everything, remove all state
#   cluster.sh env       print "export KUBECONFIG=..."
#   cluster.sh restart containerd|moat-cri|kubelet
#                        restart one host service through the installer's service manager
#                        (what systemctl restart does on a real node)
#   cluster.sh install   run the host installer again (it changes nothing the second time)
#
# What only this machine needs, never the product's defaults (README, limitations):
#   - kubelet and containerd are not system services here: the installer's process backend
#     (--service-manager process:<node>/run, the same pid files node.sh keeps) restarts them;
#   - every host path the installer writes lies under the node directory, so node.sh down
#     removes it: moat-cri's bundle is made for that prefix with isolation/bundle.sh from the
#     same release binary the node image holds (the image's own payload is bundled for
#     /opt/moat);
#   - the chart's installer is off (installer.enabled=false): the host install above is
#     what it would have done. The agent runs and talks to moat-cri's socket.
set -Eeuo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
cluster=${MOAT_CLUSTER_DIR:-/var/tmp/moat-cluster}
export MOAT_CLUSTER_DIR=$cluster
node=$cluster/node
bin=$MOAT_CACHE/bin
images=$MOAT_CACHE/images
install_bin=${MOAT_INSTALL:-$root/build-e2e/isolation/installer/moat-install}
release=$images/build-release
# without build-e2e: the release build images/build.sh makes (it builds moat-install too)
[ -n "${MOAT_INSTALL:-}" ] || [ -x "$install_bin" ] || install_bin=$release/isolation/installer/moat-install
m=$node/moat          # everything the installer puts on the "host"
wall_table=moat_e2e   # moat-cri's egress wall here: a table of its own, never a node's "moat"
ns=moat-system
kubectl=("$bin/kubectl" --kubeconfig "$cluster/admin.kubeconfig")
export PATH=$bin:$PATH

say() { echo "cluster: $*" >&2; }
die() { say "$*"; exit 1; }

install_args() {
    echo --mode shim --host-root / --bundle "$m/bundle" \
        --prefix "$m/opt" --bin-dir "$m/bin" --state-dir "$m/state" \
        --containerd-config "$node/containerd/config.toml" \
        --containerd-socket "$node/containerd/containerd.sock" \
        --runsc-config-dir "$m/etc/runsc" --runsc-root "$node/runsc/root" \
        --cri-config "$m/etc/cri.yaml" --cri-socket "$m/run/cri.sock" \
        --cri-metrics 127.0.0.1:9467 --egress-wall-table "$wall_table" \
        --kubelet-config "$node/kubelet-config.yaml" \
        --service-manager "process:$node/run"
}

# The services as node.sh started them, for the process backend to restart.
define_services() {
    printf '%s\n' "$bin/containerd" --config "$node/containerd/config.toml" >"$node/run/containerd.argv"
    printf '%s\n' "$bin/kubelet" --config="$node/kubelet-config.yaml" \
        --kubeconfig="$node/kubelet.kubeconfig" --root-dir="$node/kubelet" \
        --cert-dir="$node/pki" --hostname-override="${MOAT_NODE_NAME:-moat-node}" \
        --node-ip="${MOAT_NODE_IP:-10.88.0.1}" --v=1 >"$node/run/kubelet.argv"
}

# A real node's containerd has runc alone; node.sh also configures its own gVisor handlers
# (runsc, runsc-nonet: its spike test uses them). Moat's block defines those names, and the
# installer refuses a file that already does: drop node.sh's, Moat's replace them.
containerd_plain() {
    local cfg=$node/containerd/config.toml
    awk '/^ *\[/ { skip = ($0 ~ /\.containerd\.runtimes\.runsc(-nonet)?[].]/) } !skip' "$cfg" >"$cfg.new"
    mv "$cfg.new" "$cfg"
}

host_install() {
    # shellcheck disable=SC2046
    "$install_bin" install $(install_args)
}

images_up() {
    local tag
    tag=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/helm/moat/Chart.yaml")
    # Always: the release build is incremental (seconds when nothing changed), and images
    # kept from an earlier tree would test old code.
    say "building Moat's images (images/build.sh)"
    bash "$root/images/build.sh" >&2
    local i
    for i in moat-operator moat-node; do
        "$bin/ctr" --address "$node/containerd/containerd.sock" -n k8s.io images import \
            "$images/$i.tar" >/dev/null
    done
    say "imported moat.local/moat-operator:$tag and moat.local/moat-node:$tag"
}

bundle_up() {
    rm -rf "$m/bundle"
    mkdir -p "$m/bundle"
    local b
    for b in "$release/cri-shim/moat-cri" "$bin/runsc" "$bin/containerd-shim-runsc-v1"; do
        bash "$root/isolation/bundle.sh" "$b" "$m/bundle" "$m/opt" >/dev/null
    done
}

chart_up() {
    local values=$node/moat-values.yaml
    cat >"$values" <<YAML
image:
  registry: moat.local
  pullPolicy: Never
operator:
  replicas: 1
  podDisruptionBudget: {enabled: false}
  config:
    imagePullPolicy: IfNotPresent
installer:
  enabled: false
host:
  containerdConfig: $node/containerd/config.toml
  containerdSocket: $node/containerd/containerd.sock
  kubeletConfig: $node/kubelet-config.yaml
  prefix: $m/opt
  binDir: $m/bin
  stateDir: $m/state
  configDir: $m/etc
  criSocket: $m/run/cri.sock
nodePools:
  - name: local
    nodeSelector: {kubernetes.io/hostname: ${MOAT_NODE_NAME:-moat-node}}
    tolerations: []
    mode: shim
    isolation: auto
    gpu: none
YAML
    if ! "$bin/helm" --kubeconfig "$cluster/admin.kubeconfig" install moat "$root/helm/moat" \
        -n "$ns" --create-namespace -f "$values" --wait --timeout 180s >&2; then
        diagnose
        return 1
    fi
}

# What a failed start leaves to look at, before the cluster goes: the pods, their events,
# and the last lines of Moat's own logs (the operator's /readyz answer is in its log).
diagnose() {
    say "diagnosis: pods, events and Moat's logs"
    "${kubectl[@]}" get nodes -o wide >&2 || true
    "${kubectl[@]}" -n "$ns" get pods -o wide >&2 || true
    "${kubectl[@]}" -n "$ns" describe pods >&2 2>&1 | tail -n 60 >&2 || true
    "${kubectl[@]}" -n "$ns" logs deploy/moat-operator --tail=40 >&2 || true
    "${kubectl[@]}" -n "$ns" logs ds/moat-agent-local --all-containers --tail=40 >&2 || true
    "${kubectl[@]}" get --raw \
        "/api/v1/namespaces/$ns/pods/$("${kubectl[@]}" -n "$ns" get pods \
        -l app.kubernetes.io/name=moat-operator -o jsonpath='{.items[0].metadata.name}'):8080/proxy/readyz" \
        >&2 || true
}

wait_moat() {
    local i
    for i in $(seq 1 180); do
        if "${kubectl[@]}" -n "$ns" get pods --no-headers 2>/dev/null |
            awk 'BEGIN{n=0; bad=0} {n++; if ($3 != "Running") bad=1} END{exit !(n >= 2 && !bad)}'; then
            # the agent has labelled the node: Sandboxes can be scheduled
            if "${kubectl[@]}" get node "${MOAT_NODE_NAME:-moat-node}" \
                -o jsonpath='{.metadata.labels.moat\.dev/managed}' | grep -qx true; then
                return 0
            fi
        fi
        sleep 1
    done
    diagnose
    die "Moat's pods not Running (or the node not labelled) after 180 s"
}

up() {
    [ -x "$install_bin" ] || [ -n "${MOAT_INSTALL:-}" ] || bash "$root/images/build.sh" >&2
    [ -x "$install_bin" ] || die "$install_bin missing: build it (cmake --build build-e2e --target moat-install)"
    if [ -d "$cluster" ]; then say "cleaning up an earlier cluster"; down; fi
    # A failed up stops what it started: its processes inherit the caller's lock (flock)
    # and would hold it. MOAT_KEEP_ON_FAILURE=1 keeps them for a look.
    [ "${MOAT_KEEP_ON_FAILURE:-0}" = 1 ] || trap 'trap - ERR; say "up failed; stopping the cluster"; down >/dev/null 2>&1; exit 1' ERR
    bash "$root/e2e/cluster/control-plane.sh" up
    bash "$root/e2e/node/node.sh" up
    images_up
    [ -x "$release/cri-shim/moat-cri" ] || die "$release/cri-shim/moat-cri missing (images/build.sh)"
    bundle_up
    define_services
    containerd_plain
    say "installing Moat on the host (moat-install --mode shim)"
    host_install >&2
    "${kubectl[@]}" wait --for=condition=Ready node --all --timeout=120s >/dev/null
    say "installing the chart (helm/moat)"
    chart_up
    wait_moat
    "${kubectl[@]}" get nodes -o wide >&2
    "${kubectl[@]}" -n "$ns" get pods -o wide >&2
    trap - ERR
    say "up: $(env_line)"
}

down() {
    bash "$root/e2e/node/node.sh" down || true
    # moat-cri leaves its egress wall (nftables tables) in the kernel across its restarts;
    # `moat-install uninstall` would remove them, here the cluster goes as a whole. Only
    # once moat-cri is gone (node.sh down stopped it): a running one puts its wall back
    # within 5 s. A later test's pods at the same addresses would be walled by it.
    local f
    for f in inet netdev; do nft delete table "$f" "$wall_table" 2>/dev/null || true; done
    bash "$root/e2e/cluster/control-plane.sh" down
}

env_line() { echo "export KUBECONFIG=$cluster/admin.kubeconfig"; }

restart() {
    local name=${1:?service name}
    # shellcheck disable=SC2046
    "$install_bin" service restart "$name" $(install_args)
}

case ${1:-} in
up) up ;;
down) down ;;
env) env_line ;;
restart) restart "${2:-}" ;;
install) host_install ;;
*) die "usage: $0 up|down|env|restart NAME|install" ;;
esac
