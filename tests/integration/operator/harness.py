"""Pieces the operator's integration tests share: the operator process, fake nodes that
kube-scheduler can place Pods on (no kubelet runs for them: the test writes Pod status and
the node agent's isolation report through the API, as kubelet and the agent would), and
helpers to act as kubelet."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from kube import get_json, kubectl, wait_for  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
OPERATOR = os.environ.get("MOAT_OPERATOR", os.path.join(ROOT, "build", "operator",
                                                        "moat-operator"))
REPORT = "moat.dev/isolation-report"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_api():
    kubectl("apply", "--server-side", "--force-conflicts",
            "-f", os.path.join(ROOT, "crds", "moat.dev_sandboxes.yaml"),
            "-f", os.path.join(ROOT, "crds", "runtimeclasses.yaml"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/sandboxes.moat.dev")
    wait_for(lambda: kubectl("get", "sbx", "-A", check=False)[0] == 0, 30, what="sandboxes API")
    kubectl("create", "namespace", "moat-system", check=False)


class Operator:
    def __init__(self, config=None, leader_elect=False, identity=None, kubeconfig=None,
                 security=None, ready=True):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="moat-operator-")
        args = [OPERATOR, f"--metrics-addr=127.0.0.1:{self.port}",
                f"--leader-elect={'true' if leader_elect else 'false'}", "--log-level=debug"]
        # Every operator needs the key of its mark (operator/mark.h). These tests run it
        # without the chart, so without the chart's admission policies: none is required
        # for /readyz (tests/integration/tenant runs it with them).
        key = os.path.join(self.dir, "mark-key")
        with open(key, "wb") as f:
            f.write(os.urandom(32).hex().encode())
        if security is None:
            security = f"security:\n  markKeyFile: {key}\n  requiredPolicies: []\n"
        path = os.path.join(self.dir, "operator.yaml")
        with open(path, "w") as f:
            f.write(security + (config or ""))
        args.append(f"--config={path}")
        if identity:
            args.append(f"--identity={identity}")
        env = dict(os.environ)
        if kubeconfig:
            env["KUBECONFIG"] = kubeconfig
        self.log = open(os.path.join(self.dir, "log"), "w+")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=env)
        if ready:
            wait_for(self.ready, 60, what="the operator to be ready")

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None, ""

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"the operator exited: {self.logs()[-3000:]}")
        return self.get("/readyz")[0] == 200

    def metric(self, name):
        total = 0.0
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def logs(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def stop(self, kill=False):
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class FakeNode:
    """A Node object without a kubelet: Ready, with capacity, and a renewed node Lease so
    the node lifecycle controller leaves it untainted."""

    def __init__(self, name, labels, gpus=None):
        self.name = name
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                      **labels}}}
        kubectl("apply", "-f", "-", stdin=json.dumps(node))
        capacity = {"cpu": "32", "memory": "128Gi", "pods": "1000",
                    "ephemeral-storage": "500Gi"}
        if gpus:
            capacity.update(gpus)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.status = {"status": {
            "capacity": capacity, "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "fake node for tests", "lastHeartbeatTime": now,
                            "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "nodeInfo": {"kubeletVersion": "v1.35.4", "containerRuntimeVersion": "fake://0",
                         "architecture": "amd64", "operatingSystem": "linux",
                         "machineID": "", "systemUUID": "", "bootID": "",
                         "kernelVersion": "", "osImage": "", "kubeProxyVersion": ""}}}
        self.stop_event = threading.Event()
        self.heartbeat()
        threading.Thread(target=self._loop, daemon=True).start()

    def heartbeat(self):
        kubectl("patch", "node", self.name, "--subresource=status", "--type=merge",
                "-p", json.dumps(self.status), check=False)
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40,
                          "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z",
                                                     time.gmtime())}}
        kubectl("apply", "-f", "-", stdin=json.dumps(lease), check=False)

    def _loop(self):
        while not self.stop_event.wait(5):
            self.heartbeat()

    def delete(self):
        self.stop_event.set()
        kubectl("delete", "node", self.name, "--wait=false", check=False)
        kubectl("delete", "lease", self.name, "-n", "kube-node-lease", check=False)


def sandbox(name, **spec):
    doc = {"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": name},
           "spec": {"image": "moat.local/busybox:1.35", **spec}}
    return json.dumps(doc)


def now_rfc3339(offset=0):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def kubelet_sets(ns, pod, phase, exit_code=None, message=None, reason=None, started=True):
    """Writes a Pod's status as kubelet would."""
    status = {"phase": phase}
    if started:
        status["startTime"] = now_rfc3339(-1)
    if reason:
        status["reason"] = reason
    if phase == "Running":
        status["conditions"] = [{"type": "Ready", "status": "True"},
                                {"type": "PodScheduled", "status": "True"}]
        status["containerStatuses"] = [{"name": "sandbox", "ready": True, "restartCount": 0,
                                        "image": "moat.local/busybox:1.35", "imageID": "",
                                        "state": {"running": {"startedAt": now_rfc3339(-1)}}}]
    if exit_code is not None:
        term = {"exitCode": exit_code, "startedAt": now_rfc3339(-2),
                "finishedAt": now_rfc3339(), "reason": "Completed" if exit_code == 0 else "Error"}
        if message:
            term["message"] = message
        status["containerStatuses"] = [{"name": "sandbox", "ready": False, "restartCount": 0,
                                        "image": "moat.local/busybox:1.35", "imageID": "",
                                        "state": {"terminated": term}}]
    if reason == "DeadlineExceeded":
        status["message"] = "Pod was active on the node longer than the specified deadline"
    kubectl("patch", "pod", pod, "-n", ns, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))


def agent_reports(ns, pod, runtime="gvisor", handler="runsc",
                  reason="no usable hypervisor: no /dev/kvm"):
    report = json.dumps({"runtime": runtime, "handler": handler, "reason": reason,
                         "verified": True})
    kubectl("annotate", "pod", pod, "-n", ns, "--overwrite", f"{REPORT}={report}")


def sandbox_status(ns, name):
    rc, out, _ = kubectl("get", "sbx", name, "-n", ns, "-o", "json", check=False)
    return json.loads(out).get("status", {}) if rc == 0 else None


def condition(status, ctype):
    for c in (status or {}).get("conditions", []):
        if c["type"] == ctype:
            return c
    return None


def get_pod(ns, name):
    rc, out, _ = kubectl("get", "pod", name, "-n", ns, "-o", "json", check=False)
    return json.loads(out) if rc == 0 else None


__all__ = ["Operator", "FakeNode", "sandbox", "kubelet_sets", "agent_reports",
           "sandbox_status", "condition", "get_pod", "install_api", "get_json", "kubectl",
           "wait_for", "now_rfc3339", "ROOT"]
