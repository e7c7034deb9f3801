"""moat-operator against the real local control plane: kube-scheduler places the Pods on
fake nodes (no kubelet runs for them), and the test writes Pod status and the node agent's
isolation report through the API, as kubelet and the agent would."""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (FakeNode, Operator, agent_reports, condition, get_json,  # noqa: E402
                     get_pod, install_api, kubectl, kubelet_sets, sandbox, sandbox_status,
                     wait_for)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from kube import create_namespace, delete_namespace  # noqa: E402

MANAGED = {"moat.dev/managed": "true", "moat.dev/runtime.gvisor": "true"}


def phase_is(ns, name, phase):
    return lambda: (sandbox_status(ns, name) or {}).get("phase") == phase


class OperatorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        install_api()
        tag = str(os.getpid())
        cls.nodes = [
            FakeNode(f"fake-gvisor-{tag}", {**MANAGED, "moat.dev/hypervisor": "none",
                                            "moat.dev/gpu-mode": "container",
                                            "nvidia.com/gpu.product": "NVIDIA-L4"},
                     gpus={"nvidia.com/gpu": "4"}),
            FakeNode(f"fake-unmanaged-{tag}", {}),
        ]
        cls.operator = Operator()

    @classmethod
    def tearDownClass(cls):
        code = cls.operator.stop()
        for n in cls.nodes:
            n.delete()
        if code not in (0, None):
            raise AssertionError(f"the operator exited {code} on SIGTERM")

    def setUp(self):
        self.ns = create_namespace("moat-op")

    def tearDown(self):
        delete_namespace(self.ns)

    def create(self, name, **spec):
        kubectl("create", "-n", self.ns, "-f", "-", stdin=sandbox(name, **spec))

    def wait_pod(self, name, timeout=30):
        return wait_for(lambda: get_pod(self.ns, name), timeout, what=f"pod {name}")

    def test_pod_is_hardened_and_placed(self):
        self.create("hard", isolation="GVisor", args=["echo", "hi"],
                    env=[{"name": "A", "value": "1"}], resources={"cpu": "500m"})
        pod = self.wait_pod("hard")
        spec, meta = pod["spec"], pod["metadata"]
        sbx = get_json("sbx", "hard", "-n", self.ns)
        self.assertEqual(spec["runtimeClassName"], "moat-gvisor")
        self.assertFalse(spec["automountServiceAccountToken"])
        self.assertFalse(spec["enableServiceLinks"])
        self.assertFalse(spec.get("hostNetwork", False) or spec.get("hostPID", False)
                         or spec.get("hostIPC", False))
        self.assertEqual(spec["restartPolicy"], "Never")
        self.assertEqual(spec["activeDeadlineSeconds"], 300)
        self.assertEqual(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
        c = spec["containers"][0]
        self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"])
        self.assertEqual(c["securityContext"]["capabilities"]["drop"], ["ALL"])
        self.assertEqual(c["resources"]["requests"], c["resources"]["limits"])
        self.assertEqual(c["resources"]["requests"]["cpu"], "500m")
        self.assertEqual(c["resources"]["requests"]["memory"], "512Mi")
        self.assertEqual(meta["labels"]["moat.dev/sandbox"], "hard")
        self.assertEqual(meta["labels"]["moat.dev/egress"], "none")
        self.assertEqual(meta["annotations"]["moat.dev/network"], "none")
        owner = meta["ownerReferences"][0]
        self.assertEqual((owner["kind"], owner["uid"], owner["controller"]),
                         ("Sandbox", sbx["metadata"]["uid"], True))
        # kube-scheduler put it on the managed node only
        node = wait_for(lambda: get_pod(self.ns, "hard")["spec"].get("nodeName"), 30,
                        what="scheduling")
        self.assertEqual(node, self.nodes[0].name)
        st = wait_for(lambda: (s := sandbox_status(self.ns, "hard")) and s.get("nodeName")
                      and s, 30, what="status.nodeName")
        self.assertEqual(condition(st, "Scheduled")["status"], "True")
        self.assertEqual(st["isolation"]["runtime"], "")  # never guessed from the class
        self.assertFalse(st["isolation"]["verified"])
        self.assertEqual(st["observedGeneration"], sbx["metadata"]["generation"])
        # the namespace's NetworkPolicies select by egress class
        pols = {p["metadata"]["name"]: p for p in
                json.loads(kubectl("get", "networkpolicy", "-n", self.ns, "-o", "json")[1])["items"]}
        self.assertEqual(pols["moat-egress-none"]["spec"]["podSelector"]["matchLabels"],
                         {"moat.dev/egress": "none"})
        self.assertEqual(set(pols), {"moat-egress-none", "moat-egress-internet"})
        # one Pod, never more, however often it is reconciled
        kubectl("annotate", "sbx", "hard", "-n", self.ns, "poke=1")
        time.sleep(1)
        pods = json.loads(kubectl("get", "pods", "-n", self.ns, "-o", "json")[1])["items"]
        self.assertEqual(len(pods), 1)

    def test_node_events_wake_only_the_sandboxes_they_can_help(self):
        # 20 VM Sandboxes wait for a hypervisor nobody has.
        names = [f"wait-{i}" for i in range(20)]
        for n in names:
            self.create(n, isolation="VM")
        for n in names:
            wait_for(lambda n=n: (condition(sandbox_status(self.ns, n) or {}, "Scheduled") or {})
                     .get("reason") == "NoHypervisor", 30, what=f"{n} waiting")
        # Node events that change nothing they wait for: a new node without a hypervisor,
        # ten label changes and its heartbeats. Each used to reconcile every Pending one.
        before = self.operator.metric("moat_operator_reconciles_total")
        plain = FakeNode(f"fake-plain-{os.getpid()}", MANAGED)
        try:
            for i in range(10):
                kubectl("label", "node", plain.name, f"moat.dev/test-poke={i}", "--overwrite")
            time.sleep(2)
            woken = self.operator.metric("moat_operator_reconciles_total") - before
            self.assertLess(woken, len(names), f"{woken} reconciles for 11 node events")
            for n in names:
                self.assertIsNone(get_pod(self.ns, n))
            # ... while a node that can run them wakes each one: each gets its Pod.
            kvm = FakeNode(f"fake-kvm-wake-{os.getpid()}", {**MANAGED, "moat.dev/hypervisor": "kvm",
                                                            "moat.dev/runtime.kata": "true"})
            try:
                for n in names:
                    self.wait_pod(n)
            finally:
                kvm.delete()
        finally:
            plain.delete()

    def test_isolation_modes(self):
        self.create("auto")
        self.assertEqual(self.wait_pod("auto")["spec"]["runtimeClassName"], "moat-auto")
        # VM with no hypervisor anywhere: Pending, the condition says why, no Pod
        self.create("vm", isolation="VM")
        st = wait_for(lambda: (s := sandbox_status(self.ns, "vm")) and condition(s, "Scheduled")
                      and s, 30, what="a status for the VM sandbox")
        self.assertEqual(st["phase"], "Pending")
        self.assertEqual(condition(st, "Scheduled")["reason"], "NoHypervisor")
        self.assertIn("hypervisor", condition(st, "Scheduled")["message"])
        # ... and a Warning Event by that reason
        wait_for(lambda: get_json("events", "-n", self.ns, "--field-selector",
                                  "involvedObject.name=vm,reason=NoHypervisor")["items"],
                 30, what="the NoHypervisor event")
        time.sleep(1)
        self.assertIsNone(get_pod(self.ns, "vm"))
        # a node with KVM appears: the Pod is made, placed only where a hypervisor is
        kvm = FakeNode(f"fake-kvm-{os.getpid()}", {**MANAGED, "moat.dev/hypervisor": "kvm",
                                                   "moat.dev/runtime.kata": "true",
                                                   "moat.dev/gpu-mode": "vm-passthrough"},
                       gpus={"nvidia.com/pgpu": "2"})
        try:
            pod = self.wait_pod("vm")
            self.assertEqual(pod["spec"]["runtimeClassName"], "moat-vm")
            terms = pod["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            exprs = {e["key"]: e["values"] for e in terms[0]["matchExpressions"]}
            self.assertEqual(sorted(exprs["moat.dev/hypervisor"]), ["kvm", "mshv"])
            wait_for(lambda: get_pod(self.ns, "vm")["spec"].get("nodeName") == kvm.name, 30,
                     what="the VM pod on the KVM node")
            # a node reporting gVisor for isolation VM: never Isolated, and a Warning says why
            kubelet_sets(self.ns, "vm", "Running")
            agent_reports(self.ns, "vm")  # gvisor, runsc
            st = wait_for(lambda: (s := sandbox_status(self.ns, "vm")) and
                          (condition(s, "Isolated") or {}).get("reason") == "IsolationMismatch"
                          and s, 30, what="IsolationMismatch")
            self.assertEqual(condition(st, "Isolated")["status"], "False")
            self.assertFalse(st["isolation"]["verified"])
            wait_for(lambda: get_json("events", "-n", self.ns, "--field-selector",
                                      "involvedObject.name=vm,reason=IsolationMismatch")["items"],
                     30, what="the IsolationMismatch event")
            self.assertGreaterEqual(self.operator.metric(
                'moat_operator_isolation_alarms_total{reason="IsolationMismatch"}'), 1)
            # VM + GPU asks for the passthrough resource and nodes in VM-passthrough mode
            self.create("vmgpu", isolation="VM", resources={"gpu": {"count": 1}})
            pod = self.wait_pod("vmgpu")
            limits = pod["spec"]["containers"][0]["resources"]["limits"]
            self.assertEqual(limits.get("nvidia.com/pgpu"), "1")
            self.assertNotIn("nvidia.com/gpu", limits)
            wait_for(lambda: get_pod(self.ns, "vmgpu")["spec"].get("nodeName") == kvm.name, 30,
                     what="the VM GPU pod on the passthrough node")
        finally:
            kvm.delete()
        # GPUs under gVisor: the container resource, the GPU taint tolerated, the product
        self.create("gpu", isolation="GVisor",
                    resources={"gpu": {"count": 2, "product": "NVIDIA-L4"}})
        pod = self.wait_pod("gpu")
        self.assertEqual(pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
                         "2")
        self.assertIn("nvidia.com/gpu", [t.get("key") for t in pod["spec"]["tolerations"]])
        self.assertEqual(pod["metadata"]["annotations"]["moat.dev/gpu-count"], "2")

    def test_outcomes_and_isolation_report(self):
        for name in ("ok", "bad"):
            self.create(name)
            self.wait_pod(name)
        kubelet_sets(self.ns, "ok", "Running")
        agent_reports(self.ns, "ok")
        st = wait_for(lambda: (s := sandbox_status(self.ns, "ok")) and
                      s.get("isolation", {}).get("verified") and s, 30, what="isolation")
        self.assertEqual(st["isolation"], {"runtime": "gvisor", "handler": "runsc",
                                           "reason": "no usable hypervisor: no /dev/kvm",
                                           "verified": True})
        self.assertEqual(condition(st, "Isolated")["status"], "True")
        wait_for(phase_is(self.ns, "ok", "Running"), 30, what="Running")
        kubelet_sets(self.ns, "ok", "Succeeded", exit_code=0)
        wait_for(phase_is(self.ns, "ok", "Succeeded"), 30, what="Succeeded")
        st = sandbox_status(self.ns, "ok")
        self.assertEqual(st["exitCode"], 0)
        self.assertIn("completionTime", st)
        self.assertEqual(condition(st, "Finished")["status"], "True")
        row = kubectl("get", "sbx", "ok", "-n", self.ns, "--no-headers")[1].split()
        self.assertEqual(row[1:3], ["Succeeded", "gvisor"])

        kubelet_sets(self.ns, "bad", "Failed", exit_code=3, message="Traceback: boom")
        wait_for(phase_is(self.ns, "bad", "Failed"), 30, what="Failed")
        st = sandbox_status(self.ns, "bad")
        self.assertEqual(st["exitCode"], 3)
        self.assertIn("boom", st["message"])
        # the recorder posts its events from a thread of its own, after the status write
        def reasons():
            events = kubectl("get", "events", "-n", self.ns, "--field-selector",
                             "involvedObject.name=bad", "-o", "json")[1]
            return {e["reason"] for e in json.loads(events)["items"]}
        wait_for(lambda: {"PodCreated", "Failed"} <= reasons(), 30, 0.5,
                 what="PodCreated and Failed events")

    def test_deadline_expires_and_ttl_deletes(self):
        self.create("short", timeout="30s", ttlAfterFinished="4s")
        pod = self.wait_pod("short")
        self.assertEqual(pod["spec"]["activeDeadlineSeconds"], 30)
        kubelet_sets(self.ns, "short", "Running")
        wait_for(phase_is(self.ns, "short", "Running"), 30, what="Running")
        kubelet_sets(self.ns, "short", "Failed", reason="DeadlineExceeded", exit_code=137)
        wait_for(phase_is(self.ns, "short", "Expired"), 30, what="Expired")
        self.assertIsNotNone(get_pod(self.ns, "short"))  # kept for its logs until the TTL
        wait_for(lambda: sandbox_status(self.ns, "short") is None, 30, what="TTL deletion")
        wait_for(lambda: get_pod(self.ns, "short") is None, 60, what="the pod to go too")

    def test_timeout_by_status_times(self):
        # kubelet never reports the deadline (a node gone): the operator's own timer ends it
        self.create("stuck", timeout="3s")
        self.wait_pod("stuck")
        kubelet_sets(self.ns, "stuck", "Running")
        wait_for(phase_is(self.ns, "stuck", "Expired"), 30, what="Expired by status times")
        self.assertIn("timeout", sandbox_status(self.ns, "stuck")["message"])

    def test_pod_deleted_behind_its_back(self):
        self.create("early")
        first = self.wait_pod("early")["metadata"]["uid"]
        kubectl("delete", "pod", "early", "-n", self.ns, "--grace-period=0", "--force")
        again = wait_for(lambda: (p := get_pod(self.ns, "early")) and
                         p["metadata"]["uid"] != first and p, 30, what="the pod recreated")
        self.assertNotEqual(again["metadata"]["uid"], first)
        kubelet_sets(self.ns, "early", "Running")
        wait_for(phase_is(self.ns, "early", "Running"), 30, what="Running")
        kubectl("delete", "pod", "early", "-n", self.ns, "--grace-period=0", "--force")
        wait_for(phase_is(self.ns, "early", "Failed"), 30, what="Failed after a late delete")
        self.assertIn("deleted", sandbox_status(self.ns, "early")["message"])
        time.sleep(1)
        self.assertIsNone(get_pod(self.ns, "early"))  # not recreated once it had started

    def test_metrics(self):
        self.create("m")
        self.wait_pod("m")
        wait_for(lambda: self.operator.metric("moat_operator_pods_created_total") >= 1, 10,
                 what="metrics")
        text = self.operator.get("/metrics")[1]
        for name in ("moat_operator_reconciles_total", "moat_operator_workqueue_depth",
                     "moat_operator_reconcile_duration_seconds_bucket", "moat_sandboxes{",
                     "moat_sandboxes_by_runtime{"):
            self.assertIn(name, text)
        self.assertEqual(self.operator.get("/healthz")[0], 200)
        # kept by the informer's handlers, not by walking the cache: they still add up
        wait_for(lambda: self.operator.metric("moat_sandboxes") ==
                 len(get_json("sandboxes", "-A")["items"]) ==
                 self.operator.metric("moat_sandboxes_by_runtime"), 10,
                 what="moat_sandboxes to count every Sandbox once")


    def test_network_policies_applied_once_and_kept(self):
        """A fresh namespace with ten Sandboxes at once gets its two policies applied once
        each (the work queue's namespace key, not each worker); a policy deleted or edited
        by hand is back, as built, within seconds."""
        before = self.operator.metric("moat_operator_networkpolicy_applies_total")
        docs = "\n---\n".join(sandbox(f"np-{i}") for i in range(10))
        kubectl("create", "-n", self.ns, "-f", "-", stdin=docs)
        for i in range(10):
            self.wait_pod(f"np-{i}")
        names = {"moat-egress-none", "moat-egress-internet"}
        have = {p["metadata"]["name"] for p in get_json("networkpolicies", "-n", self.ns)["items"]}
        self.assertEqual(have, names)
        self.assertEqual(self.operator.metric("moat_operator_networkpolicy_applies_total") - before, 2)
        built = get_json("networkpolicy", "moat-egress-internet", "-n", self.ns)["spec"]
        kubectl("delete", "networkpolicy", "moat-egress-none", "-n", self.ns)
        wait_for(lambda: kubectl("get", "networkpolicy", "moat-egress-none", "-n", self.ns,
                                 check=False)[0] == 0, 10, what="the deleted policy back")
        kubectl("patch", "networkpolicy", "moat-egress-internet", "-n", self.ns, "--type=merge",
                "-p", json.dumps({"spec": {"egress": [{}]}}))  # allow everything
        wait_for(lambda: get_json("networkpolicy", "moat-egress-internet", "-n", self.ns)["spec"]
                 == built, 10, what="the edited policy as built again")
        # a field the operator never wrote (egress on the none policy, another manager's):
        # server-side apply would keep it; the policy is written whole
        none = get_json("networkpolicy", "moat-egress-none", "-n", self.ns)["spec"]
        self.assertNotIn("egress", none)
        kubectl("patch", "networkpolicy", "moat-egress-none", "-n", self.ns, "--type=merge",
                "-p", json.dumps({"spec": {"egress": [{}]}}))
        wait_for(lambda: get_json("networkpolicy", "moat-egress-none", "-n", self.ns)["spec"]
                 == none, 10, what="the none policy without the added egress")


class NonsenseTest(unittest.TestCase):
    """A Sandbox that slipped past the schema (written while the CRD had none) becomes
    Failed with a message; the operator never crashes."""

    def setUp(self):
        install_api()
        self.ns = create_namespace("moat-nonsense")
        self.operator = Operator()

    def tearDown(self):
        code = self.operator.stop()
        install_api()
        delete_namespace(self.ns)
        self.assertEqual(code, 0)

    def test_nonsense_sandbox_fails(self):
        crd = get_json("crd", "sandboxes.moat.dev")
        version = crd["spec"]["versions"][0]
        version["schema"] = {"openAPIV3Schema": {"type": "object",
                                                 "x-kubernetes-preserve-unknown-fields": True}}
        for k in ("metadata",):
            crd[k] = {"name": crd[k]["name"]}
        crd.pop("status", None)
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(crd))
        time.sleep(2)
        bad = [("noimage", {"command": ["x"]}),
               ("badiso", {"image": "x", "isolation": "Firecracker"}),
               ("badtimeout", {"image": "x", "timeout": "forever"}),
               ("bigcpu", {"image": "x", "resources": {"cpu": "512"}})]
        for name, spec in bad:
            doc = {"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox",
                   "metadata": {"name": name}, "spec": spec}
            kubectl("create", "-n", self.ns, "-f", "-", stdin=json.dumps(doc))
        for name, _ in bad:
            wait_for(phase_is(self.ns, name, "Failed"), 30, what=f"{name} Failed")
            st = sandbox_status(self.ns, name)
            self.assertIn("invalid spec", st["message"])
            self.assertIsNone(get_pod(self.ns, name))
        self.assertTrue(self.operator.ready())


class LeaderTest(unittest.TestCase):
    def setUp(self):
        install_api()
        self.ns = create_namespace("moat-leaders")
        self.node = FakeNode(f"fake-leader-{os.getpid()}", {**MANAGED})
        self.ops = []

    def tearDown(self):
        for o in self.ops:
            o.stop()
        self.node.delete()
        delete_namespace(self.ns)

    def test_only_the_leader_writes_and_a_follower_takes_over(self):
        a = Operator(leader_elect=True, identity=f"op-a-{os.getpid()}")
        self.ops.append(a)
        wait_for(lambda: a.metric("moat_operator_leader") == 1, 30, what="a leads")
        b = Operator(leader_elect=True, identity=f"op-b-{os.getpid()}")
        self.ops.append(b)
        kubectl("create", "-n", self.ns, "-f", "-", stdin=sandbox("one"))
        wait_for(lambda: get_pod(self.ns, "one"), 30, what="a's pod")
        time.sleep(2)
        self.assertEqual(b.metric("moat_operator_leader"), 0)
        self.assertEqual(b.metric("moat_operator_pods_created_total"), 0)
        self.assertEqual(b.metric("moat_operator_reconciles_total"), 0)
        killed = time.time()
        a.stop(kill=True)
        wait_for(lambda: b.metric("moat_operator_leader") == 1, 25, what="b takes over")
        self.assertLess(time.time() - killed, 15 + 2 + 5)
        kubectl("create", "-n", self.ns, "-f", "-", stdin=sandbox("two"))
        wait_for(lambda: get_pod(self.ns, "two"), 30, what="b's pod")
        self.assertEqual(b.metric("moat_operator_pods_created_total"), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
