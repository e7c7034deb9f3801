#!/usr/bin/env bash
# One local node on this machine, registered with the control plane of
# e2e/cluster/control-plane.sh: containerd 2.x (runc and gVisor handlers), CNI from
# Debian's plugins on a bridge the script creates, the locally built images, and kubelet.
#
#   node.sh up      start containerd and kubelet, wait until the Node is Ready, then the
#                   add-ons (kube-proxy, kube-router's NetworkPolicy firewall: addons.sh);
#                   MOAT_NODE_ADDONS=0 leaves them out
#   node.sh restart-kubelet   restart kubelet alone, on the configuration it has now (what
#                   the node installer does through systemd on a real node)
#   node.sh down    stop them, remove pods, mounts, the bridge and all node state
#   node.sh containerd   start containerd alone (CRI tests; no control plane needed);
#                        `down` stops it
#
# Everything lives under $MOAT_CLUSTER_DIR/node, so control-plane.sh down also finds and
# stops it. Settings that only this machine needs (not a real node's defaults):
#   - restrict_oom_score_adj: PID 1 is not ours here and lowering oom_score_adj is refused;
#   - failCgroupV1: false: this machine is cgroup v1 (kubelet 1.35 refuses v1 otherwise);
#   - a FORWARD drop for the pod bridge: pod traffic never leaves the machine.
#
# With MOAT_NODE_CRI=/path/to/moat-cri, `up` also starts moat-cri in front of containerd
# (listen $dir/moat-cri/cri.sock, metrics on 127.0.0.1:$MOAT_NODE_CRI_METRICS_PORT, default
# 9467) and points kubelet at it. Its probe assumes no hypervisor: this node configures no
# Kata handler (and Kata cannot run here), whatever the probe finds. `down` stops it too.
set -euo pipefail
# shellcheck source=../lib/procs.sh
. "$(dirname "$0")/../lib/procs.sh"

MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
cluster=${MOAT_CLUSTER_DIR:-/var/tmp/moat-cluster}
dir=$cluster/node
bin=$MOAT_CACHE/bin
node_name=${MOAT_NODE_NAME:-moat-node}
bridge=${MOAT_BRIDGE:-moat-br0}
pod_cidr=${MOAT_POD_CIDR:-10.88.0.0/16}
node_ip=${MOAT_NODE_IP:-10.88.0.1}
sock=$dir/containerd/containerd.sock
ctr=("$bin/ctr" --address "$sock" --namespace k8s.io)
moat_cri=${MOAT_NODE_CRI:-}
addons=${MOAT_NODE_ADDONS:-1}
here=$(cd "$(dirname "$0")" && pwd)
cri_sock=$dir/moat-cri/cri.sock
wall_table=moat_itest_node # moat-cri's egress wall here: a table of its own, never the node's "moat"
export PATH=$bin:$PATH   # containerd finds the shims (runc v2, runsc v1) on PATH

say() { echo "node: $*" >&2; }
die() { say "$*"; exit 1; }

start() { procs_start "$dir/logs/$1.log" "$dir/run/$1.pid" "${@:2}"; }

alive() { procs_alive "$dir/run/$1.pid"; }

