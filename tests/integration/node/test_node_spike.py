"""The node spike: kubelet v1.35 on containerd 2.x, registered with the local control
plane, runs a runc pod and a gVisor pod (RuntimeClass -> containerd handler `runsc`,
runtime type io.containerd.runsc.v1) to completion. The gVisor pod is proven to run under
gVisor from inside (its kernel is not the host's and its dmesg is gVisor's) and from
containerd's own record of the container's runtime."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from kube import create_namespace, delete_namespace, get_json, kubectl, wait_for  # noqa: E402

CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
CLUSTER = os.environ.get("MOAT_CLUSTER_DIR", "/var/tmp/moat-cluster")
NODE = os.environ.get("MOAT_NODE_NAME", "moat-node")
SOCK = os.path.join(CLUSTER, "node", "containerd", "containerd.sock")
PROGRAM = 'echo "kernel=$(uname -r)"; dmesg 2>&1 | head -n 3; echo done'


def ctr(*args):
    return subprocess.run([os.path.join(CACHE, "bin", "ctr"), "--address", SOCK,
                           "--namespace", "k8s.io", *args],
                          capture_output=True, text=True, check=True).stdout


def pod(name, runtime_class=None):
    spec = {"restartPolicy": "Never", "nodeName": None,
            "containers": [{"name": "main", "image": "moat.local/busybox:1.35",
                            "imagePullPolicy": "Never", "command": ["sh", "-c", PROGRAM]}]}
    del spec["nodeName"]  # the scheduler places it
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": spec})


class NodeSpikeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ns = create_namespace("moat-node")
        kubectl("apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": "spike-runsc"}, "handler": "runsc"}))

    @classmethod
    def tearDownClass(cls):
        delete_namespace(cls.ns)
        kubectl("delete", "runtimeclass", "spike-runsc", "--ignore-not-found", check=False)

    def run_pod(self, name, runtime_class=None):
        kubectl("create", "-n", self.ns, "-f", "-", stdin=pod(name, runtime_class))

        def finished():
            p = get_json("pod", name, "-n", self.ns)
            return p if p["status"].get("phase") in ("Succeeded", "Failed") else None
        p = wait_for(finished, timeout=120, what=f"pod {name} to finish")
        logs = kubectl("logs", "-n", self.ns, name)[1]
        self.assertEqual(p["status"]["phase"], "Succeeded", logs)
        self.assertEqual(p["spec"]["nodeName"], NODE)
        cid = p["status"]["containerStatuses"][0]["containerID"]
        self.assertTrue(cid.startswith("containerd://"), cid)
        info = json.loads(ctr("containers", "info", cid[len("containerd://"):]))
        return logs, info["Runtime"]["Name"]

    def test_node_is_ready(self):
        node = get_json("node", NODE)
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        self.assertEqual(ready[0]["status"], "True")
        self.assertEqual(node["status"]["nodeInfo"]["kubeletVersion"], "v1.35.4")
        self.assertTrue(node["status"]["nodeInfo"]["containerRuntimeVersion"]
                        .startswith("containerd://2."))
        handlers = {h["name"] for h in node["status"].get("runtimeHandlers", [])}
        self.assertTrue({"runc", "runsc", "runsc-nonet"} <= handlers, handlers)

    def test_runc_pod_runs_on_the_host_kernel(self):
        logs, runtime = self.run_pod("spike-runc")
        self.assertEqual(runtime, "io.containerd.runc.v2")
        self.assertIn(f"kernel={os.uname().release}", logs)
        self.assertIn("done", logs)

    def test_runsc_pod_runs_under_gvisor(self):
        logs, runtime = self.run_pod("spike-gvisor", "spike-runsc")
        self.assertEqual(runtime, "io.containerd.runsc.v1")
        self.assertNotIn(f"kernel={os.uname().release}", logs)
        self.assertIn("Starting gVisor", logs)
        self.assertIn("done", logs)


if __name__ == "__main__":
    unittest.main(verbosity=2)
