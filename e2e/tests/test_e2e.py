"""End to end, against the cluster in $KUBECONFIG with Moat installed by its Helm chart
(e2e/cluster/cluster.sh here, e2e/kind/ elsewhere): Sandboxes applied with kubectl run on a
real kubelet through moat-cri.

Node-side checks (runsc's list, containerd's state, restarting containerd and moat-cri)
need the node's directories: $MOAT_CLUSTER_DIR (default /var/tmp/moat-cluster) on this
machine; on another cluster they are skipped (MOAT_E2E_NODE_CHECKS=0).
"""
import base64
import json
import os
import subprocess
import sys
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from kube import create_namespace, get_json, kubectl, wait_for  # noqa: E402

CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
BIN = os.path.join(CACHE, "bin")
CLUSTER_DIR = os.environ.get("MOAT_CLUSTER_DIR", "/var/tmp/moat-cluster")
NODE_DIR = os.path.join(CLUSTER_DIR, "node")
CLUSTER_SH = os.path.join(ROOT, "e2e", "cluster", "cluster.sh")
NODE_CHECKS = os.environ.get("MOAT_E2E_NODE_CHECKS", "1") == "1" and os.path.isdir(NODE_DIR)
MOAT_NS = os.environ.get("MOAT_NAMESPACE", "moat-system")
IMAGE = os.environ.get("MOAT_E2E_IMAGE", "moat.local/busybox:1.35")
FINAL = ("Succeeded", "Failed", "Expired")
HOST_KERNEL = os.uname().release


def sandbox_yaml(name, script, isolation="Auto", egress="None", timeout="2m", ttl="10m"):
    return json.dumps({
        "apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": name},
        "spec": {"image": IMAGE, "command": ["sh", "-c"], "args": [script],
                 "isolation": isolation, "timeout": timeout, "ttlAfterFinished": ttl,
                 "network": {"egress": egress}}})


def ctr(*args):
    return subprocess.run([os.path.join(BIN, "ctr"), "--address",
                           os.path.join(NODE_DIR, "containerd", "containerd.sock"),
                           "-n", "k8s.io", *args], capture_output=True, text=True, timeout=30)


def runsc_list():
    # the shim keeps each containerd namespace's sandboxes under <root>/<namespace>
    root = os.path.join(NODE_DIR, "runsc", "root", "k8s.io")
    p = subprocess.run([os.path.join(BIN, "runsc"), "--root", root, "list", "-quiet"],
                       capture_output=True, text=True, timeout=30)
    return p.stdout.split()