network_up() {
    ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
    ip addr replace "$node_ip/${pod_cidr#*/}" dev "$bridge"
    ip link set "$bridge" up
    iptables -C FORWARD -i "$bridge" ! -o "$bridge" -j DROP 2>/dev/null ||
        iptables -I FORWARD -i "$bridge" ! -o "$bridge" -j DROP
    mkdir -p "$dir/cni/net.d" "$dir/cni/ipam"
    cat >"$dir/cni/net.d/10-moat.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "moat",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{"subnet": "$pod_cidr", "gateway": "$node_ip"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

network_down() {
    while iptables -D FORWARD -i "$bridge" ! -o "$bridge" -j DROP 2>/dev/null; do :; done
    ip link del "$bridge" 2>/dev/null || true
}

containerd_config() {
    mkdir -p "$dir/containerd" "$dir/runsc"
    # gVisor's shim reads its options from the file each runtime's ConfigPath names.
    local platform=systrap
    # runsc_toml <file> [extra runsc_config line]: one handler's options.
    runsc_toml() {
        cat >"$1" <<TOML
binary_name = "$bin/runsc"
root = "$dir/runsc/root"
log_path = "$dir/runsc/logs/"  # a directory: this shim does not replace %ID% in a file name
[runsc_config]
  platform = "$platform"
  ${2:-}
  debug-log = "$dir/runsc/logs/%ID%/"
TOML
    }
    runsc_toml "$dir/runsc/runsc.toml"
    runsc_toml "$dir/runsc/runsc-nonet.toml" 'network = "none"'
    cat >"$dir/containerd/config.toml" <<TOML
version = 3
root = "$dir/containerd/root"
state = "$dir/containerd/state"

[grpc]
  address = "$sock"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  restrict_oom_score_adj = true
  # Pod network namespaces under the state dir, not /var/run/netns: down removes them all.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc]
      runtime_type = "io.containerd.runsc.v1"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "$dir/runsc/runsc.toml"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc-nonet]
      runtime_type = "io.containerd.runsc.v1"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc-nonet.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "$dir/runsc/runsc-nonet.toml"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$dir/cni/net.d"

[plugins."io.containerd.cri.v1.images"]
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "moat.local/pause:3.10"
  # Registry hosts: none configured, and nothing here pulls from elsewhere; a test that
  # serves a registry on loopback says so in a hosts.toml below (critest_pair.sh).
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$dir/containerd/certs.d"
TOML
}

kubelet_config() {
    local pki=$cluster/pki runtime_sock=$sock
    [ -n "$moat_cri" ] && runtime_sock=$cri_sock
    mkdir -p "$dir/kubelet" "$dir/pki"
    openssl genrsa -out "$dir/pki/kubelet.key" 2048 2>/dev/null
    openssl req -new -key "$dir/pki/kubelet.key" -subj "/O=system:nodes/CN=system:node:$node_name" \
        -out "$dir/pki/kubelet.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' \
        >"$dir/pki/kubelet.ext"
    openssl x509 -req -in "$dir/pki/kubelet.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 30 -extfile "$dir/pki/kubelet.ext" -out "$dir/pki/kubelet.crt" 2>/dev/null
    local kc=$dir/kubelet.kubeconfig port
    port=$(sed -n 's|.*server: https://127.0.0.1:\([0-9]*\).*|\1|p' "$cluster/admin.kubeconfig")
    KUBECONFIG=$kc "$bin/kubectl" config set-cluster local --server="https://127.0.0.1:$port" \
        --certificate-authority="$pki/ca.crt" --embed-certs >/dev/null
    KUBECONFIG=$kc "$bin/kubectl" config set-credentials kubelet \
        --client-certificate="$dir/pki/kubelet.crt" --client-key="$dir/pki/kubelet.key" --embed-certs >/dev/null
    KUBECONFIG=$kc "$bin/kubectl" config set-context local --cluster=local --user=kubelet >/dev/null
    KUBECONFIG=$kc "$bin/kubectl" config use-context local >/dev/null
    : >"$dir/resolv.conf" # pods get no upstream DNS: nothing may leave the machine
    cat >"$dir/kubelet-config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$runtime_sock
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: $dir/resolv.conf
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageMinimumGCAge: 876000h
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
evictionPressureTransitionPeriod: 5s
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
volumeStatsAggPeriod: 0s
YAML
}

wait_node_ready() {
    for _ in $(seq 1 240); do
        if KUBECONFIG=$cluster/admin.kubeconfig "$bin/kubectl" get node "$node_name" \
            -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; then
            return 0
        fi
        alive kubelet || { tail -30 "$dir/logs/kubelet.log" >&2; die "kubelet exited"; }
        sleep 0.5
    done
    tail -30 "$dir/logs/kubelet.log" >&2
    die "node $node_name not Ready after 120 s"
}

containerd_up() {
    for b in containerd containerd-shim-runc-v2 ctr runsc containerd-shim-runsc-v1; do
        [ -x "$bin/$b" ] || die "$bin/$b is missing; run e2e/tools/build.sh"
    done
    for img in pause busybox python noshell; do
        [ -f "$MOAT_CACHE/images/$img.tar" ] || die "image $img missing; run e2e/images/build.sh"
    done
    [ -d "$dir" ] && { say "cleaning up an earlier node in $dir"; down; }
    mkdir -p "$dir"/{logs,run}
    network_up
    containerd_config
    start containerd "$bin/containerd" --config "$dir/containerd/config.toml"
    for _ in $(seq 1 100); do
        [ -S "$sock" ] && "${ctr[@]}" version >/dev/null 2>&1 && break
        alive containerd || { tail -20 "$dir/logs/containerd.log" >&2; die "containerd exited"; }
        sleep 0.1
    done
    for img in pause busybox python noshell; do
        "${ctr[@]}" images import "$MOAT_CACHE/images/$img.tar" >/dev/null 2>&1
    done
    say "containerd ready on $sock"
}

