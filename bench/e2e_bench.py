"""End-to-end latency on the cluster in $KUBECONFIG (Moat installed: e2e/cluster/cluster.sh
here): from `kubectl apply` to the program's first output line, and to Succeeded, for
Sandboxes (gVisor here) and, made the same way, plain runc Pods running the same program.
p50 and p99 over N sequential objects and over a burst of B applied at once.

    bench/e2e_bench.py [N=50] [B=20]

The first output line's time is the runtime's own timestamp of it (the pod's log with
timestamps, read once the object has Succeeded); Succeeded is seen by one LIST of the
objects every 50 ms (one kept-alive TLS connection). Both
Sandboxes and Pods ask for 100m CPU and 64Mi, so a burst fits on one 2-core node.
"""
import base64
import calendar
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
        self.host, self.port, self.ssl = host, int(port), ctx_ssl
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


def log_time(line):
    """The wall-clock time (s since the epoch) of a line of `log?timestamps=true`: the moment
    containerd read it from the container (RFC 3339 with nanoseconds, UTC)."""
    stamp = line.split(b" ", 1)[0].decode()
    secs, _, frac = stamp.rstrip("Z").partition(".")
    base = calendar.timegm(time.strptime(secs, "%Y-%m-%dT%H:%M:%S"))
    return base + (float("0." + frac) if frac else 0.0)


def busy_cpu_seconds():
    """CPU seconds this machine has spent not idle (/proc/stat), all cores: the local
    cluster's whole cost, Moat's, Kubernetes', gVisor's and this script's."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def run(api, ns, kind, names, stats=None):
    """Applies the objects at once; returns per name (first output s, Succeeded s). stats,
    a dict, gets "cpu": the busy CPU seconds until the last one Succeeded.

    First output: the runtime's own timestamp of the program's first log line (read once
    the object has Succeeded), against the wall clock at apply; the same clock, this
    machine. Succeeded: when one LIST per 50 ms first shows it. So the measuring costs the
    API server one request per round, whatever the burst (polling each pod's log through
    the API server and kubelet cost more CPU than some of what it measured)."""
    make = sandbox if kind == "sandbox" else pod
    docs = "\n---\n".join(json.dumps(make(n)) for n in names)
    cpu0 = busy_cpu_seconds()
    wall0, t0 = time.time(), time.monotonic()
    kubectl("apply", "-n", ns, "-f", "-", stdin=docs)
    done = {}
    deadline = t0 + 300
    path = (f"/apis/moat.dev/v1alpha1/namespaces/{ns}/sandboxes" if kind == "sandbox"
            else f"/api/v1/namespaces/{ns}/pods")
    want = set(names)
    while len(done) < len(names):
        if time.monotonic() > deadline:
            raise SystemExit(f"{kind}: timed out; done {len(done)} of {len(names)}")
        st, body = api.get(path)
        now = time.monotonic() - t0
        if st == 200:
            for item in json.loads(body)["items"]:
                n = item["metadata"]["name"]
                phase = item.get("status", {}).get("phase")
                if n not in want or n in done:
                    continue
                if phase == "Succeeded":
                    done[n] = now
                elif phase in ("Failed", "Expired"):
                    raise SystemExit(f"{kind} {n} ended {phase}")
        time.sleep(POLL)
    if stats is not None:
        stats.update(cpu=busy_cpu_seconds() - cpu0)
    first = {}
    for n in names:  # the Sandbox's pod is named after it
        st, body = api.get(f"/api/v1/namespaces/{ns}/pods/{n}/log?timestamps=true")
        line = next((ln for ln in body.splitlines() if ln.split(b" ", 1)[-1] == b"first"), None)
        if st != 200 or line is None:
            raise SystemExit(f"{kind} {n}: no first line in its log ({st}): {body[:200]!r}")
        first[n] = log_time(line) - wall0
    return {n: (first[n], done[n]) for n in names}


def millicores(q):
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


def pod_cpu(p):
    """What the scheduler counts for a pod: its containers' CPU requests and its overhead."""
    reqs = sum(millicores(c.get("resources", {}).get("requests", {}).get("cpu", "0"))
               for c in p["spec"]["containers"])
    return reqs + millicores(p["spec"].get("overhead", {}).get("cpu", "0"))


def fit_at_once(api, sample):
    """How many more pods like sample the nodes' allocatable CPU holds beside the pods
    running now (the scheduler starts no more at once)."""
    nodes = json.loads(api.get("/api/v1/nodes")[1])["items"]
    pods = json.loads(api.get("/api/v1/pods")[1])["items"]
    free = sum(millicores(n["status"]["allocatable"]["cpu"]) for n in nodes)
    free -= sum(pod_cpu(p) for p in pods if p["status"].get("phase") in ("Pending", "Running"))
    return free // pod_cpu(sample), pod_cpu(sample)


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
            sample = json.loads(api.get(f"/api/v1/namespaces/{ns}/pods/"
                                        f"{'warm-s' if kind == 'sandbox' else 'warm-p'}")[1])
            fit, per = fit_at_once(api, sample)
            stats = {}
            burst = run(api, ns, kind, [f"{kind[0]}-burst-{i}" for i in range(b)], stats)
            figures[(kind, "burst")] = report(f"{kind} burst of {b}", burst)
            # Why a burst takes what it takes: how many the scheduler let run at once (CPU
            # requests and RuntimeClass overhead against the node's allocatable CPU), and the
            # CPU the burst cost this machine, over its cores: no schedule beats that.
            cores = os.cpu_count()
            print(f"{kind} burst of {b}: {fit} fit the node's CPU at once ({per}m each with "
                  f"the RuntimeClass overhead); "
                  f"{stats['cpu']:.1f} CPU-s busy on this machine ({stats['cpu'] / b:.2f} per "
                  f"{kind}), {stats['cpu'] / cores:.1f} s of all {cores} cores", flush=True)
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
