#!/usr/bin/env python3
"""Writes an OCI image archive from a root filesystem directory, without a daemon.

    oci.py --name moat.local/moat-operator:0.1.0 --rootfs DIR --out moat-operator.tar \
        --user 65532:65532 --entrypoint /opt/moat/bin/moat-operator

One layer holding DIR as it is (files, directories, symlinks, modes; owners root, fixed
times: reproducible). The layer and blob code is e2e/images/oci_image.py's; this adds a
whole tree, the image's user and labels. `ctr -n k8s.io images import` takes the result.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e", "images"))
import oci_image  # noqa: E402


def tree_entries(root):
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            entries.append((rel, "dir", None, os.stat(dirpath).st_mode & 0o7777))
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            path = os.path.join(dirpath, name)
            relp = os.path.normpath(os.path.join(rel, name))
            st = os.lstat(path)
            if os.path.islink(path):
                entries.append((relp, "symlink", os.readlink(path), 0o777))
            else:
                with open(path, "rb") as f:
                    entries.append((relp, "file", f.read(), st.st_mode & 0o7777))
    return entries


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--user", default="")
    ap.add_argument("--entrypoint", nargs="+", default=[])
    ap.add_argument("--cmd", nargs="+", default=[])
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()

    layer = oci_image.tar_bytes(tree_entries(args.rootfs))
    blobs = []
    layer_digest, layer_size = oci_image.blob(blobs, layer)
    cfg = {"Env": args.env or ["PATH=/usr/bin:/bin"], "WorkingDir": "/"}
    if args.entrypoint:
        cfg["Entrypoint"] = args.entrypoint
    if args.cmd:
        cfg["Cmd"] = args.cmd
    if args.user:
        cfg["User"] = args.user
    if args.label:
        cfg["Labels"] = dict(kv.split("=", 1) for kv in args.label)
    config = {"architecture": "amd64", "os": "linux", "config": cfg,
              "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
              "history": [{"created_by": "moat images/build.sh"}]}
    config_digest, config_size = oci_image.blob(
        blobs, json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config_digest, "size": config_size},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": layer_digest, "size": layer_size}]}
    manifest_digest, manifest_size = oci_image.blob(
        blobs, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    oci_image.write_archive(args.out, args.name, manifest_digest, manifest_size, blobs)
    print(f"{args.name} -> {args.out} ({manifest_digest}, layer {layer_size} bytes)")


if __name__ == "__main__":
    sys.exit(main())
