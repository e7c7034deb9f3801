#!/usr/bin/env bash
# The local control plane on 127.0.0.1: etcd, kube-apiserver (TLS, client certificates,
# RBAC, service-account signing), kube-controller-manager and kube-scheduler, built by
# e2e/tools/build.sh. Tests take the cluster from $KUBECONFIG, so they run against any
# cluster; this one is what the test command starts on a machine without Docker.
#
#   control-plane.sh up       start (cleaning up after a crash first), wait for /readyz
#   control-plane.sh down     stop every process and remove all state
#   control-plane.sh status   say what runs
#   control-plane.sh env      print "export KUBECONFIG=..."
#   control-plane.sh restart-apiserver   restart kube-apiserver alone (tests)
#
# Environment: MOAT_CACHE (binaries, default /var/cache/moat), MOAT_CLUSTER_DIR (state,
# default /var/tmp/moat-cluster), MOAT_APISERVER_PORT (6443), MOAT_ETCD_PORT (23790).
set -euo pipefail
# shellcheck source=../lib/procs.sh
. "$(dirname "$0")/../lib/procs.sh"

MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
dir=${MOAT_CLUSTER_DIR:-/var/tmp/moat-cluster}
api_port=${MOAT_APISERVER_PORT:-6443}
etcd_port=${MOAT_ETCD_PORT:-23790}
api_addr=${MOAT_APISERVER_ADDRESS:-127.0.0.1}
# The address pods reach the API server at, as on a real cluster: the `kubernetes` Service's
# endpoint (kube-proxy maps 10.96.0.1:443 to it). It lives on the node's pod bridge
# (e2e/node/node.sh creates it as the bridge's address) and is in the serving certificate.
# kube-apiserver binds one address, so with it set the API server listens on 0.0.0.0 and a
# chain of INPUT rules (MOAT-APISERVER) drops its port on every address but 127.0.0.1 and
# this one. Empty: loopback only, and pods cannot reach the API server.
advertise=${MOAT_APISERVER_ADVERTISE-10.88.0.1}
bin=$MOAT_CACHE/bin
pki=$dir/pki
# Virtual addresses only: kube-proxy maps them to real ones; nothing is sent to them.
service_cidr=${MOAT_SERVICE_CIDR:-10.96.0.0/16}
service_ip=10.96.0.1

say() { echo "control-plane: $*" >&2; }
die() { say "$*"; exit 1; }

# ---- certificates -----------------------------------------------------------------------

# cert <name> <CN> <O or ""> <serverAltNames or ""> : a key and a CA-signed certificate.
cert() {
    local name=$1 cn=$2 org=$3 san=$4 subj="/CN=$2"
    [ -n "$org" ] && subj="/O=$org/CN=$cn"
    openssl genrsa -out "$pki/$name.key" 2048 2>/dev/null
    openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [ -n "$san" ]; then
            echo "extendedKeyUsage=serverAuth,clientAuth"
            echo "subjectAltName=$san"
        else
            echo "extendedKeyUsage=clientAuth"
        fi
    } >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 30 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
    rm -f "$pki/$name.csr" "$pki/$name.ext"
}

