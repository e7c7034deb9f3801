#!/usr/bin/env python3
"""Benchmark of moat-operator against the real control plane of $KUBECONFIG: N Sandboxes
created at once (one request); the time until every one has its Pod and its first status
written; reconciles per second; the operator's peak RSS and CPU seconds; then the RSS with
HELD Sandboxes held in its caches. Prints measured figures; asserts nothing.
Usage: operator_bench.py OPERATOR_BINARY [N=1000] [HELD=10000]"""
import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration",
                                "operator"))
from harness import FakeNode, Operator, install_api, kubectl  # noqa: E402


def proc_figures(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, v = line.split(":", 1)
            fields[k] = v.strip()
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0]), cpu


def create(ns, n, prefix, clients=16, spec=None):
    """n Sandboxes at once: from kube_bench's creator (8 threads on one client with reused
    connections) when it is there, else from `clients` kubectl processes (kubectl sends a
    List's items one by one, and its start-up and TLS handshakes then dominate). spec: fields
    beside the image (kubectl only)."""
    creator = os.environ.get("MOAT_KUBE_BENCH")
    if creator and not spec:
        subprocess.run([creator, "--create-sandboxes", ns, prefix, str(n)], check=True,
                       timeout=900)
        return
    def batch(first, last):
        items = [{"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox",
                  "metadata": {"name": f"{prefix}-{i:05d}"},
                  "spec": {"image": "moat.local/busybox:1.35", **(spec or {})}} for i in range(first, last)]
        kubectl("create", "-n", ns, "-f", "-", timeout=900,
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    threads = [threading.Thread(target=batch, args=(n * k // clients, n * (k + 1) // clients))
               for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class StatusWatch:
    """Sandboxes of the namespace whose status names their Pod, from one watch (polling
    lists of thousands of objects would load the API server more than the operator does)."""

    def __init__(self, ns):
        self.done, self.lock = set(), threading.Lock()
        pki = os.path.join(os.environ.get("MOAT_CLUSTER_DIR", "/var/tmp/moat-cluster"), "pki")
        ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
        self.conn = http.client.HTTPSConnection("127.0.0.1", 6443, context=ctx)
        self.conn.request("GET", f"/apis/moat.dev/v1alpha1/namespaces/{ns}/sandboxes"
                                 "?watch=1&resourceVersion=0&timeoutSeconds=3600")
        self.resp = self.conn.getresponse()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        try:
            for line in self.resp:
                obj = json.loads(line)["object"]
                if obj.get("status", {}).get("podName"):
                    with self.lock:
                        self.done.add(obj["metadata"]["name"])
        except (OSError, ValueError, http.client.HTTPException):
            pass
        # The API server ends a watch whose reader falls behind (thousands of changes):
        # from then on, count by listing.
        self.ended = True

    ended = False

    def count(self, ns=None):
        if self.ended and ns:
            out = kubectl("get", "sbx", "-n", ns, "-o",
                          "jsonpath={range .items[*]}{.status.podName}{\"\\n\"}{end}",
                          timeout=300)[1]
            time.sleep(2)
            return sum(1 for line in out.splitlines() if line.strip())
        with self.lock:
            return len(self.done)


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    held = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    os.environ["MOAT_OPERATOR"] = binary
    import harness
    harness.OPERATOR = binary
    install_api()
    ns = f"moat-bench-{os.getpid()}"
    kubectl("create", "namespace", ns)
    node = FakeNode(f"bench-node-{os.getpid()}", {"moat.dev/managed": "true"})
    op = Operator(config="workers: 8\n")
    try:
        rss0, _, cpu0 = proc_figures(op.proc.pid)
        watch = StatusWatch(ns)
        t0 = time.time()
        create(ns, n, "s")
        created = time.time() - t0
        while watch.count(ns) < n:
            time.sleep(0.05)
        took = time.time() - t0
        rss, peak, cpu = proc_figures(op.proc.pid)
        reconciles = op.metric("moat_operator_reconciles_total")
        how = "8 threads of one C client" if os.environ.get("MOAT_KUBE_BENCH") else "16 kubectl processes"
        print(f"{n} Sandboxes created by {how} in {created:.1f} s; "
              f"all with their Pod and first status {took:.1f} s after the first create")
        print(f"reconciles: {reconciles:.0f} ({reconciles / took:.0f}/s); operator CPU "
              f"{cpu - cpu0:.2f} s; RSS {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB, "
              f"idle at start {rss0 / 1024:.1f} MiB)")
        if held > n:
            t1 = time.time()
            create(ns, held - n, "h")
            while watch.count(ns) < held:
                time.sleep(0.5)
            rss, peak, cpu = proc_figures(op.proc.pid)
            print(f"{held} Sandboxes (and their Pods) held after {time.time() - t1:.0f} s: "
                  f"RSS {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB), CPU {cpu:.1f} s")
    finally:
        op.stop()
        node.delete()
        from kube import delete_namespace
        # Leave the cluster as it was: the next run must not share it with this one's
        # garbage collection (thousands of Pods and Sandboxes going away).
        delete_namespace(ns, wait_s=300)


if __name__ == "__main__":
    main()
