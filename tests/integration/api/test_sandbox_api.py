"""The Sandbox API against the real API server: the CRD's schema and CEL rules accept
the examples with defaults applied, refuse bad specs with a message naming the field,
show the printer columns, and keep spec and status apart."""
import glob
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from kube import create_namespace, delete_namespace, get_json, kubectl, wait_for  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CRDS = os.path.join(ROOT, "crds")


def expected_field(path):
    with open(path) as f:
        first = f.readline()
    assert first.startswith("# expect: "), f"{path}: first line must be '# expect: <field>'"
    return first[len("# expect: "):].strip()


class SandboxAPITest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        kubectl("apply", "--server-side", "--force-conflicts",
                "-f", os.path.join(CRDS, "moat.dev_sandboxes.yaml"))
        kubectl("wait", "--for=condition=Established", "--timeout=60s",
                "crd/sandboxes.moat.dev")
        # Discovery of a new CRD lags behind Established; wait until kubectl can use it.
        wait_for(lambda: kubectl("get", "sbx", "-A", check=False)[0] == 0, 30,
                 what="sandboxes in discovery")
        cls.ns = create_namespace("moat-api")

    @classmethod
    def tearDownClass(cls):
        delete_namespace(cls.ns)

    def create(self, path):
        return kubectl("create", "-n", self.ns, "-f", path, check=False)

    def test_examples_are_accepted_and_defaulted(self):
        examples = sorted(glob.glob(os.path.join(CRDS, "examples", "*.yaml")))
        self.assertGreaterEqual(len(examples), 4)
        for path in examples:
            with self.subTest(example=os.path.basename(path)):
                rc, _, err = self.create(path)
                self.assertEqual(rc, 0, err)
        minimal = get_json("sbx", "minimal", "-n", self.ns)["spec"]
        self.assertEqual(minimal["isolation"], "Auto")
        # the timeout's default depends on the mode: the operator's (status.limits), not the schema's
        self.assertNotIn("timeout", minimal)
        self.assertEqual(minimal["mode"], "Run")
        self.assertEqual(minimal["ttlAfterFinished"], "10m")
        self.assertEqual(minimal["network"], {"egress": "None"})
        self.assertEqual(minimal["resources"],
                         {"cpu": "1", "memory": "512Mi", "ephemeralStorage": "1Gi"})
        full = get_json("sbx", "full", "-n", self.ns)["spec"]
        self.assertEqual(full["isolation"], "GVisor")
        self.assertEqual(full["resources"]["cpu"], 2)  # an integer quantity stays an integer
        self.assertEqual(full["network"]["egress"], "Internet")
        self.assertEqual(full["env"][1]["valueFrom"]["secretKeyRef"]["key"], "token")
        session = get_json("sbx", "session", "-n", self.ns)["spec"]
        self.assertEqual((session["mode"], session["idleTimeout"]), ("Session", "10m"))
        gpu = get_json("sbx", "gpu-gvisor", "-n", self.ns)["spec"]["resources"]
        self.assertEqual(gpu["gpu"], {"count": 2})
        self.assertEqual(gpu["memory"], "512Mi")

    def test_invalid_specs_are_refused_naming_the_field(self):
        invalid = sorted(glob.glob(os.path.join(CRDS, "invalid", "*.yaml")))
        self.assertGreaterEqual(len(invalid), 10)
        for path in invalid:
            field = expected_field(path)
            name = "bad-" + os.path.basename(path)[:-len(".yaml")]
            with self.subTest(spec=os.path.basename(path)):
                rc, _, err = self.create(path)
                self.assertNotEqual(rc, 0, f"{path} was accepted")
                self.assertIn(field, err, f"the refusal of {path} does not name {field}")
                rc, _, _ = kubectl("get", "sbx", name, "-n", self.ns, check=False)
                self.assertNotEqual(rc, 0, f"{name} exists after a refused create")

    def test_printer_columns(self):
        kubectl("create", "-n", self.ns, "-f", os.path.join(CRDS, "examples", "hello.yaml"),
                check=False)
        out = kubectl("get", "sbx", "hello", "-n", self.ns)[1].splitlines()
        self.assertEqual(out[0].split(), ["NAME", "PHASE", "ISOLATION", "NODE", "AGE"])
        wide = kubectl("get", "sandboxes.moat.dev", "hello", "-n", self.ns, "-o", "wide")[1]
        self.assertEqual(wide.splitlines()[0].split(),
                         ["NAME", "PHASE", "ISOLATION", "NODE", "MODE", "LAST-ACTIVITY", "EXIT",
                          "AGE"])

    def test_status_subresource_leaves_spec_alone(self):
        doc = {"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox",
               "metadata": {"name": "status-split"},
               "spec": {"image": "moat.local/busybox:1.35"}}
        kubectl("create", "-n", self.ns, "-f", "-", stdin=json.dumps(doc))
        before = get_json("sbx", "status-split", "-n", self.ns)
        status = {"status": {
            "phase": "Running", "nodeName": "node-a", "podName": "status-split",
            "observedGeneration": before["metadata"]["generation"],
            "isolation": {"runtime": "gvisor", "handler": "runsc",
                          "reason": "no usable hypervisor", "verified": True},
            "conditions": [{"type": "Scheduled", "status": "True", "reason": "PodScheduled",
                            "message": "on node-a",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
            # through /status, a change to spec is ignored by the API server
            "spec": {"image": "attacker/other:1"}}
        kubectl("patch", "sbx", "status-split", "-n", self.ns, "--subresource=status",
                "--type=merge", "-p", json.dumps(status))
        after = get_json("sbx", "status-split", "-n", self.ns)
        self.assertEqual(after["spec"], before["spec"])
        self.assertEqual(after["metadata"]["generation"], before["metadata"]["generation"])
        self.assertEqual(after["status"]["isolation"]["runtime"], "gvisor")
        self.assertTrue(after["status"]["isolation"]["verified"])
        row = kubectl("get", "sbx", "status-split", "-n", self.ns, "--no-headers")[1].split()
        self.assertEqual(row[1:4], ["Running", "gvisor", "node-a"])

        # ... and the main resource ignores status.
        kubectl("patch", "sbx", "status-split", "-n", self.ns, "--type=merge",
                "-p", json.dumps({"status": {"phase": "Failed"}}))
        self.assertEqual(get_json("sbx", "status-split", "-n", self.ns)["status"]["phase"],
                         "Running")

        # A status the schema does not allow is refused, naming the field.
        rc, _, err = kubectl("patch", "sbx", "status-split", "-n", self.ns,
                             "--subresource=status", "--type=merge",
                             "-p", '{"status":{"phase":"Exploded"}}', check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("status.phase", err)
        rc, _, err = kubectl("patch", "sbx", "status-split", "-n", self.ns,
                             "--subresource=status", "--type=merge",
                             "-p", '{"status":{"isolation":{"runtime":"runc"}}}', check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("status.isolation.runtime", err)

    def test_spec_is_immutable(self):
        doc = {"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox",
               "metadata": {"name": "immutable"},
               "spec": {"image": "moat.local/busybox:1.35"}}
        kubectl("create", "-n", self.ns, "-f", "-", stdin=json.dumps(doc))
        rc, _, err = kubectl("patch", "sbx", "immutable", "-n", self.ns, "--type=merge",
                             "-p", '{"spec":{"isolation":"GVisor"}}', check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("spec is immutable", err)
        # labels and annotations may still change
        kubectl("label", "sbx", "immutable", "-n", self.ns, "team=evals")

    def test_short_name_and_category(self):
        names = kubectl("api-resources", "--api-group=moat.dev", "-o", "wide")[1]
        self.assertIn("sbx", names)
        self.assertIn("moat", names)
        rc, _, err = kubectl("get", "moat", "-n", self.ns, check=False)
        self.assertEqual(rc, 0, err)

    def test_runtimeclasses_apply(self):
        kubectl("apply", "-f", os.path.join(CRDS, "runtimeclasses.yaml"))
        for name in ("moat-auto", "moat-vm", "moat-gvisor"):
            rc = get_json("runtimeclass", name)
            self.assertEqual(rc["handler"], name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