make_pki() {
    mkdir -p "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" \
        -days 30 -subj "/CN=moat-local-ca" 2>/dev/null
    local san="DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    san+=",DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$service_ip"
    [ "$api_addr" != 127.0.0.1 ] && san+=",IP:$api_addr"
    [ -n "$advertise" ] && [ "$advertise" != "$api_addr" ] && san+=",IP:$advertise"
    cert apiserver kube-apiserver "" "$san"
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
    cert admin moat-admin system:masters ""
    cert controller-manager system:kube-controller-manager "" ""
    cert scheduler system:kube-scheduler "" ""
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    chmod 600 "$pki"/*.key
}

# kubeconfig <file> <cert name>: a kubeconfig for one client certificate, inlined.
kubeconfig() {
    local f=$1 c=$2
    procs_kubeconfig "$bin/kubectl" "$f" "https://127.0.0.1:$api_port" "$pki/ca.crt" "$c" \
        "$pki/$c.crt" "$pki/$c.key"
}

# ---- processes --------------------------------------------------------------------------

# start <name> <command...>: runs a component in its own session, logging to $dir/logs.
start() {
    local name=$1
    shift
    procs_start "$dir/logs/$name.log" "$dir/run/$name.pid" "$@"
}

# stop_one <component>: TERM, up to 5 s, then KILL.
stop_one() { procs_stop "$dir/run/$1.pid" 50; }

# Every component by its pid file (never by a pattern on command lines: that would also
# hit any process that merely names this directory, a test's client or a `tail` of a log).
stop_all() {
    local c f
    # The API server first: stopped together with etcd, it waits for etcd to answer
    # before it exits.
    for c in kube-scheduler kube-controller-manager kube-apiserver; do
        stop_one "$c"
    done
    for f in "$dir"/run/*.pid; do
        [ -e "$f" ] || continue
        procs_stop "$f" 100
    done
}

wait_ready() {
    local code
    for _ in $(seq 1 240); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$pki/ca.crt" \
            --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:$api_port/readyz" || true)
        [ "$code" = 200 ] && return 0
        for c in etcd kube-apiserver; do
            kill -0 "$(cat "$dir/run/$c.pid")" 2>/dev/null || {
                tail -20 "$dir/logs/$c.log" >&2
                die "$c exited"
            }
        done
        sleep 0.5
    done
    tail -20 "$dir/logs/kube-apiserver.log" >&2
    die "kube-apiserver not ready after 120 s"
}

# Only 127.0.0.1 and the advertised address may reach the API server's port.
guard_up() {
    guard_down
    iptables -N MOAT-APISERVER
    iptables -A MOAT-APISERVER -d 127.0.0.1 -j RETURN
    iptables -A MOAT-APISERVER -d "$advertise" -j RETURN
    iptables -A MOAT-APISERVER -j DROP
    iptables -I INPUT -p tcp --dport "$api_port" -j MOAT-APISERVER
}

guard_down() {
    while iptables -D INPUT -p tcp --dport "$api_port" -j MOAT-APISERVER 2>/dev/null; do :; done
    iptables -F MOAT-APISERVER 2>/dev/null || true
    iptables -X MOAT-APISERVER 2>/dev/null || true
}

start_apiserver() {
    local bind=$api_addr advertise_addr=$api_addr
    if [ -n "$advertise" ]; then
        bind=0.0.0.0 advertise_addr=$advertise
        guard_up
    fi
    # --kubelet-preferred-address-types=InternalIP: by default the API server dials kubelet
    # by hostname, which sends a DNS query off the machine; the node IP is local.
    start kube-apiserver "$bin/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$etcd_port" \
        --bind-address="$bind" --advertise-address="$advertise_addr" --secure-port="$api_port" \
        --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" \
        --authorization-mode=Node,RBAC \
        --enable-admission-plugins=NodeRestriction \
        --allow-privileged=true \
        --service-cluster-ip-range="$service_cidr" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$pki/sa.pub" \
        --service-account-signing-key-file="$pki/sa.key" \
        --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types=InternalIP \
        --profiling=false --v=1
}

up() {
    for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
        [ -x "$bin/$b" ] || die "$bin/$b is missing; run e2e/tools/build.sh first"
    done
    # An earlier run that crashed leaves processes and state behind: clear them first.
    if [ -d "$dir" ]; then
        say "cleaning up an earlier run in $dir"
        down
    fi
    mkdir -p "$dir"/{logs,run,etcd}
    make_pki
    kubeconfig "$dir/admin.kubeconfig" admin
    kubeconfig "$dir/controller-manager.kubeconfig" controller-manager
    kubeconfig "$dir/scheduler.kubeconfig" scheduler

    start etcd "$bin/etcd" --name=moat-local --data-dir="$dir/etcd" \
        --listen-client-urls="http://127.0.0.1:$etcd_port" \
        --advertise-client-urls="http://127.0.0.1:$etcd_port" \
        --listen-peer-urls="http://127.0.0.1:$((etcd_port + 10))" \
        --initial-advertise-peer-urls="http://127.0.0.1:$((etcd_port + 10))" \
        --initial-cluster="moat-local=http://127.0.0.1:$((etcd_port + 10))" \
        --unsafe-no-fsync --quota-backend-bytes=4294967296

    start_apiserver
    wait_ready

    start kube-controller-manager "$bin/kube-controller-manager" \
        --kubeconfig="$dir/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port=10257 \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
        --use-service-account-credentials --leader-elect=false \
        --service-cluster-ip-range="$service_cidr" --profiling=false --v=1
    start kube-scheduler "$bin/kube-scheduler" \
        --kubeconfig="$dir/scheduler.kubeconfig" \
        --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
        --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false --v=1

    # The default service account appears once the controller-manager runs; tests that
    # create pods need it, so wait here rather than in every test.
    for _ in $(seq 1 120); do
        KUBECONFIG=$dir/admin.kubeconfig "$bin/kubectl" get serviceaccount default \
            -n default >/dev/null 2>&1 && break
        sleep 0.5
    done
    for c in kube-controller-manager kube-scheduler; do
        kill -0 "$(cat "$dir/run/$c.pid")" 2>/dev/null || {
            tail -20 "$dir/logs/$c.log" >&2
            die "$c exited"
        }
    done
    say "ready: export KUBECONFIG=$dir/admin.kubeconfig"
}

down() {
    stop_all
    guard_down
    # kubelet (the node scripts) may leave mounts below $dir; unmount before removing.
    if [ -d "$dir" ]; then
        { grep -F " $dir/" /proc/self/mounts || true; } | awk '{print $2}' | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf "$dir"
    fi
}

# Restarts kube-apiserver alone (etcd and the state stay), for tests of what survives it.
restart_apiserver() {
    local pid
    pid=$(cat "$dir/run/kube-apiserver.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    start_apiserver
    wait_ready
    say "kube-apiserver restarted"
}

status() {
    local c
    [ -d "$dir/run" ] || { say "not running"; return 1; }
    for f in "$dir"/run/*.pid; do
        c=$(basename "$f" .pid)
        if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$c: running"; else echo "$c: stopped"; fi
    done
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
restart-apiserver) restart_apiserver ;;
env) echo "export KUBECONFIG=$dir/admin.kubeconfig" ;;
*) die "usage: $0 up|down|status|env|restart-apiserver" ;;
esac
