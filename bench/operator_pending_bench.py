#!/usr/bin/env python3
"""Benchmark of what Node events cost moat-operator while Sandboxes wait: N `isolation: VM`
Sandboxes pending with no node that has a hypervisor (no Pod), then E Node events that
change nothing they wait for (a new node without a hypervisor, then label changes on it).
Prints the reconciles those events caused, beside N x (E + 1), what waking every Pending
Sandbox on every Node event would cost; asserts nothing.
Usage: operator_pending_bench.py OPERATOR_BINARY [N=2000] [E=10]"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration",
                                "operator"))
from harness import FakeNode, Operator, install_api, kubectl  # noqa: E402
from operator_bench import create  # noqa: E402


def waiting(ns):
    out = kubectl("get", "sbx", "-n", ns, "-o", "jsonpath={range .items[*]}"
                  "{.status.conditions[?(@.type==\"Scheduled\")].reason}{\"\\n\"}{end}",
                  timeout=300)[1]
    return sum(1 for line in out.splitlines() if line.strip() == "NoHypervisor")


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    events = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    import harness
    harness.OPERATOR = binary
    install_api()
    ns = f"moat-pending-{os.getpid()}"
    kubectl("create", "namespace", ns)
    op = Operator(config="workers: 8\n")
    node = None
    try:
        create(ns, n, "vm", spec={"isolation": "VM"})
        deadline = time.time() + 600
        while waiting(ns) < n and time.time() < deadline:
            time.sleep(1)
        time.sleep(2)  # the last status writes' own reconciles
        before = op.metric("moat_operator_reconciles_total")
        t0 = time.time()
        node = FakeNode(f"bench-plain-{os.getpid()}", {"moat.dev/managed": "true",
                                                       "moat.dev/hypervisor": "none"})
        for i in range(events):
            kubectl("label", "node", node.name, f"moat.dev/bench-poke={i}", "--overwrite")
        time.sleep(3)
        woke = op.metric("moat_operator_reconciles_total") - before
        print(f"{n} VM Sandboxes waiting (NoHypervisor); {events + 1} Node events that change "
              f"nothing they wait for (a node without a hypervisor, {events} label changes, "
              f"its heartbeats over {time.time() - t0:.0f} s): {woke:.0f} reconciles "
              f"(waking every Pending Sandbox per event: {n * (events + 1)})")
    finally:
        op.stop()
        if node:
            node.delete()
        from kube import delete_namespace
        # Leave the cluster as it was: the next run must not share it with this one's
        # garbage collection (thousands of Pods and Sandboxes going away).
        delete_namespace(ns, wait_s=300)


if __name__ == "__main__":
    main()
