#!/usr/bin/env bash
# Builds the real components the tests run against from their Go modules, at the versions
# pinned by the go.mod/go.sum beside this script, into a cache the script owns:
#
#   $MOAT_CACHE/bin/      the binaries
#   $MOAT_CACHE/go/       Go's module and build caches
#   $MOAT_CACHE/stamps/   one stamp per component: the hash of what built it
#
# A component is rebuilt only when its go.mod, go.sum, its recipe below or the Go version
# changes. Usage: build.sh [component...]   (default: all; see COMPONENTS below)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
export MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
export GOMODCACHE=$MOAT_CACHE/go/mod GOCACHE=$MOAT_CACHE/go/build
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local GOPROXY=${GOPROXY:-https://proxy.golang.org}
bin=$MOAT_CACHE/bin stamps=$MOAT_CACHE/stamps
mkdir -p "$bin" "$stamps"

COMPONENTS=(kubernetes containerd etcd helm gvisor kube-router cri-tools)
K8S_VERSION=v1.35.4
CONTAINERD_VERSION=v2.4.2
HELM_VERSION=v3.22.0

# binaries <component>: the files the component puts in $bin.
binaries() {
    case $1 in
    kubernetes) echo kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl ;;
    containerd) echo containerd containerd-shim-runc-v2 ctr ;;
    etcd) echo etcd ;;
    helm) echo helm ;;
    gvisor) echo runsc containerd-shim-runsc-v1 ;;
    kube-router) echo kube-router ;;
    cri-tools) echo critest ;;
    esac
}

build_kubernetes() {
    local v=k8s.io/component-base/version ld
    # Without these the binaries report v0.0.0 and kubectl warns about version skew.
    ld="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=35"
    ld+=" -X $v.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
    for t in $(binaries kubernetes); do
        CGO_ENABLED=0 go build -trimpath -ldflags="$ld" -o "$bin/$t" "k8s.io/kubernetes/cmd/$t"
    done
}

build_containerd() {
    local ld="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
    local m=github.com/containerd/containerd/v2/cmd
    # no_btrfs: Debian's btrfs headers are not needed for the overlayfs snapshotter used here.
    go build -trimpath -tags no_btrfs -ldflags="$ld" -o "$bin/containerd" $m/containerd
    CGO_ENABLED=0 go build -trimpath -ldflags="$ld" -o "$bin/containerd-shim-runc-v2" $m/containerd-shim-runc-v2
    CGO_ENABLED=0 go build -trimpath -ldflags="$ld" -o "$bin/ctr" $m/ctr
}

build_etcd() {
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$bin/etcd" .
}

build_helm() {
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        -o "$bin/helm" helm.sh/helm/v3/cmd/helm
}

build_gvisor() {
    # gVisor's Go module is its `go` branch, served as pseudo-versions; gVisor itself
    # builds runsc without cgo.
    local v
    v=$(go list -m -f '{{.Version}}' gvisor.dev/gvisor)
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X gvisor.dev/gvisor/runsc/version.version=$v" \
        -o "$bin/runsc" gvisor.dev/gvisor/runsc

    # The shim lowers its own oom_score_adj to -999 and fails on EACCES when it runs as root.
    # This machine's kernel has no CAP_SYS_RESOURCE in the bounding set, so any lowering is
    # refused (ENVIRONMENT.md) and every gVisor pod would fail with "failed to set OOM Score
    # on shim: permission denied". For this machine only, the shim is built from a copy of
    # the pinned module with that one call tolerating EACCES, as upstream already does for
    # unprivileged shims. (Go refuses -overlay on files in the module cache, hence the copy:
    # hard links, and one real file for the changed source.) Real nodes run gVisor's shim
    # unmodified; see the README's limitations.
    local src work want file
    src=$(go list -m -f '{{.Dir}}' gvisor.dev/gvisor)
    work=$MOAT_CACHE/patched/gvisor
    rm -rf "$work" && mkdir -p "$work"
    cp -al "$src" "$work/src"
    file=pkg/shim/v1/manager.go
    want='if err := sys.SetOOMScore(cmd.Process.Pid, oomScoreMax); err != nil {'
    grep -qF "$want" "$src/$file" || { echo "build.sh: gVisor's shim changed; revisit the OOM-score patch" >&2; return 1; }
    rm -f "$work/src/$file"
    sed "s|$want|if err := sys.SetOOMScore(cmd.Process.Pid, oomScoreMax); err != nil \&\& !os.IsPermission(err) {|" \
        "$src/$file" >"$work/src/$file"
    cp go.mod go.sum "$work/"
    (cd "$work" && go mod edit -replace "gvisor.dev/gvisor=$work/src" &&
        CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$bin/containerd-shim-runsc-v1" \
            gvisor.dev/gvisor/shim)
}

# kube-router enforces NetworkPolicies in the local cluster (its firewall alone: iptables and
# ipset, which this kernel has; kube-network-policies needs nftables' queue statement,
# CONFIG_NFT_QUEUE, which it lacks). The Go module proxy serves v2.1.0 only. Test use only.
build_kube-router() {
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$bin/kube-router" \
        github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
}

# critest, cri-tools' CRI conformance suite, as its Makefile builds it: a Go test binary
# (tests/integration/shim/critest_pair.sh runs it straight to containerd and through moat-cri).
build_cri-tools() {
    go test -c -trimpath -ldflags="-s -w" -o "$bin/critest" sigs.k8s.io/cri-tools/cmd/critest
}

stamp_of() {
    # The pins, the component's own recipe (and the versions it names), and the toolchain.
    { cat "$here/$1/go.mod" "$here/$1/go.sum"; declare -f "build_$1"
      echo "$K8S_VERSION $CONTAINERD_VERSION $HELM_VERSION"; go version; } | sha256sum | cut -d' ' -f1
}

up_to_date() {
    local c=$1 t
    [ -f "$stamps/$c" ] && [ "$(cat "$stamps/$c")" = "$(stamp_of "$c")" ] || return 1
    for t in $(binaries "$c"); do [ -x "$bin/$t" ] || return 1; done
}

[ $# -gt 0 ] || set -- "${COMPONENTS[@]}"
for c in "$@"; do
    declare -F "build_$c" >/dev/null || { echo "build.sh: unknown component '$c'" >&2; exit 2; }
    if up_to_date "$c"; then
        echo "build.sh: $c is up to date in $bin"
        continue
    fi
    start=$(date +%s)
    echo "build.sh: building $c ..."
    (cd "$here/$c" && "build_$c")
    stamp_of "$c" >"$stamps/$c"
    echo "build.sh: built $c in $(($(date +%s) - start)) s"
done
