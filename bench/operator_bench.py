#!/usr/bin/env python3
"""Benchmark of moat-operator against the real control plane of $KUBECONFIG: N Sandboxes
created at once (one request); the time until every one has its Pod and its first status
written; reconciles per second; the operator's peak RSS and CPU seconds; then the RSS with
HELD Sandboxes held in its caches. Prints measured figures; asserts nothing.
Usage: operator_bench.py OPERATOR_BINARY [N=1000] [HELD=10000]"""
import json
import os
import subprocess
import sys
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


def create(ns, n, prefix):
    for start in range(0, n, 500):
        items = [{"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox",
                  "metadata": {"name": f"{prefix}-{i:05d}"},
                  "spec": {"image": "moat.local/busybox:1.35"}}
                 for i in range(start, min(n, start + 500))]
        kubectl("create", "-n", ns, "-f", "-", timeout=600,
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def with_status(ns):
    out = kubectl("get", "sbx", "-n", ns, "-o",
                  "jsonpath={range .items[*]}{.status.podName}{\"\\n\"}{end}", timeout=300)[1]
    return sum(1 for line in out.splitlines() if line.strip())


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
        t0 = time.time()
        create(ns, n, "s")
        created = time.time() - t0
        while with_status(ns) < n:
            time.sleep(0.2)
        took = time.time() - t0
        rss, peak, cpu = proc_figures(op.proc.pid)
        reconciles = op.metric("moat_operator_reconciles_total")
        print(f"{n} Sandboxes created in one request each 500 ({created:.1f} s); "
              f"all with Pod and status after {took:.1f} s")
        print(f"reconciles: {reconciles:.0f} ({reconciles / took:.0f}/s); operator CPU "
              f"{cpu - cpu0:.2f} s; RSS {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB, "
              f"idle at start {rss0 / 1024:.1f} MiB)")
        if held > n:
            t1 = time.time()
            create(ns, held - n, "h")
            while with_status(ns) < held:
                time.sleep(1)
            rss, peak, cpu = proc_figures(op.proc.pid)
            print(f"{held} Sandboxes (and their Pods) held after {time.time() - t1:.0f} s: "
                  f"RSS {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB), CPU {cpu:.1f} s")
    finally:
        op.stop()
        node.delete()
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


if __name__ == "__main__":
    main()
