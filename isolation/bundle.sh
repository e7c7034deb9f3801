#!/usr/bin/env bash
# bundle.sh BINARY OUTDIR INSTALL_PREFIX
#
# Makes a dynamically linked program start on a host that has none of this machine's
# (Debian's) shared libraries: Amazon Linux, Container-Optimized OS, Bottlerocket. Run at
# image build time; the installer copies OUTDIR to INSTALL_PREFIX on the host unchanged.
#
#   OUTDIR/bin/<name>            the program, its interpreter set to
#                                INSTALL_PREFIX/lib/ld-linux-x86-64.so.2 and its RUNPATH
#                                to INSTALL_PREFIX/lib
#   OUTDIR/lib/<every library ldd names>, and the dynamic loader itself
#
# Each bundled library gets RUNPATH $ORIGIN: DT_RUNPATH covers only an object's own direct
# dependencies, so without it libgnutls would look for libnettle in the host's paths. The
# loader and libc are copied as they are (same glibc build, so they match each other).
# Several programs may share one OUTDIR (their libraries are the same files).
# A static program (Go's runsc) is copied alone. An ASan build names libasan and libubsan
# in ldd's answer, so they are bundled like any other library.
# Needs patchelf (Debian's package of that name).
set -euo pipefail

die() { echo "bundle.sh: $*" >&2; exit 1; }
[ $# -eq 3 ] || die "usage: bundle.sh BINARY OUTDIR INSTALL_PREFIX"
bin=$1 out=$2 prefix=$3
[[ -f $bin && -x $bin ]] || die "$bin: not an executable file"
case $prefix in /*) ;; *) die "$prefix: the install prefix must be an absolute path" ;; esac
command -v patchelf >/dev/null || die "patchelf is missing (apt-get install patchelf)"
name=$(basename "$bin")
mkdir -p "$out/bin" "$out/lib"

interp=$(patchelf --print-interpreter "$bin" 2>/dev/null || true)
if [ -z "$interp" ]; then
    # Static (no PT_INTERP): nothing to bundle.
    install -m 0755 "$bin" "$out/bin/$name"
    echo "bundle.sh: $name is static; copied alone"
    exit 0
fi

# ldd prints "libx.so.1 => /path (addr)", "/lib64/ld-linux-x86-64.so.2 (addr)" and
# "linux-vdso.so.1 (addr)"; a "not found" is an error: the bundle would be incomplete.
listing=$(ldd "$bin") || die "ldd $bin failed"
if grep -q 'not found' <<<"$listing"; then
    die "ldd: missing libraries: $(grep 'not found' <<<"$listing" | tr -s ' \t' ' ')"
fi
libs=$(awk '$2 == "=>" && $3 ~ /^\// {print $3}' <<<"$listing")
loader=$(readlink -f "$interp")
loader_name=$(basename "$interp")

copy_lib() { # the real file under the soname-like name ldd used
    local src=$1 dst=$out/lib/$2
    install -m 0755 "$(readlink -f "$src")" "$dst.tmp"
    mv -f "$dst.tmp" "$dst"
}

copy_lib "$loader" "$loader_name"
for l in $libs; do
    base=$(basename "$l")
    copy_lib "$l" "$base"
    case $base in
    libc.so.*) ;; # libc needs only the loader, which the interpreter already is
    *) # shellcheck disable=SC2016 # $ORIGIN is the loader's, not the shell's
        patchelf --set-rpath '$ORIGIN' "$out/lib/$base" ;;
    esac
done

install -m 0755 "$bin" "$out/bin/$name.tmp"
patchelf --set-interpreter "$prefix/lib/$loader_name" --set-rpath "$prefix/lib" "$out/bin/$name.tmp"
mv -f "$out/bin/$name.tmp" "$out/bin/$name"
echo "bundle.sh: $name with $(wc -w <<<"$libs") libraries and $loader_name in $out (for $prefix)"
