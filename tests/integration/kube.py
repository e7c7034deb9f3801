"""A small kubectl wrapper shared by the integration tests. The cluster comes from
$KUBECONFIG and kubectl from $KUBECTL (the v1.35 build), so the tests run against any
cluster."""
import base64
import json
import os
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

KUBECTL = os.environ.get("KUBECTL", "kubectl")


class KubectlError(Exception):
    def __init__(self, args, returncode, stderr):
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


def kubectl(*args, stdin=None, check=True, timeout=60):
    """Runs kubectl; returns (returncode, stdout, stderr), raising on failure if check."""
    if not os.environ.get("KUBECONFIG"):
        raise RuntimeError("KUBECONFIG is not set: the integration tests need a cluster")
    p = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise KubectlError(args, p.returncode, p.stderr)
    return p.returncode, p.stdout, p.stderr


def get_json(*args):
    return json.loads(kubectl("get", *args, "-o", "json")[1])


def wait_for(predicate, timeout=60, interval=0.25, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def create_namespace(prefix):
    name = f"{prefix}-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    kubectl("create", "namespace", name)
    return name


def delete_namespace(name, wait_s=0):
    """Deletes namespace name (and, first, its Pods by force); with wait_s, waits that many
    seconds at most for it to be gone (a benchmark must not share the cluster with the
    previous run's garbage collection)."""
    # Pods on fake nodes (no kubelet) never finish a graceful deletion: force them, or the
    # namespace would stay Terminating and its objects in every cache.
    # One delete per Pod: 10,000 of them take minutes (the timeout grows with the count),
    # and the namespace goes whatever happened to them.
    try:
        n = len(get_json("pods", "-n", name)["items"])
        kubectl("delete", "pods", "--all", "-n", name, "--grace-period=0", "--force",
                "--wait=false", check=False, timeout=60 + n // 20)
    except (subprocess.TimeoutExpired, KubectlError, ValueError):
        pass
    kubectl("delete", "namespace", name, "--wait=false", check=False)
    deadline = time.time() + wait_s
    while time.time() < deadline and kubectl("get", "namespace", name, check=False)[0] == 0:
        time.sleep(1)


def raw_patch(path, body, user=None, extra=None, group=None):
    """A JSON merge patch straight to the API server, as the cluster's admin or as user
    (impersonated, with extra {key: value} and a group): `kubectl patch` and `annotate` read
    the object first, which an identity that may only patch (the node agent, a kubelet
    writing pods/status) may not. Returns
    (rc, stdout, stderr) as kubectl() does, the API server's answer in stderr on failure."""
    cfg = json.loads(kubectl("config", "view", "--raw", "--minify", "--flatten", "-o",
                             "json")[1])
    cluster, cred = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
    headers = {"Content-Type": "application/merge-patch+json"}
    if user:
        headers["Impersonate-User"] = user
    if group:
        headers["Impersonate-Group"] = group
    for k, v in (extra or {}).items():
        headers["Impersonate-Extra-" + urllib.parse.quote(k, safe="")] = v
    if cred.get("token"):
        headers["Authorization"] = f"Bearer {cred['token']}"
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    with tempfile.TemporaryDirectory() as d:
        if cred.get("client-certificate-data"):
            cert, key = os.path.join(d, "cert"), os.path.join(d, "key")
            with open(cert, "wb") as f:
                f.write(base64.b64decode(cred["client-certificate-data"]))
            with open(key, "wb") as f:
                f.write(base64.b64decode(cred["client-key-data"]))
            ctx.load_cert_chain(cert, key)
        req = urllib.request.Request(cluster["server"] + path, data=json.dumps(body).encode(),
                                     method="PATCH", headers=headers)
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                             urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=30) as r:
                return 0, r.read().decode(), ""
        except urllib.error.HTTPError as e:
            return 1, "", e.read().decode()
