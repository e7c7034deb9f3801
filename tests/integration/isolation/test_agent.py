"""moat-agent against the real local control plane and node, with moat-cri in front of
containerd (node.sh with MOAT_NODE_CRI; the node is put back as the ctest fixture left it).

- Node labels appear and follow the agent's facts (a facts file changed, then SIGHUP), and
  nothing else on the Node changes: its other labels and annotations are equal before and
  after, and the agent's field manager owns only moat.dev/ labels.
- A moat-auto pod (moat-cri decides runsc here) and a plain runc pod each get an isolation
  report equal to what containerd itself says: runtime_handler and the decision
  annotations read with an independent CRI client (Python grpcio, stubs from upstream's
  api.proto) straight from containerd's socket.
- Its service account may not get, list or watch Pods (it finds its node's pods through the
  runtime); the reports still come.
- The admission policy (isolation/agent/admission-policy.yaml) refuses, with the agent's
  own pod-bound token, writes to another Node, to a Pod on another node, and to anything
  but Moat's keys on its own Node and Pods; a token bound to no pod is refused outright."""
import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from kube import create_namespace, delete_namespace, get_json, kubectl, wait_for  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
CLUSTER = os.environ.get("MOAT_CLUSTER_DIR", "/var/tmp/moat-cluster")
NODE = os.environ.get("MOAT_NODE_NAME", "moat-node")
AGENT = os.environ.get("MOAT_AGENT", os.path.join(ROOT, "build", "isolation", "moat-agent"))
SHIM = os.environ.get("MOAT_CRI", os.path.join(ROOT, "build", "cri-shim", "moat-cri"))
PROBE = os.environ.get("MOAT_PROBE", os.path.join(ROOT, "build", "isolation", "moat-probe"))
RUNTIMES = ["--runsc", os.path.join(CACHE, "bin", "runsc"),
            "--runsc-shim", os.path.join(CACHE, "bin", "containerd-shim-runsc-v1")]
CONTAINERD = os.path.join(CLUSTER, "node", "containerd", "containerd.sock")
SHIM_SOCK = os.path.join(CLUSTER, "node", "moat-cri", "cri.sock")
MANIFESTS = os.path.join(ROOT, "isolation", "agent")
PROTO = os.path.join(CACHE, "go", "mod", "k8s.io", "cri-api@v0.35.4", "pkg", "apis", "runtime",
                     "v1", "api.proto")
WORK = tempfile.mkdtemp(prefix="moat-agent-test-")
OTHER = "moat-agent-other-node"
SA = "system:serviceaccount:moat-system:moat-agent"
REPORT = "moat.dev/isolation-report"


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cri_stubs  # noqa: E402

api, rpc = cri_stubs.load(os.path.join(WORK, "stubs"), PROTO)


def node_sh(cmd, with_shim):
    env = dict(os.environ)
    env.pop("MOAT_NODE_CRI", None)
    if with_shim:
        env["MOAT_NODE_CRI"] = SHIM
    subprocess.run(["bash", os.path.join(ROOT, "e2e", "node", "node.sh"), cmd], env=env,
                   check=True, stdout=subprocess.DEVNULL)


def moat_keys_removed(d):
    return {k: v for k, v in (d or {}).items() if not k.startswith("moat.dev/")}


def node_meta():
    n = get_json("node", NODE, "--show-managed-fields")["metadata"]
    return n.get("labels", {}), n.get("annotations", {}), n.get("managedFields", [])


def sandbox_pod(name, ns, runtime_class=None, node=NODE, sa=None):
    spec = {"nodeName": node, "restartPolicy": "Never", "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": "moat.local/busybox:1.35",
                            "imagePullPolicy": "Never", "command": ["sleep", "600"]}]}
    meta = {"name": name, "namespace": ns}
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
        # what the operator puts on every Sandbox's Pod (moat-cri refuses a Moat pod without)
        meta["annotations"] = {"moat.dev/network": "internet", "moat.dev/gpu-count": "0"}
    if sa:
        spec["serviceAccountName"] = sa
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})


class AgentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for b in (AGENT, SHIM):
            if not os.access(b, os.X_OK):
                raise RuntimeError(f"{b} is not built")
        cls.agent = None
        cls.ns = None
        cls.created_runtimeclass = False
        # The node with moat-cri in front of containerd (the fixture started it without).
        node_sh("down", False)
        node_sh("up", True)
        cls.channel = grpc.insecure_channel(f"unix://{CONTAINERD}")
        cls.containerd = rpc.RuntimeServiceStub(cls.channel)
        # A clean start: no Moat label on the node from an earlier run.
        labels, _, _ = node_meta()
        stale = [f"{k}-" for k in labels if k.startswith("moat.dev/")]
        if stale:
            kubectl("label", "node", NODE, *stale)
        # An admin's moat.dev/ label that is not the agent's: it must stay.
        kubectl("label", "node", NODE, "moat.dev/gpu-product=test-admin", "--overwrite")
        time.sleep(1)
        cls.labels_before, cls.annotations_before, _ = node_meta()

        kubectl("apply", "-f", os.path.join(MANIFESTS, "rbac.yaml"))
        kubectl("apply", "-f", os.path.join(MANIFESTS, "admission-policy.yaml"))
        if kubectl("get", "runtimeclass", "moat-auto", check=False)[0] != 0:
            kubectl("apply", "-f", os.path.join(ROOT, "crds", "runtimeclasses.yaml"))
            cls.created_runtimeclass = True
        cls.ns = create_namespace("moat-agent")

        # The agent's credentials: a token bound to a pod on this node, as a DaemonSet pod's
        # projected token is. TokenRequest adds that pod's node name to the token.
        kubectl("create", "-f", "-", stdin=sandbox_pod("moat-agent-holder", "moat-system",
                                                       sa="moat-agent"))
        token = kubectl("create", "token", "moat-agent", "-n", "moat-system",
                        "--bound-object-kind", "Pod", "--bound-object-name",
                        "moat-agent-holder", "--duration", "1h")[1].strip()
        cls.kubeconfig = cls.write_kubeconfig("agent", token)
        unbound = kubectl("create", "token", "moat-agent", "-n", "moat-system",
                          "--duration", "1h")[1].strip()
        cls.unbound_kubeconfig = cls.write_kubeconfig("unbound", unbound)

        cls.facts = os.path.join(WORK, "facts.json")
        cls.write_facts({"hypervisor": "none", "runtimes": ["gvisor"], "gpuMode": "none"})
        cls.log = open(os.path.join(WORK, "agent.log"), "w")
        # A probe interval far beyond the test: label changes come from SIGHUP.
        cls.agent = cls.start_agent(f"--facts={cls.facts}")

    @classmethod
    def start_agent(cls, *args):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            cls.mport = s.getsockname()[1]
        return subprocess.Popen(
            [AGENT, f"--kubeconfig={cls.kubeconfig}", f"--node-name={NODE}",
             f"--cri-endpoint=unix://{SHIM_SOCK}", "--probe-interval=3600", "--log-level=debug",
             f"--metrics-addr=127.0.0.1:{cls.mport}", *args], stdout=cls.log, stderr=cls.log)

    def http(self, path):
        """(status, body) of the agent's endpoint."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:{self.mport}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.agent and cls.agent.poll() is None:
                cls.agent.send_signal(signal.SIGTERM)
                cls.agent.wait(timeout=20)
        finally:
            if cls.ns:
                delete_namespace(cls.ns)
            kubectl("delete", "pod", "moat-agent-holder", "-n", "moat-system", "--grace-period=0",
                    "--force", "--ignore-not-found", check=False)
            kubectl("delete", "node", OTHER, "--ignore-not-found", check=False)
            kubectl("delete", "-f", os.path.join(MANIFESTS, "admission-policy.yaml"),
                    "--ignore-not-found", check=False)
            kubectl("delete", "-f", os.path.join(MANIFESTS, "rbac.yaml"), "--ignore-not-found",
                    "--wait=false", check=False)
            if cls.created_runtimeclass:
                kubectl("delete", "-f", os.path.join(ROOT, "crds", "runtimeclasses.yaml"),
                        "--ignore-not-found", check=False)
            labels, _, _ = node_meta()
            stale = [f"{k}-" for k in labels if k.startswith("moat.dev/")]
            if stale:
                kubectl("label", "node", NODE, *stale, check=False)
            cls.channel.close()
            # Back to the node the ctest fixture started: containerd straight to kubelet.
            node_sh("down", False)
            node_sh("up", False)

    @classmethod
    def write_kubeconfig(cls, name, token):
        admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json")[1])
        cluster = admin["clusters"][0]["cluster"]
        path = os.path.join(WORK, f"{name}.kubeconfig")
        with open(path, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "a",
                       "clusters": [{"name": "c", "cluster": cluster}],
                       "users": [{"name": "u", "user": {"token": token}}],
                       "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}]},
                      f)
        return path

    @classmethod
    def write_facts(cls, facts):
        tmp = cls.facts + ".tmp"
        with open(tmp, "w") as f:
            json.dump(facts, f)
        os.rename(tmp, cls.facts)

    def as_agent(self, *args, kubeconfig=None):
        if args and args[0] == "PATCH":
            return self.raw_patch(*args[1:], kubeconfig=kubeconfig)
        return subprocess.run([os.environ.get("KUBECTL", "kubectl"),
                               f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
                              capture_output=True, text=True, timeout=60)

    def raw_patch(self, path, body, kubeconfig=None):
        """A merge patch as the agent sends it: straight to the API, no read first (kubectl
        patch and annotate GET the object, which the agent may not). Answers like
        subprocess.run: returncode, stderr."""
        with open(kubeconfig or self.kubeconfig) as f:
            cfg = json.load(f)
        cluster, token = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]["token"]
        ctx = ssl.create_default_context(cadata=base64.b64decode(
            cluster["certificate-authority-data"]).decode())
        req = urllib.request.Request(cluster["server"] + path, data=json.dumps(body).encode(),
                                     method="PATCH",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/merge-patch+json"})
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                             urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=30):
                return subprocess.CompletedProcess([path], 0, "", "")
        except urllib.error.HTTPError as e:
            return subprocess.CompletedProcess([path], 1, "", e.read().decode())

    def agent_log(self):
        with open(os.path.join(WORK, "agent.log")) as f:
            return f.read()[-4000:]

    def assertAgentAlive(self):
        self.assertIsNone(self.agent.poll(), "moat-agent exited:\n" + self.agent_log())

    def wait_labels(self, want, absent=()):
        def ok():
            labels, _, _ = node_meta()
            good = all(labels.get(k) == v for k, v in want.items()) and \
                not any(k in labels for k in absent)
            return labels if good else None
        try:
            return wait_for(ok, timeout=30, what=f"node labels {want}, without {absent}")
        except AssertionError:
            self.assertAgentAlive()
            raise AssertionError("labels did not come:\n" + self.agent_log())

    def assertNothingElseChanged(self):
        labels, annotations, managed = node_meta()
        self.assertEqual(moat_keys_removed(labels), moat_keys_removed(self.labels_before))
        self.assertEqual(labels.get("moat.dev/gpu-product"), "test-admin")
        self.assertEqual(annotations, self.annotations_before)
        # What the agent's writes own: only moat.dev/ labels, and only the agent's keys.
        mine = [m for m in managed if m.get("manager", "").startswith("moat-agent")]
        self.assertTrue(mine, managed)
        for m in mine:
            fields = m["fieldsV1"]
            self.assertEqual(list(fields), ["f:metadata"], m)
            self.assertEqual(list(fields["f:metadata"]), ["f:labels"], m)
            for k in fields["f:metadata"]["f:labels"]:
                self.assertTrue(k.startswith("f:moat.dev/") and k != "f:moat.dev/gpu-product", k)

    def test_1_labels_follow_the_probe(self):
        self.wait_labels({"moat.dev/managed": "true", "moat.dev/hypervisor": "none",
                          "moat.dev/gpu-mode": "none", "moat.dev/runtime.gvisor": "true"},
                         absent=("moat.dev/runtime.kata",))
        self.assertNothingElseChanged()

        # The answer changes; the agent does not know until SIGHUP (interval: an hour).
        self.write_facts({"hypervisor": "kvm", "runtimes": ["gvisor", "kata"],
                          "gpuMode": "container"})
        time.sleep(2)
        self.assertEqual(node_meta()[0]["moat.dev/hypervisor"], "none")
        self.agent.send_signal(signal.SIGHUP)
        self.wait_labels({"moat.dev/managed": "true", "moat.dev/hypervisor": "kvm",
                          "moat.dev/gpu-mode": "container", "moat.dev/runtime.gvisor": "true",
                          "moat.dev/runtime.kata": "true"})
        self.assertNothingElseChanged()

        # And back: Kata's label is removed, not left behind.
        self.write_facts({"hypervisor": "none", "runtimes": ["gvisor", "kata"]})
        self.agent.send_signal(signal.SIGHUP)
        self.wait_labels({"moat.dev/hypervisor": "none", "moat.dev/gpu-mode": "none",
                          "moat.dev/runtime.gvisor": "true"},
                         absent=("moat.dev/runtime.kata",))
        self.assertNothingElseChanged()
        self.assertAgentAlive()

        # Its endpoints: alive, ready (labelled, pods synced), and the facts it labelled.
        self.assertEqual(self.http("/healthz")[0], 200)
        self.assertEqual(wait_for(lambda: self.http("/readyz")[0] == 200 or None, timeout=10,
                                  what="moat-agent ready"), True)
        text = wait_for(lambda: (lambda t: t if 'kata="false"' in t else None)(
            self.http("/metrics")[1]), timeout=10, what="the last facts in /metrics")
        self.assertIn('moat_agent_node_info{hypervisor="none",gpu_mode="none",gvisor="true",'
                      'kata="false"} 1', text)
        ok = [ln for ln in text.splitlines()
              if ln.startswith('moat_agent_node_labels_total{result="ok"}')]
        self.assertTrue(ok and int(ok[0].split()[-1]) >= 3, text)  # start and two SIGHUPs

        # A probe that fails is counted, and the labels stay as they were.
        with open(self.facts, "w") as f:
            f.write("{not json")
        self.agent.send_signal(signal.SIGHUP)
        def probe_errors():
            line = [ln for ln in self.http("/metrics")[1].splitlines()
                    if ln.startswith("moat_agent_probe_errors_total ")]
            return int(line[0].split()[-1]) if line else 0
        wait_for(lambda: probe_errors() >= 1 or None, timeout=10, what="the failed probe counted")
        self.assertEqual(node_meta()[0]["moat.dev/hypervisor"], "none")
        self.write_facts({"hypervisor": "none", "runtimes": ["gvisor", "kata"]})

    def containerd_truth(self, uid):
        """The pod's newest sandbox as containerd itself reports it."""
        items = self.containerd.ListPodSandbox(api.ListPodSandboxRequest(
            filter=api.PodSandboxFilter(label_selector={"io.kubernetes.pod.uid": uid})),
            timeout=10).items
        self.assertTrue(items, f"containerd has no sandbox for pod {uid}")
        sb = max(items, key=lambda s: (s.metadata.attempt, s.created_at))
        st = self.containerd.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=sb.id),
                                              timeout=10).status
        self.assertEqual(st.runtime_handler, sb.runtime_handler)
        return st

    def wait_report(self, name):
        def reported():
            p = get_json("pod", name, "-n", self.ns)
            r = p["metadata"].get("annotations", {}).get(REPORT)
            return (p, json.loads(r)) if r else None
        try:
            return wait_for(reported, timeout=90, what=f"the isolation report on {name}")
        except AssertionError:
            self.assertAgentAlive()
            raise AssertionError("no report:\n" + self.agent_log())

    def test_2_reports_match_containerd(self):
        kubectl("create", "-f", "-", stdin=sandbox_pod("auto", self.ns, "moat-auto"))
        kubectl("create", "-f", "-", stdin=sandbox_pod("plain", self.ns))

        pod, report = self.wait_report("auto")
        st = self.containerd_truth(pod["metadata"]["uid"])
        # moat-cri decided gVisor (its probe assumes no hypervisor) and containerd ran it so.
        self.assertEqual(st.runtime_handler, "runsc")
        self.assertEqual(report, {
            "runtime": st.annotations["moat.dev/decision-runtime"],
            "handler": st.runtime_handler,
            "reason": st.annotations["moat.dev/decision-reason"],
            "verified": True})
        self.assertEqual(report["runtime"], "gvisor")

        pod, report = self.wait_report("plain")
        st = self.containerd_truth(pod["metadata"]["uid"])
        self.assertNotIn("moat.dev/decision-runtime", st.annotations)  # passed through
        self.assertEqual(report["handler"], st.runtime_handler)
        self.assertEqual(report["runtime"], st.runtime_handler or "runc")
        self.assertTrue(report["verified"])
        self.assertIn("no decision", report["reason"])

        # A report someone changed is put right on the next look (SIGHUP rechecks pods).
        kubectl("annotate", "pod", "plain", "-n", self.ns, f"{REPORT}=wrong", "--overwrite")
        self.agent.send_signal(signal.SIGHUP)
        wait_for(lambda: get_json("pod", "plain", "-n", self.ns)["metadata"]["annotations"]
                 [REPORT] != "wrong", timeout=30, what="the report written again")
        self.assertAgentAlive()

    def test_3_admission_refuses_other_nodes(self):
        who = json.loads(self.as_agent("auth", "whoami", "-o", "json").stdout)["status"]
        self.assertEqual(who["userInfo"]["username"], SA)
        self.assertEqual(who["userInfo"]["extra"]["authentication.kubernetes.io/node-name"],
                         [NODE])

        # No read of Pods at all: RBAC could not keep it to this node (the agent finds its
        # node's pods through the runtime).
        for verb in (["get", "pods", "-n", self.ns], ["get", "pods", "-A"],
                     ["get", "pods", "-A", "--watch-only", "--request-timeout=2s"]):
            r = self.as_agent(*verb)
            self.assertNotEqual(r.returncode, 0, f"{verb} was allowed")
            self.assertIn("forbidden", r.stderr)

        kubectl("create", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": OTHER, "labels": {"kubernetes.io/hostname": OTHER}}}))
        kubectl("create", "-f", "-", stdin=sandbox_pod("elsewhere", self.ns, node=OTHER))
        kubectl("create", "-f", "-", stdin=sandbox_pod("mine", self.ns))

        def refused(args, message, kubeconfig=None):
            r = self.as_agent(*args, kubeconfig=kubeconfig)
            self.assertNotEqual(r.returncode, 0, f"{args} was allowed")
            self.assertIn("ValidatingAdmissionPolicy 'moat-agent-own-node'", r.stderr)
            self.assertIn(message, r.stderr)

        def allowed(args):
            r = self.as_agent(*args)
            self.assertEqual(r.returncode, 0, r.stderr)

        def pod_patch(name, metadata):
            return ["PATCH", f"/api/v1/namespaces/{self.ns}/pods/{name}", {"metadata": metadata}]

        # Another node, a pod on another node: refused although RBAC allows the patch.
        refused(["label", "node", OTHER, "moat.dev/managed=true"],
                f"moat-agent on node '{NODE}' may not change Node '{OTHER}'")
        refused(pod_patch("elsewhere", {"annotations": {REPORT: "{}"}}),
                f"may not change Pod {self.ns}/elsewhere on node '{OTHER}'")
        self.assertNotIn("moat.dev/managed", get_json("node", OTHER)["metadata"]["labels"])

        # Its own node and pods: Moat's keys only.
        allowed(["label", "node", NODE, "moat.dev/runtime.test=true"])
        allowed(["label", "node", NODE, "moat.dev/runtime.test-"])
        refused(["label", "node", NODE, "team=x"], "only Moat's node labels")
        refused(["label", "node", NODE, "kubernetes.io/hostname-"], "only Moat's node labels")
        refused(["annotate", "node", NODE, "moat.dev/x=y"], "only the annotation")
        refused(["patch", "node", NODE, "-p", '{"spec":{"unschedulable":true}}'],
                "may not change spec")
        allowed(pod_patch("mine", {"annotations": {REPORT: "{}"}}))
        refused(pod_patch("mine", {"annotations": {"other": "x"}}), "only the annotation")
        refused(pod_patch("mine", {"labels": {"x": "y"}}), "only Moat's node labels")

        # A token bound to no pod names no node: refused even for its own node.
        refused(["label", "node", NODE, "moat.dev/managed=true", "--overwrite"],
                "no node name in moat-agent's credentials", kubeconfig=self.unbound_kubeconfig)
        self.assertAgentAlive()


    def test_4_real_probe(self):
        """The agent on the real host probe labels what moat-probe reports for this host (here:
        kvm_pvm, so no usable hypervisor; the pinned gVisor build installed)."""
        self.agent.send_signal(signal.SIGTERM)
        self.assertEqual(self.agent.wait(timeout=20), 0, self.agent_log())
        if not os.access(PROBE, os.X_OK):
            self.skipTest(f"{PROBE} is not built")
        report = json.loads(subprocess.run([PROBE, "--json", "--no-libvirt", *RUNTIMES],
                                           capture_output=True, text=True, check=True).stdout)
        hv = report["hypervisor"]["kind"] if report["hypervisor"]["usable"] else "none"
        want = {"moat.dev/managed": "true", "moat.dev/hypervisor": hv,
                "moat.dev/gpu-mode": report["gpu"]["mode"]}
        absent = []
        for rt in ("gvisor", "kata"):
            if report["runtimes"][rt]["available"]:
                want[f"moat.dev/runtime.{rt}"] = "true"
            else:
                absent.append(f"moat.dev/runtime.{rt}")
        # Start from labels the real probe must correct.
        kubectl("label", "node", NODE, "moat.dev/hypervisor=mshv", "moat.dev/runtime.kata=true",
                "moat.dev/runtime.gvisor-", "--overwrite")
        type(self).agent = self.start_agent(*RUNTIMES)
        self.wait_labels(want, absent=absent)
        self.assertNothingElseChanged()
        self.assertAgentAlive()

if __name__ == "__main__":
    unittest.main(verbosity=2)