moat_cri_up() {
    [ -x "$moat_cri" ] || die "MOAT_NODE_CRI=$moat_cri is not an executable"
    mkdir -p "$dir/moat-cri"
    cat >"$dir/moat-cri/config.yaml" <<YAML
listen: $cri_sock
upstream: $sock
metrics: 127.0.0.1:${MOAT_NODE_CRI_METRICS_PORT:-9467}
probe: {assume: none}
egressWall: {table: $wall_table}
YAML
    start moat-cri "$moat_cri" --config="$dir/moat-cri/config.yaml"
    for _ in $(seq 1 100); do
        [ -S "$cri_sock" ] && break
        alive moat-cri || { tail -20 "$dir/logs/moat-cri.log" >&2; die "moat-cri exited"; }
        sleep 0.1
    done
    [ -S "$cri_sock" ] || die "moat-cri did not listen on $cri_sock"
    say "moat-cri ready on $cri_sock"
}

kubelet_start() {
    start kubelet "$bin/kubelet" --config="$dir/kubelet-config.yaml" \
        --kubeconfig="$dir/kubelet.kubeconfig" --root-dir="$dir/kubelet" \
        --cert-dir="$dir/pki" --hostname-override="$node_name" --node-ip="$node_ip" --v=1
    wait_node_ready
}

restart_kubelet() {
    [ -f "$dir/kubelet-config.yaml" ] || die "no node in $dir"
    stop kubelet
    kubelet_start
    say "kubelet restarted; node $node_name Ready"
}

up() {
    [ -f "$cluster/admin.kubeconfig" ] || die "no control plane in $cluster; run control-plane.sh up"
    [ -x "$bin/kubelet" ] || die "$bin/kubelet is missing; run e2e/tools/build.sh"
    containerd_up
    [ -n "$moat_cri" ] && moat_cri_up
    kubelet_config
    kubelet_start
    say "node $node_name Ready"
    [ "$addons" = 0 ] || bash "$here/addons.sh" up
}

stop() { procs_stop "$dir/run/$1.pid" 100; }

down() {
    bash "$here/addons.sh" down
    stop kubelet
    stop moat-cri
    # Its egress wall stays in the kernel across restarts of moat-cri: the node takes it
    # down, whoever calls `down` (with MOAT_NODE_CRI or not), or a later node's pods that
    # get the same addresses would be walled by a table nobody keeps.
    if [ -f "$dir/moat-cri/config.yaml" ]; then
        local f
        for f in inet netdev; do nft delete table "$f" "$wall_table" 2>/dev/null || true; done
    fi
    # Stop the pods while containerd still runs, so shims and sandboxes end cleanly.
    if alive containerd && [ -S "$sock" ]; then
        local t
        for t in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
            "${ctr[@]}" tasks kill -s KILL "$t" >/dev/null 2>&1 || true
        done
    fi
    stop containerd
    # Shims and gVisor sandboxes outlive containerd by design; they carry $dir on their
    # command line or live in its cgroups.
    local p
    for p in /proc/[0-9]*; do
        tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$dir/" && kill -KILL "${p#/proc/}" 2>/dev/null
    done
    sleep 0.3
    { "$bin/runsc" --root "$dir/runsc/root" list -q 2>/dev/null || true; } | while read -r id; do
        "$bin/runsc" --root "$dir/runsc/root" delete -force "$id" >/dev/null 2>&1 || true
    done
    { grep -F " $dir/" /proc/self/mounts || true; } | awk '{print $2}' | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    # kubelet's cgroups (cgroupfs driver): every controller's kubepods tree, deepest first.
    local c
    for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
        if [ -d "$c" ]; then find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
    done
    network_down
    rm -rf "$dir"
}

case ${1:-} in
up) up ;;
containerd) containerd_up ;;
restart-kubelet) restart_kubelet ;;
down) down ;;
*) die "usage: $0 up|down|containerd|restart-kubelet" ;;
esac
