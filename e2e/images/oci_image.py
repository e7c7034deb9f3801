#!/usr/bin/env python3
"""Builds a single-layer OCI image archive without a container daemon or a registry.

    oci_image.py --name moat.local/pause:3.10 --out pause.tar \
        --file /path/on/host:/pause --entrypoint /pause

The archive is an OCI image layout that `ctr -n k8s.io images import` accepts; the
`io.containerd.image.name` annotation gives the image its full name. The output is
byte-for-byte reproducible: fixed timestamps, owners and order.
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tarfile


def tar_bytes(entries):
    """entries: list of (path_in_image, kind, data_or_target, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen_dirs = set()
        for path, kind, payload, mode in sorted(entries, key=lambda e: e[0]):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
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
    ap.add_argument("--dir", action="append", default=[], metavar="PATH")
    ap.add_argument("--entrypoint", nargs="+", default=[])
    ap.add_argument("--cmd", nargs="+", default=[])
    ap.add_argument("--env", action="append", default=["PATH=/bin:/usr/bin:/sbin:/usr/sbin"])
    args = ap.parse_args()

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
    for d in args.dir:
        entries.append((d, "dir", None, 0o1777 if d.strip("/") == "tmp" else 0o755))

    layer = tar_bytes(entries)
    blobs = []
    layer_digest, layer_size = blob(blobs, layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": args.env, "Entrypoint": args.entrypoint or None,
                   "Cmd": args.cmd or None, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
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
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = blob(
        blobs, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    write_archive(args.out, args.name, manifest_digest, manifest_size, blobs)
    print(f"{args.name} -> {args.out} ({manifest_digest})")


if __name__ == "__main__":
    sys.exit(main())
