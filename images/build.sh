#!/usr/bin/env bash
# Builds Moat's two images without a container daemon, as OCI archives containerd imports
# (`ctr -n k8s.io images import`), the same images images/Containerfile builds:
#
#   <registry>/moat-operator:<tag>   moat-operator, user 65532
#   <registry>/moat-node:<tag>       moat-agent, moat-install, moat-probe, nsenter, pause,
#                                    and the installer's payload: moat-cri (for the host,
#                                    prefix /opt/moat), runsc, containerd-shim-runsc-v1
#
# Every dynamically linked program goes through isolation/bundle.sh: it gets every library
# ldd names and the loader, its interpreter and RUNPATH pointing at them, so the images hold
# no distribution and the installer's payload starts on hosts without Debian's libraries.
#
#   images/build.sh [--out DIR] [--build-dir DIR] [--rootfs-only] [--registry R] [--tag T]
#
#   --out DIR        archives (moat-operator.tar, moat-node.tar) and rootfs/ (default
#                    $MOAT_CACHE/images)
#   --build-dir DIR  a release build of this tree, configured and built here if needed
#                    (default $MOAT_CACHE/images/build-release); never the sanitizer build
#   --gvisor-dir DIR where runsc and containerd-shim-runsc-v1 are (default $MOAT_CACHE/bin)
#   --rootfs-only    stop after the root filesystems (images/Containerfile uses this)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
out=$MOAT_CACHE/images
build=""
gvisor=$MOAT_CACHE/bin
registry=moat.local
tag=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/helm/moat/Chart.yaml")
rootfs_only=false
while [ $# -gt 0 ]; do
    case $1 in
    --out) out=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --gvisor-dir) gvisor=$2; shift 2 ;;
    --registry) registry=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --rootfs-only) rootfs_only=true; shift ;;
    *) echo "images/build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
build=${build:-$out/build-release}
say() { echo "images: $*" >&2; }
die() { say "$*"; exit 1; }

# 1. Release binaries (no sanitizers: the images must not carry libasan).
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOAT_SANITIZE=OFF >/dev/null
fi
grep -q '^MOAT_SANITIZE:BOOL=OFF' "$build/CMakeCache.txt" ||
    die "$build is a sanitizer build; give --build-dir a release build"
nice cmake --build "$build" --target moat-operator moat-agent moat-install moat-probe moat-cri moat-init >&2
for b in runsc containerd-shim-runsc-v1; do
    [ -x "$gvisor/$b" ] || die "$gvisor/$b missing (e2e/tools/build.sh builds it)"
done

rootfs=$out/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs/operator" "$rootfs/node"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Minimal /etc for both: a non-root user 65532 (the operator's), and root (the node's).
base_etc() {
    local r=$1
    mkdir -p "$r/etc" "$r/tmp"
    chmod 1777 "$r/tmp"
    printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$r/etc/group"
    printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
}

# 2. The operator: /opt/moat/bin/moat-operator and its libraries in /opt/moat/lib.
base_etc "$rootfs/operator"
bash "$root/isolation/bundle.sh" "$build/operator/moat-operator" "$rootfs/operator/opt/moat" /opt/moat >&2

# 3. The node image.
#    /opt/moat-node/{bin,lib}: what runs in the container (agent, installer, probe,
#    nsenter for the installer's systemctl in the host's mount namespace, pause).
#    /opt/moat-image/{bin,lib}: what the installer copies to the host: moat-cri bundled for
#    the host prefix /opt/moat, and gVisor's static runsc and shim.
#    /moat-init/moat-init: Sessions' helper (static), which each Session's Pod mounts from
#    this image (an image volume, subPath moat-init) at /.moat.
n=$rootfs/node
base_etc "$n"
for b in isolation/agent/moat-agent isolation/installer/moat-install isolation/probe/moat-probe; do
    bash "$root/isolation/bundle.sh" "$build/$b" "$n/opt/moat-node" /opt/moat-node >&2
done
bash "$root/isolation/bundle.sh" "$(command -v nsenter)" "$n/opt/moat-node" /opt/moat-node >&2
cc -static -Os -s -o "$work/pause" "$root/e2e/images/pause.c"
install -m 0755 "$work/pause" "$n/opt/moat-node/bin/pause"
install -D -m 0755 -s "$build/init/moat-init" "$n/moat-init/moat-init"
bash "$root/isolation/bundle.sh" "$build/cri-shim/moat-cri" "$n/opt/moat-image" /opt/moat >&2
for b in runsc containerd-shim-runsc-v1; do
    bash "$root/isolation/bundle.sh" "$gvisor/$b" "$n/opt/moat-image" /opt/moat >&2
done

if $rootfs_only; then
    say "root filesystems in $rootfs"
    exit 0
fi

# 4. The archives.
labels=(--label "org.opencontainers.image.source=https://github.com/moat-dev/moat"
    --label "org.opencontainers.image.version=$tag" --label "org.opencontainers.image.licenses=Apache-2.0")
python3 "$here/oci.py" --name "$registry/moat-operator:$tag" --rootfs "$rootfs/operator" \
    --out "$out/moat-operator.tar" --user 65532:65532 --entrypoint /opt/moat/bin/moat-operator \
    --env PATH=/opt/moat/bin "${labels[@]}"
python3 "$here/oci.py" --name "$registry/moat-node:$tag" --rootfs "$rootfs/node" \
    --out "$out/moat-node.tar" --entrypoint /opt/moat-node/bin/moat-agent \
    --env PATH=/opt/moat-node/bin "${labels[@]}"