class E2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ns = create_namespace("e2e")

    @classmethod
    def tearDownClass(cls):
        kubectl("delete", "namespace", cls.ns, "--wait=false", check=False)

    # ---- helpers ----
    def apply(self, *docs):
        kubectl("apply", "-n", self.ns, "-f", "-", stdin="\n---\n".join(docs))

    def sbx(self, name):
        return get_json("sandbox", name, "-n", self.ns)

    def status(self, name):
        return self.sbx(name).get("status", {})

    def wait_phase(self, name, phases, timeout=120):
        return wait_for(lambda: self.status(name).get("phase") in phases and self.status(name),
                        timeout, 0.5, what=f"sandbox {name} in {phases}")

    def logs(self, pod):
        return kubectl("logs", "-n", self.ns, pod, check=False)[1]

    def pods_of(self, name):
        return get_json("pods", "-n", self.ns, "-l", f"moat.dev/sandbox={name}")["items"]

    def container_id(self, pod):
        p = get_json("pod", pod, "-n", self.ns)
        cid = p["status"]["containerStatuses"][0].get("containerID", "")
        return cid.split("://", 1)[-1]

    def runtime_handler(self, pod):
        """The handler containerd's CRI plugin recorded for the pod's sandbox."""
        cid = self.container_id(pod)
        sid = self.sandbox_id_of(cid)
        info = json.loads(ctr("containers", "info", sid).stdout)
        meta = info["Extensions"]["io.cri-containerd.sandbox.metadata"]["value"]
        return json.loads(base64.b64decode(meta))["Metadata"]["RuntimeHandler"]

    def sandbox_id_of(self, cid):
        info = json.loads(ctr("containers", "info", cid).stdout)
        return info["Spec"]["annotations"]["io.kubernetes.cri.sandbox-id"]

    def assert_true_final(self, name, st):
        """The phase agrees with what the pod's container really did."""
        pods = self.pods_of(name)
        self.assertLessEqual(len(pods), 1, [p["metadata"]["name"] for p in pods])
        if st["phase"] == "Expired":
            return
        self.assertEqual(len(pods), 1)
        term = pods[0]["status"]["containerStatuses"][0]["state"].get("terminated")
        self.assertIsNotNone(term, pods[0]["status"])
        self.assertEqual(st.get("exitCode"), term["exitCode"])
        self.assertEqual(st["phase"], "Succeeded" if term["exitCode"] == 0 else "Failed")

    # ---- cases ----
    def test_a_auto_runs_under_gvisor(self):
        self.apply(sandbox_yaml("hello", 'echo "hello from $(uname -sr)"; dmesg | head -n 3; '
                                         'sleep 10; echo bye'))
        st = self.wait_phase("hello", ("Running",) + FINAL, 120)
        pod = st["podName"]
        if NODE_CHECKS and st["phase"] == "Running":
            cid = self.container_id(pod)
            self.assertIn(cid, runsc_list())
            self.assertEqual(self.runtime_handler(pod), "runsc-nonet")  # runsc itself lists the sandbox's container
        st = self.wait_phase("hello", FINAL, 120)
        self.assertEqual(st["phase"], "Succeeded", st)
        self.assertEqual(st.get("exitCode"), 0)
        iso = st["isolation"]
        self.assertEqual(iso["runtime"], "gvisor", iso)
        self.assertTrue(iso["verified"], iso)
        self.assertIn("hypervisor", iso["reason"], iso)
        out = self.logs(pod)
        self.assertIn("hello from Linux", out)
        self.assertIn("bye", out)
        kernel = out.split("hello from Linux ", 1)[1].split()[0]
        self.assertNotEqual(kernel, HOST_KERNEL)  # gVisor's own kernel version
        self.assertIn("gVisor", out)  # its dmesg: "Starting gVisor..."
        self.assert_true_final("hello", st)

    def test_b_vm_stays_pending_without_hypervisor(self):
        self.apply(sandbox_yaml("vm", "echo never", isolation="VM"))
        st = wait_for(lambda: any(c["type"] == "Scheduled" and c["status"] == "False"
                                  for c in self.status("vm").get("conditions", []))
                      and self.status("vm"), 30, 0.5, what="Scheduled=False")
        cond = [c for c in st["conditions"] if c["type"] == "Scheduled"][0]
        self.assertEqual(cond["reason"], "NoHypervisor", cond)
        time.sleep(5)
        self.assertEqual(self.status("vm").get("phase"), "Pending")
        self.assertEqual(self.pods_of("vm"), [])

    def test_b2_secret_its_creator_may_not_read_is_refused_at_apply(self):
        """A user allowed Sandboxes but not the Secret: refused by the chart's
        moat-sandbox-secrets policy at `kubectl apply`, naming the field and the Secret."""
        user = f"e2e-tenant-{os.getpid()}"
        kubectl("create", "secret", "generic", "db", "-n", self.ns, "--from-literal=k=v")
        kubectl("create", "role", "sandboxes", "-n", self.ns, "--verb=create,get,list",
                "--resource=sandboxes.moat.dev")
        kubectl("create", "rolebinding", "sandboxes", "-n", self.ns, "--role=sandboxes",
                f"--user={user}")
        doc = json.loads(sandbox_yaml("steal", "echo $TOKEN"))
        doc["spec"]["env"] = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "db",
                                                                               "key": "k"}}}]
        # the binding is in the API server's RBAC cache a moment later: refused by RBAC
        # before that, which is not what this test is about
        wait_for(lambda: kubectl("auth", "can-i", "create", "sandboxes.moat.dev", "-n", self.ns,
                                 "--as", user, check=False)[1].strip() == "yes",
                 30, 0.2, what="the user's binding in force")
        rc, _, err = kubectl("--as", user, "apply", "-n", self.ns, "-f", "-",
                             stdin=json.dumps(doc), check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("spec.env[TOKEN].valueFrom.secretKeyRef.name", err)
        self.assertIn('Secret "db"', err)
        self.assertNotEqual(kubectl("get", "sandbox", "steal", "-n", self.ns, check=False)[0], 0)

    def test_c_exec_through_the_shim(self):
        self.apply(sandbox_yaml("exec", "sleep 60"))
        st = self.wait_phase("exec", ("Running",), 120)
        wait_for(lambda: kubectl("exec", "-n", self.ns, st["podName"], "--", "true",
                                 check=False)[0] == 0, 30, what="exec")
        out = kubectl("exec", "-n", self.ns, st["podName"], "--", "sh", "-c",
                      "uname -r; dmesg | head -n 2")[1]
        self.assertNotEqual(out.split()[0], HOST_KERNEL)
        self.assertIn("gVisor", out)
        kubectl("delete", "sandbox", "exec", "-n", self.ns, "--wait=false")

    def test_d_egress(self):
        kubectl("run", "server", "-n", self.ns, f"--image={IMAGE}", "--image-pull-policy=Never",
                "--restart=Never", "--command", "--", "sh", "-c",
                "mkdir -p /www && echo served > /www/index.html && httpd -f -p 8080 -h /www")
        ip = wait_for(lambda: get_json("pod", "server", "-n", self.ns)["status"].get("podIP")
                      if get_json("pod", "server", "-n", self.ns)["status"].get("phase")
                      == "Running" else None, 60, what="server pod")
        # The node agent serves its metrics on the pod network (no hostNetwork): a runc pod
        # reaches them, a sandbox does not (the egress wall keeps it off the cluster).
        agent_ip = wait_for(lambda: next(
            (p["status"]["podIP"] for p in get_json("pods", "-n", "moat-system", "-l",
                                                    "app.kubernetes.io/name=moat-agent")["items"]
             if p["status"].get("podIP") and p["status"].get("phase") == "Running"), None),
            120, what="the agent's pod")
        server, metrics = f"http://{ip}:8080/", f"http://{agent_ip}:9468/metrics"

        def probe(url):
            return (f"if timeout 5 wget -qO- {url}; then echo REACHED {url}; "
                    f"else echo BLOCKED {url}; fi")
        both = f"{probe(server)}; {probe(metrics)}"
        kubectl("run", "client", "-n", self.ns, f"--image={IMAGE}", "--image-pull-policy=Never",
                "--restart=Never", "--command", "--", "sh", "-c", f"sleep 1; {both}")
        wait_for(lambda: get_json("pod", "client", "-n", self.ns)["status"].get("phase")
                 in ("Succeeded", "Failed"), 60, what="client pod")
        self.assertIn("served", self.logs("client"))  # the server is reachable from runc
        self.assertIn(f"REACHED {server}", self.logs("client"))
        self.assertIn(f"REACHED {metrics}", self.logs("client"))
        self.assertIn("moat_agent_", self.logs("client"))
        # Both probe first thing: kube-router walls a pod only once it has seen its address,
        # so the first instant is held by moat-cri's egress wall (cri-shim/wall.h) alone.
        self.apply(sandbox_yaml("nonet", both + "; sleep 3", egress="None"),
                   sandbox_yaml("inet", both + "; sleep 3", egress="Internet"))
        if NODE_CHECKS:
            st = self.wait_phase("nonet", ("Running",) + FINAL, 120)
            if st["phase"] == "Running":
                # containerd's own record of the handler
                self.assertEqual(self.runtime_handler(st["podName"]), "runsc-nonet")
        for name in ("nonet", "inet"):
            st = self.wait_phase(name, FINAL, 120)
            self.assertEqual(st["phase"], "Succeeded", st)
            out = self.logs(st["podName"])
            self.assertIn(f"BLOCKED {server}", out, name)
            self.assertIn(f"BLOCKED {metrics}", out, name)
            self.assertNotIn("served", out, name)
            self.assertNotIn("moat_agent_", out, name)
        self.assertEqual(self.status("nonet")["isolation"]["handler"], "runsc-nonet")

    def test_e_timeout_expires_then_ttl(self):
        # its clock runs from the pod's start: 15 s leave a loaded machine room to start
        # gVisor and run the echo before the end
        self.apply(sandbox_yaml("slow", "echo started; sleep 300", timeout="15s", ttl="20s"))
        st = self.wait_phase("slow", ("Expired",), 90)
        self.assertIn("started", self.logs(st["podName"]))  # readable until the TTL
        wait_for(lambda: kubectl("get", "sandbox", "slow", "-n", self.ns, check=False)[0] != 0,
                 90, 1, what="the expired sandbox gone after its TTL")
        wait_for(lambda: self.pods_of("slow") == [], 60, 1, what="its pod gone")

    def test_f_delete_running_removes_pod(self):
        self.apply(sandbox_yaml("del", "sleep 120"))
        self.wait_phase("del", ("Running",), 120)
        kubectl("delete", "sandbox", "del", "-n", self.ns, "--wait=false")
        wait_for(lambda: self.pods_of("del") == [], 60, 1, what="the pod removed")

    def test_g_twenty_at_once(self):
        names = [f"burst-{i}" for i in range(20)]
        self.apply(*(sandbox_yaml(n, f"echo {n}") for n in names))
        for n in names:
            st = self.wait_phase(n, FINAL, 300)
            self.assertEqual(st["phase"], "Succeeded", (n, st))
            self.assertEqual(len(self.pods_of(n)), 1, n)
            self.assertIn(n, self.logs(st["podName"]))

    @unittest.skipUnless(NODE_CHECKS, "restarts need this machine's node (cluster.sh)")
    def test_h_restarts_while_running(self):
        names = [f"rs-{i}" for i in range(4)]
        self.apply(*(sandbox_yaml(n, f"sleep {6 + 3 * i}; echo done-{i}")
                     for i, n in enumerate(names)))
        for n in names:
            self.wait_phase(n, ("Running",) + FINAL, 120)
        kubectl("delete", "pod", "-n", MOAT_NS, "-l", "app.kubernetes.io/name=moat-operator",
                "--wait=false")
        for svc in ("moat-cri", "containerd"):
            p = subprocess.run(["bash", CLUSTER_SH, "restart", svc], capture_output=True,
                               text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
        # `restart` returns once containerd is started, not serving: a Sandbox that ended
        # before the restart is final at once, and kubelet's ContainerStatus (which its log
        # read asks first) fails until containerd's CRI serves again and moat-cri's channel
        # to it is back ("unable to retrieve container logs for containerd://...").
        wait_for(lambda: ctr("version").returncode == 0, 60, what="containerd serving again")
        for n in names:
            st = self.wait_phase(n, FINAL, 180)
            self.assert_true_final(n, st)
            if st["phase"] == "Succeeded":
                out, deadline = self.logs(st["podName"]), time.monotonic() + 30
                while "unable to retrieve container logs" in out and time.monotonic() < deadline:
                    time.sleep(0.5)
                    out = self.logs(st["podName"])
                self.assertIn("done-", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
