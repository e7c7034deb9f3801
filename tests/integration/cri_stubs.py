"""The CRI client the integration tests share: Python grpcio stubs generated from the
upstream api.proto of k8s.io/cri-api at the pinned version (in the Go module cache that
e2e/tools/build.sh fills), so every test talks CRI through a client independent of Moat's.
Debian's protoc 3.21 rejects `[debug_redact = true]`; it is stripped first."""
import os
import subprocess
import sys

CRI_API_VERSION = "v0.35.4"


def proto_path(cache=None):
    """Where the upstream api.proto lies in the Go module cache under cache ($MOAT_CACHE)."""
    cache = cache or os.environ.get("MOAT_CACHE", "/var/cache/moat")
    return os.path.join(cache, "go", "mod", "k8s.io", f"cri-api@{CRI_API_VERSION}", "pkg",
                        "apis", "runtime", "v1", "api.proto")


def load(out, proto=None):
    """Generates the stubs into the directory out and returns (api_pb2, api_pb2_grpc)."""
    os.makedirs(out, exist_ok=True)
    with open(proto or proto_path()) as f:
        text = f.read().replace(" [debug_redact = true]", "")
    with open(os.path.join(out, "api.proto"), "w") as f:
        f.write(text)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{out}", f"--python_out={out}",
                    f"--grpc_python_out={out}", os.path.join(out, "api.proto")], check=True)
    sys.path.insert(0, out)
    import api_pb2
    import api_pb2_grpc
    return api_pb2, api_pb2_grpc
