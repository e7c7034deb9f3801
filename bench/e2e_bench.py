"""End-to-end latency on the cluster in $KUBECONFIG (Moat installed: e2e/cluster/cluster.sh
here): from `kubectl apply` to the program's first output line, and to Succeeded, for
Sandboxes (gVisor here) and, made the same way, plain runc Pods running the same program.
p50 and p99 over N sequential objects and over a burst of B applied at once.

    bench/e2e_bench.py [N=50] [B=20]

The first output line is seen by polling the pod's log through the API (every 50 ms, one
kept-alive TLS connection); Succeeded by polling the object's status the same way. Both
Sandboxes and Pods ask for 100m CPU and 64Mi, so a burst fits on one 2-core node.
"""
import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time

import yaml

KUBECTL = os.environ.get("KUBECTL", "kubectl")
IMAGE = os.environ.get("MOAT_E2E_IMAGE", "moat.local/busybox:1.35")
SCRIPT = "echo first; echo done"
POLL = 0.05


class Api:
    """GETs against the API server with the kubeconfig's client certificate."""

    def __init__(self, path):
        with open(path) as f:
            kc = yaml.safe_load(f)
        ctx_name = kc["current-context"]
        ctx = next(c["context"] for c in kc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in kc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in kc["users"] if u["name"] == ctx["user"])
        self.dir = tempfile.mkdtemp(prefix="e2e-bench-")

        def material(key):
            if key + "-data" in user or key + "-data" in cluster:
                src = user if key + "-data" in user else cluster
                p = os.path.join(self.dir, key)
                with open(p, "wb") as f:
                    f.write(base64.b64decode(src[key + "-data"]))
                return p
            return user.get(key) or cluster.get(key)

        ctx_ssl = ssl.create_default_context(cafile=material("certificate-authority"))
        ctx_ssl.load_cert_chain(material("client-certificate"), material("client-key"))
        server = cluster["server"].split("://", 1)[1]
        host, port = server.rsplit(":", 1)
        self.conn = lambda: http.client.HTTPSConnection(host, int(port), context=ctx_ssl,
                                                        timeout=10)
        self.c = self.conn()

    def get(self, path):
        for _ in range(2):
            try:
                self.c.request("GET", path)
                r = self.c.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = self.conn()
        return 0, b""


def kubectl(*args, stdin=None):
    return subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True,
                          check=True, timeout=120)


def sandbox(name):
    return {"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": name},
            "spec": {"image": IMAGE, "command": ["sh", "-c"], "args": [SCRIPT],
                     "resources": {"cpu": "100m", "memory": "64Mi"},
                     "network": {"egress": "None"}}}


def pod(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "enableServiceLinks": False,
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                                     "command": ["sh", "-c", SCRIPT],
                                     "resources": {"requests": {"cpu": "100m",
                                                                "memory": "64Mi"},
                                                   "limits": {"cpu": "100m",
                                                              "memory": "64Mi"}}}]}}


def run(api, ns, kind, names):
    """Applies the objects at once; returns per name (first output s, Succeeded s)."""
    make = sandbox if kind == "sandbox" else pod
    docs = "\n---\n".join(json.dumps(make(n)) for n in names)
    t0 = time.monotonic()
    kubectl("apply", "-n", ns, "-f", "-", stdin=docs)
    first, done = {}, {}
    deadline = t0 + 300
    while len(done) < len(names) or len(first) < len(names):
        if time.monotonic() > deadline:
            raise SystemExit(f"{kind}: timed out; first {len(first)}, done {len(done)}")
        for n in names:
            if n not in first:
                # the Sandbox's pod is named after it
                st, body = api.get(f"/api/v1/namespaces/{ns}/pods/{n}/log")
                if st == 200 and body.startswith(b"first"):
                    first[n] = time.monotonic() - t0
            if n not in done:
                path = (f"/apis/moat.dev/v1alpha1/namespaces/{ns}/sandboxes/{n}"
                        if kind == "sandbox" else f"/api/v1/namespaces/{ns}/pods/{n}")
                st, body = api.get(path)
                if st == 200:
                    phase = json.loads(body).get("status", {}).get("phase")
                    if phase == "Succeeded":
                        done[n] = time.monotonic() - t0
                    elif phase in ("Failed", "Expired"):
                        raise SystemExit(f"{kind} {n} ended {phase}")
        time.sleep(POLL)
    return {n: (first[n], done[n]) for n in names}


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def report(label, res):
    f = [v[0] for v in res.values()]
    d = [v[1] for v in res.values()]
    print(f"{label:28s} apply->first output p50 {pct(f, 50):6.3f} s p99 {pct(f, 99):6.3f} s"
          f" | apply->Succeeded p50 {pct(d, 50):6.3f} s p99 {pct(d, 99):6.3f} s", flush=True)
    return pct(f, 50), pct(d, 50), pct(f, 99), pct(d, 99)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    b = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    api = Api(os.environ["KUBECONFIG"])
    ns = f"e2e-bench-{os.getpid()}"
    kubectl("create", "namespace", ns)
    try:
        # one warm-up of each (images in the page cache, the namespace's NetworkPolicies)
        run(api, ns, "sandbox", ["warm-s"])
        run(api, ns, "pod", ["warm-p"])
        figures = {}
        for kind in ("sandbox", "pod"):
            seq = {}
            for i in range(n):
                seq.update(run(api, ns, kind, [f"{kind[0]}-seq-{i}"]))
            figures[(kind, "seq")] = report(f"{kind} x{n} sequential", seq)
            burst = run(api, ns, kind, [f"{kind[0]}-burst-{i}" for i in range(b)])
            figures[(kind, "burst")] = report(f"{kind} burst of {b}", burst)
        for mode in ("seq", "burst"):
            s, p = figures[("sandbox", mode)], figures[("pod", mode)]
            print(f"gVisor/runc ratio ({mode}): first output p50 {s[0] / p[0]:.2f}x, "
                  f"Succeeded p50 {s[1] / p[1]:.2f}x")
        s, bs = figures[("sandbox", "seq")], figures[("sandbox", "burst")]
        print(f"goals: p50 apply->first output under gVisor {s[0]:.3f} s (goal < 1.5 s: "
              f"{'met' if s[0] < 1.5 else 'missed'}); burst of {b} p99 apply->first output "
              f"{bs[2]:.3f} s, ->Succeeded {bs[3]:.3f} s (goal < 5 s: "
              f"{'met' if bs[2] < 5 else 'missed'})")
    finally:
        subprocess.run([KUBECTL, "delete", "namespace", ns, "--wait=false"],
                       capture_output=True, timeout=60)


if __name__ == "__main__":
    main()
