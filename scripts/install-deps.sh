#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the local cluster need, so a
# fresh machine needs nothing by hand. Safe to run again: apt skips what is installed.
set -euo pipefail

packages=(
    # build
    build-essential cmake ninja-build pkg-config clang clang-format
    # static checks: shellcheck over the scripts, scan-build (clang's analyzer) over the C
    shellcheck clang-tools-14
    # libraries (found with pkg-config)
    libyaml-dev libcurl4-openssl-dev libjansson-dev libprotobuf-c-dev protobuf-c-compiler
    libgrpc-dev libvirt-dev libcmocka-dev libmicrohttpd-dev libnftables-dev libssl-dev
    # kubectl-moat: pods/exec over WebSocket (libcurl 7.88 has none)
    libwebsockets-dev
    # tests: the CRI client, tools, sanitizer runtime, valgrind
    python3 python3-yaml python3-grpcio python3-grpc-tools protobuf-compiler jq curl openssl
    valgrind libclang-rt-14-dev
    # the node installer's bundles (isolation/bundle.sh): interpreter and RUNPATH
    patchelf file
    # the node: runc, CNI plugins, networking tools, the test image's busybox
    runc containernetworking-plugins iproute2 iptables ipset nftables util-linux busybox-static
    # libvirt as the host probe's second witness
    libvirt-daemon-system libvirt-clients
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# libvirt-daemon-system's recommends pull in a full QEMU/desktop stack; the probe only
# needs the daemon and its qemu driver's answer, which works with qemu-system-x86 alone.
apt-get install -y -qq --no-install-recommends "${missing[@]}" qemu-system-x86 >/dev/null
echo "install-deps: done"
