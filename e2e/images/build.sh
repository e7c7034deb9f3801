#!/usr/bin/env bash
# Builds the images the local node needs, as OCI archives in $MOAT_CACHE/images:
#   moat.local/pause:3.10      the pod sandbox image (a static pause process)
#   moat.local/busybox:1.35    the test image (Debian's static busybox with its applets)
#   moat.local/python:3.11     Debian 12's Python as installed here, with busybox for /bin/sh
#   moat.local/noshell:1       one static binary, /app (app.c): no shell, no libc
# No registry can be reached from these machines, so nothing is pulled.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
out=$MOAT_CACHE/images
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cc -static -Os -s -o "$work/pause" "$here/pause.c"
python3 "$here/oci_image.py" --name moat.local/pause:3.10 --out "$out/pause.tar" \
    --file "$work/pause:/pause" --entrypoint /pause

bb=/bin/busybox
[ -x "$bb" ] || { echo "images: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
links=()
for a in $("$bb" --list); do
    [ "$a" = busybox ] || links+=(--symlink "/bin/$a=/bin/busybox")
done
python3 "$here/oci_image.py" --name moat.local/busybox:1.35 --out "$out/busybox.tar" \
    --file "$bb:/bin/busybox" "${links[@]}" --dir /tmp --dir /proc --dir /sys --dir /dev \
    --dir /etc --cmd /bin/sh

# moat.local/python:3.11: Debian 12's own Python 3.11 as installed on this machine (no registry,
# no network): the files of the packages python3.11, python3.11-minimal, libpython3.11-minimal
# and libpython3.11-stdlib (dpkg -L), less /usr/share (docs, man pages), binfmt.d, the stdlib's
# test package and the _test*/xx* extension modules; the shared libraries that ldd finds for
# python3.11 and every lib-dynload module, with the loader and libgcc_s (which glibc loads for
# pthread_exit); /usr/bin/python3; busybox's applets for /bin/sh and the usual commands; a
# merged /usr (/bin, /lib, /lib64 -> usr/...) like Debian's; passwd and group with root and
# nobody. No CA certificates: ssl imports, but nothing here verifies a server.
pkgs=(python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib)
dpkg -L "${pkgs[@]}" | sort -u \
    | grep -Ev '^/\.?$|^/usr/share(/|$)|^/usr/lib/binfmt\.d(/|$)|^/usr/lib/python3\.11/test(/|$)|/lib-dynload/(_test|_ctypes_test|_xxtestfuzz|xxlimited)' \
    >"$work/python.list"
mapfile -t elves < <(grep -E '^/usr/bin/python3\.11$|\.so$' "$work/python.list")
for f in "${elves[@]}"; do ldd "$f"; done >"$work/ldd"
if grep -q 'not found' "$work/ldd"; then
    grep 'not found' "$work/ldd" >&2
    echo "images: python3.11's libraries are missing" >&2
    exit 1
fi
# A library under its canonical directory (/lib is /usr/lib here), and what its symlink names.
{ awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' "$work/ldd"
  cc -print-file-name=libgcc_s.so.1; } | sort -u | while read -r lib; do
    lib=$(realpath "$(dirname "$lib")")/$(basename "$lib")
    echo "$lib"
    [ ! -L "$lib" ] || realpath "$lib"
done >>"$work/python.list"
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
    >"$work/passwd"
printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$work/group"
links=()
for a in $("$bb" --list); do
    [ "$a" = busybox ] || links+=(--symlink "/usr/bin/$a=busybox")
done
python3 "$here/oci_image.py" --name moat.local/python:3.11 --out "$out/python.tar" --gzip \
    --list "$work/python.list" --file "$bb:/usr/bin/busybox" "${links[@]}" \
    --symlink /usr/bin/python3=python3.11 --symlink /bin=usr/bin --symlink /lib=usr/lib \
    --symlink /lib64=usr/lib64 --symlink /sbin=usr/bin \
    --file "$work/passwd:/etc/passwd:644" --file "$work/group:/etc/group:644" \
    --dir /tmp --dir /root:700 --dir /proc --dir /sys --dir /dev \
    --env PATH=/usr/local/bin:/usr/bin:/bin --env HOME=/root --env LANG=C.UTF-8 --cmd python3

# moat.local/noshell:1: nothing but a static /app and /tmp, for the helper's exec and file
# moves in an image without a shell or a libc.
cc -static -Os -s -o "$work/app" "$here/app.c"
python3 "$here/oci_image.py" --name moat.local/noshell:1 --out "$out/noshell.tar" \
    --file "$work/app:/app" --dir /tmp --entrypoint /app
