"""The upgrade to Sessions, end to end (README: Sessions, Upgrades), on the local cluster with
Moat from its Helm chart: an install of the release before Sessions (its chart, its CRD and
its images, built here from the commit UPGRADE_FROM) with Sandboxes running is upgraded with
`helm upgrade` to this tree's chart, which (Helm never upgrades crds/) leaves the old CRD:

  - the new operator stays unready, its /readyz and its log naming the field the served CRD
    lacks, and takes no lease: the old operator keeps the Sandboxes going (a rolling update
    waits on the new Pod's readiness);
  - once this tree's CRD is applied the new operator is ready, the rollout completes, and
    the Sandboxes that ran across the upgrade end as they should (Succeeded, exit 0);
  - a Session then works.

It ends with this tree's chart installed, as the cluster fixture made it. Needs git (the old
tree is `git archive UPGRADE_FROM`) and the node's directories ($MOAT_CLUSTER_DIR); the old
tree and its images' release build are kept under $MOAT_CACHE/upgrade-from-<commit>
(minutes cold, seconds after).
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from kube import create_namespace, get_json, kubectl, wait_for  # noqa: E402

UPGRADE_FROM = "9cef2696bb8dcc284ecd06b84f27c637d325abc1"  # the last release before Sessions
OLD_TAG = "0.1.0-pre-sessions"
CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
BIN = os.path.join(CACHE, "bin")
HELM = os.path.join(BIN, "helm")
CLUSTER_DIR = os.environ.get("MOAT_CLUSTER_DIR", "/var/tmp/moat-cluster")
NODE_DIR = os.path.join(CLUSTER_DIR, "node")
VALUES = os.path.join(NODE_DIR, "moat-values.yaml")
NS = os.environ.get("MOAT_NAMESPACE", "moat-system")
CRD = os.path.join(ROOT, "crds", "moat.dev_sandboxes.yaml")


def run(*args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}: {p.stderr[-2000:]}")
    return p.stdout


def helm(*args):
    return run(HELM, "--kubeconfig", os.environ["KUBECONFIG"], *args, timeout=600)


def ctr_import(tar):
    run(os.path.join(BIN, "ctr"), "--address",
        os.path.join(NODE_DIR, "containerd", "containerd.sock"), "-n", "k8s.io",
        "images", "import", tar, timeout=300)


def operator_pods():
    return get_json("pods", "-n", NS, "-l", "app.kubernetes.io/name=moat-operator")["items"]


def pod_ready(p):
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in p.get("status", {}).get("conditions", []))


@unittest.skipUnless(os.path.exists(VALUES) and os.path.isdir(os.path.join(ROOT, ".git")),
                     "needs the local cluster's values and a git checkout")
class Upgrade(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="moat-upgrade-")
        # the old tree and its release build at a fixed place: the build is incremental
        # across runs (its CMake cache names its source directory)
        here = os.path.join(CACHE, f"upgrade-from-{UPGRADE_FROM[:12]}")
        cls.old = os.path.join(here, "src")
        if not os.path.exists(os.path.join(here, "src.done")):
            subprocess.run(["rm", "-rf", cls.old])
            os.makedirs(cls.old)
            archive = subprocess.Popen(["git", "-C", ROOT, "archive", UPGRADE_FROM],
                                       stdout=subprocess.PIPE)
            run("tar", "-x", "-C", cls.old, stdin=archive.stdout)
            if archive.wait() != 0:
                raise RuntimeError(f"git archive {UPGRADE_FROM} failed")
            open(os.path.join(here, "src.done"), "w").close()
        images = os.path.join(cls.tmp, "images")
        build = os.path.join(here, "build")
        run("bash", os.path.join(cls.old, "images", "build.sh"), "--out", images,
            "--build-dir", build, "--tag", OLD_TAG, timeout=1800)
        for name in ("moat-operator", "moat-node"):
            ctr_import(os.path.join(images, f"{name}.tar"))

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["rm", "-rf", cls.tmp])

    def test_upgrade_with_sandboxes_running(self):
        # the release before Sessions: its chart, its CRD, its images
        helm("uninstall", "moat", "-n", NS, "--wait", "--timeout", "120s")
        kubectl("apply", "-f", os.path.join(self.old, "crds", "moat.dev_sandboxes.yaml"))
        helm("install", "moat", os.path.join(self.old, "helm", "moat"), "-n", NS, "-f", VALUES,
             "--set", f"image.tag={OLD_TAG}", "--wait", "--timeout", "180s")
        ns = create_namespace("upgrade")
        try:
            self.upgrade(ns)
        finally:
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
            # whatever happened, this tree's chart and CRD, as the fixture left them
            kubectl("apply", "--server-side", "--force-conflicts", "-f", CRD, check=False)
            subprocess.run([HELM, "--kubeconfig", os.environ["KUBECONFIG"], "upgrade",
                            "--install", "moat", os.path.join(ROOT, "helm", "moat"), "-n", NS,
                            "-f", VALUES, "--wait", "--timeout", "180s"], capture_output=True)

    def upgrade(self, ns):
        sandboxes = [{"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox",
                      "metadata": {"name": f"across-{i}"},
                      "spec": {"image": "moat.local/busybox:1.35", "command": ["sh", "-c"],
                               "args": ["echo started; sleep 150; echo done"],
                               "timeout": "10m",
                               # two fit on a 2-core node beside two operators mid-rollout
                               "resources": {"cpu": "100m", "memory": "64Mi"}}}
                     for i in range(2)]
        kubectl("apply", "-n", ns, "-f", "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": sandboxes}))
        for s in sandboxes:
            wait_for(lambda s=s: get_json("sandbox", s["metadata"]["name"], "-n", ns)
                     .get("status", {}).get("phase") == "Running", 120, 1,
                     what="a Sandbox running under the old release")
        old_pod = operator_pods()[0]["metadata"]["name"]

        # this tree's chart; Helm leaves the old CRD
        helm("upgrade", "moat", os.path.join(ROOT, "helm", "moat"), "-n", NS, "-f", VALUES)
        new = wait_for(lambda: [p for p in operator_pods()
                                if p["metadata"]["name"] != old_pod and
                                p.get("status", {}).get("phase") == "Running"], 120, 1,
                       what="the new operator's pod")[0]["metadata"]["name"]
        wait_for(lambda: "the served Sandbox CRD lacks spec.mode" in
                 kubectl("logs", "-n", NS, new, check=False)[1], 60, 1,
                 what="the new operator to name the field its CRD lacks")
        ready = subprocess.run([os.environ.get("KUBECTL", "kubectl"), "get", "--raw",
                                f"/api/v1/namespaces/{NS}/pods/{new}:8080/proxy/readyz"],
                               capture_output=True, text=True)
        self.assertNotEqual(ready.returncode, 0, ready.stdout)  # /readyz: 503
        time.sleep(15)  # the new operator stays unready and the old one stays
        pods = {p["metadata"]["name"]: p for p in operator_pods()}
        self.assertIn(old_pod, pods)
        self.assertFalse(pod_ready(pods[new]))
        for s in sandboxes:
            st = get_json("sandbox", s["metadata"]["name"], "-n", ns)["status"]
            self.assertEqual(st["phase"], "Running", st)

        # the CRD of this tree: the new operator becomes ready, the rollout ends
        kubectl("apply", "--server-side", "--force-conflicts", "-f", CRD)
        wait_for(lambda: [p["metadata"]["name"] for p in operator_pods()] == [new] and
                 pod_ready(operator_pods()[0]), 180, 1, what="the rollout to this release")
        for s in sandboxes:
            st = wait_for(lambda s=s: (lambda st: st.get("phase") in
                                       ("Succeeded", "Failed", "Expired") and st)(
                get_json("sandbox", s["metadata"]["name"], "-n", ns).get("status", {})),
                180, 1, what="the Sandboxes that ran across the upgrade to end")
            self.assertEqual((st["phase"], st.get("exitCode")), ("Succeeded", 0), st)
            self.assertTrue(st["isolation"]["verified"], st)
        # and the new API works
        kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(
            {"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": "s"},
             "spec": {"image": "moat.local/busybox:1.35", "mode": "Session"}}))
        wait_for(lambda: get_json("sandbox", "s", "-n", ns).get("status", {}).get("phase")
                 == "Running", 120, 1, what="a Session after the upgrade")
        rc, out, err = kubectl("exec", "-n", ns, "s", "--", "/.moat/moat-init", "exec", "--",
                               "echo", "upgraded", check=False)
        self.assertEqual((rc, out), (0, "upgraded\n"), err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
