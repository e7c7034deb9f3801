#!/usr/bin/env python3
"""A read-only OCI registry on loopback, serving images from OCI archives (the ones
e2e/images/build.sh makes), so that a test whose tool insists on pulling (cri-tools'
critest calls PullImage before every container) pulls from this machine and never looks up
a registry elsewhere.

    oci_registry.py PORTFILE REPO:TAG=ARCHIVE [REPO:TAG=ARCHIVE ...]

Listens on 127.0.0.1 on a free port, writes the port to PORTFILE, and serves the
distribution API's read side: GET /v2/, GET and HEAD of /v2/<repo>/manifests/<tag or
digest> and /v2/<repo>/blobs/<digest>. Anything else is 404 (a pull of an image not given
here fails, as it would against a registry without it). Runs until killed."""
import hashlib
import http.server
import json
import sys
import tarfile


def load(archive):
    """The archive's one manifest and every blob: ({digest: bytes}, manifest digest, media
    type)."""
    blobs = {}
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        for m in tar.getmembers():
            if m.isfile() and m.name.startswith("blobs/sha256/"):
                data = tar.extractfile(m).read()
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                if digest != "sha256:" + m.name.rsplit("/", 1)[1]:
                    raise SystemExit(f"oci_registry: {archive}: {m.name} does not match its digest")
                blobs[digest] = data
    desc = index["manifests"][0]
    return blobs, desc["digest"], desc["mediaType"]


class Registry(http.server.BaseHTTPRequestHandler):
    images = {}  # repo -> {tag or digest: (manifest digest, media type)}
    blobs = {}

    def log_message(self, fmt, *args):
        sys.stderr.write("oci_registry: " + (fmt % args) + "\n")

    def answer(self, code, body=b"", ctype="application/json", digest=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in ("/v2", "/v2/"):
            return self.answer(200, b"{}")
        for kind in ("/manifests/", "/blobs/"):
            if path.startswith("/v2/") and kind in path:
                repo, ref = path[4:].rsplit(kind, 1)
                known = self.images.get(repo, {})
                if kind == "/manifests/" and ref in known:
                    digest, mtype = known[ref]
                    return self.answer(200, self.blobs[digest], mtype, digest)
                if kind == "/blobs/" and known and ref in self.blobs:
                    return self.answer(200, self.blobs[ref], "application/octet-stream", ref)
        return self.answer(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}')

    do_HEAD = do_GET


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    for arg in sys.argv[2:]:
        name, archive = arg.split("=", 1)
        repo, tag = name.rsplit(":", 1)
        blobs, digest, mtype = load(archive)
        Registry.blobs.update(blobs)
        Registry.images.setdefault(repo, {}).update({tag: (digest, mtype), digest: (digest, mtype)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
