#!/usr/bin/env python3
"""Builds a single-layer OCI image archive without a container daemon or a registry.

    oci_image.py --name moat.local/pause:3.10 --out pause.tar \
        --file /path/on/host:/pause --entrypoint /pause

--list FILE copies host paths (one a line) to the same paths in the image, symlinks as
symlinks and modes kept; --gzip compresses the layer. A later entry for a path replaces an
earlier one.

The archive is an OCI image layout that `ctr -n k8s.io images import` accepts; the
`io.containerd.image.name` annotation gives the image its full name. The output is
byte-for-byte reproducible: fixed timestamps, owners and order.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile


def tar_bytes(entries):
    """entries: list of (path_in_image, kind, data_or_target, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen_dirs = set()
        unique = {e[0].strip("/"): e for e in entries}
        for path, kind, payload, mode in (unique[p] for p in sorted(unique)):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d in unique and unique[d][1] != "dir":
                    raise SystemExit(f"/{path.strip('/')}: /{d} is not a directory")
                if d not in seen_dirs:
                    seen_dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(path.strip("/"))
            info.mode = mode
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
                tar.addfile(info)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                seen_dirs.add(path.strip("/"))
                tar.addfile(info)
    return buf.getvalue()


def host_entry(path):
    """The entry that copies host path to the same path in the image."""
    st = os.lstat(path)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return (path, "symlink", os.readlink(path), 0o777)
    if stat.S_ISDIR(st.st_mode):
        return (path, "dir", None, mode)
    if not stat.S_ISREG(st.st_mode):
        raise SystemExit(f"{path}: not a file, directory or symlink")
    with open(path, "rb") as f:
        return (path, "file", f.read(), mode)


def blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    out.append(("blobs/sha256/" + digest, data))
    return "sha256:" + digest, len(data)


def write_archive(out, name, manifest_digest, manifest_size, blobs):
    """Writes the OCI image layout archive out (through out.tmp): the layout marker, an index
    naming the manifest as name (containerd's and OCI's annotations) and every blob."""
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]},
        }],
    }
    files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
             ("index.json", json.dumps(index, sort_keys=True).encode())] + blobs
    tmp = out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for entry, data in files:
            info = tarfile.TarInfo(entry)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="full image name, registry/repo:tag")
    ap.add_argument("--out", required=True, help="archive to write")
    ap.add_argument("--file", action="append", default=[], metavar="HOST:IMAGE[:MODE]",
                    help="copy a host file into the image")
    ap.add_argument("--symlink", action="append", default=[], metavar="LINK=TARGET")
    ap.add_argument("--dir", action="append", default=[], metavar="PATH[:MODE]",
                    help="a directory (mode 0755, /tmp 1777, unless MODE in octal)")
    ap.add_argument("--list", action="append", default=[], metavar="FILE",
                    help="host paths, one a line, copied to the same paths (modes kept)")
    ap.add_argument("--gzip", action="store_true", help="gzip the layer")
    ap.add_argument("--entrypoint", nargs="+", default=[])
    ap.add_argument("--cmd", nargs="+", default=[])
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="PATH=/bin:/usr/bin:/sbin:/usr/sbin unless one sets PATH")
    args = ap.parse_args()
    if not any(e.startswith("PATH=") for e in args.env):
        args.env.insert(0, "PATH=/bin:/usr/bin:/sbin:/usr/sbin")

    entries = []
    for spec in args.file:
        fields = spec.split(":")
        host, dest = fields[0], fields[1]
        mode = int(fields[2], 8) if len(fields) > 2 else 0o755
        with open(host, "rb") as f:
            entries.append((dest, "file", f.read(), mode))
    for spec in args.symlink:
        link, target = spec.split("=", 1)
        entries.append((link, "symlink", target, 0o777))
    for spec in args.dir:
        d, _, mode = spec.partition(":")
        default = 0o1777 if d.strip("/") == "tmp" else 0o755
        entries.append((d, "dir", None, int(mode, 8) if mode else default))
    for listing in args.list:
        with open(listing) as f:
            entries.extend(host_entry(p) for p in (l.strip() for l in f) if p)

    layer = tar_bytes(entries)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    media = "application/vnd.oci.image.layer.v1.tar"
    if args.gzip:
        layer, media = gzip.compress(layer, compresslevel=6, mtime=0), media + "+gzip"
    blobs = []
    layer_digest, layer_size = blob(blobs, layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": args.env, "Entrypoint": args.entrypoint or None,
                   "Cmd": args.cmd or None, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "moat e2e/images/oci_image.py"}],
    }
    config = {k: v for k, v in config.items() if v is not None}
    config["config"] = {k: v for k, v in config["config"].items() if v is not None}
    config_digest, config_size = blob(
        blobs, json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": media,
                    "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = blob(
        blobs, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    write_archive(args.out, args.name, manifest_digest, manifest_size, blobs)
    print(f"{args.name} -> {args.out} ({manifest_digest})")


if __name__ == "__main__":
    sys.exit(main())
