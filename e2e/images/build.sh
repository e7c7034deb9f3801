#!/usr/bin/env bash
# Builds the images the local node needs, as OCI archives in $MOAT_CACHE/images:
#   moat.local/pause:3.10      the pod sandbox image (a static pause process)
#   moat.local/busybox:1.35    the test image (Debian's static busybox with its applets)
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
