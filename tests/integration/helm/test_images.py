"""Moat's images, built here without a daemon (images/build.sh), imported into the local
node's containerd and run by kubelet under runc: `moat-operator --help` in the operator
image as the chart runs it (non-root, read-only root filesystem, no capabilities); the node
image's agent, installer and probe; the installer's payload (moat-cri) starting in a root
that holds nothing but what the image carries; and the chart itself on the local node with
these images: two operator replicas Ready with one leader, and the node agent labelling
its own Node through its RBAC and the admission policy, with its real pod-bound token."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from kube import create_namespace, delete_namespace, get_json, kubectl, wait_for  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
CLUSTER = os.environ.get("MOAT_CLUSTER_DIR", "/var/tmp/moat-cluster")
NODE = os.environ.get("MOAT_NODE_NAME", "moat-node")
SOCK = os.path.join(CLUSTER, "node", "containerd", "containerd.sock")
BUILD = os.environ.get("MOAT_IMAGES_BUILD")  # a release build dir (kept between runs)
TAG = "0.1.0"
HELM = os.environ.get("HELM", os.path.join(CACHE, "bin", "helm"))
CHART = os.path.join(ROOT, "helm", "moat")


def ctr(*args):
    return subprocess.run([os.path.join(CACHE, "bin", "ctr"), "--address", SOCK,
                           "--namespace", "k8s.io", *args],
                          capture_output=True, text=True, check=True).stdout


RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
              "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
              "seccompProfile": {"type": "RuntimeDefault"}}


class ImagesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="moat-images-")
        args = ["bash", os.path.join(ROOT, "images", "build.sh"), "--out", cls.out]
        if BUILD:
            args += ["--build-dir", BUILD]
        p = subprocess.run(args, capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            raise AssertionError(f"images/build.sh exited {p.returncode}: {p.stderr[-3000:]}")
        cls.build_log = p.stdout + p.stderr
        for name in ("moat-operator", "moat-node"):
            ctr("images", "import", os.path.join(cls.out, f"{name}.tar"))
        cls.ns = create_namespace("moat-images")

    @classmethod
    def tearDownClass(cls):
        delete_namespace(cls.ns)
        for name in ("moat-operator", "moat-node"):
            subprocess.run([os.path.join(CACHE, "bin", "ctr"), "--address", SOCK, "--namespace",
                            "k8s.io", "images", "rm", f"moat.local/{name}:{TAG}"],
                           capture_output=True, check=False)
        shutil.rmtree(cls.out, ignore_errors=True)

    def run_pod(self, name, image, command, args, security, user=None):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"},
                                            **({"runAsUser": user} if user is not None else {})},
                        "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                                        **({"command": command} if command else {}),
                                        "args": args, "securityContext": security}]}}
        kubectl("create", "-n", self.ns, "-f", "-", stdin=json.dumps(pod))

        def finished():
            p = get_json("pod", name, "-n", self.ns)
            return p if p["status"].get("phase") in ("Succeeded", "Failed") else None
        p = wait_for(finished, timeout=120, what=f"pod {name} to finish")
        logs = kubectl("logs", "-n", self.ns, name)[1]
        self.assertEqual(p["status"]["phase"], "Succeeded", logs)
        self.assertEqual(p["spec"]["nodeName"], NODE)
        cid = p["status"]["containerStatuses"][0]["containerID"][len("containerd://"):]
        info = json.loads(ctr("containers", "info", cid))
        self.assertEqual(info["Runtime"]["Name"], "io.containerd.runc.v2")
        return logs, info

    def image_config(self, name):
        with tarfile.open(os.path.join(self.out, f"{name}.tar")) as t:
            index = json.load(t.extractfile("index.json"))
            blob = lambda d: json.load(t.extractfile("blobs/sha256/" + d.split(":")[1]))  # noqa: E731
            manifest = blob(index["manifests"][0]["digest"])
            return index, blob(manifest["config"]["digest"])

    def test_operator_image_runs_help_under_runc(self):
        index, config = self.image_config("moat-operator")
        self.assertEqual(index["manifests"][0]["annotations"]["io.containerd.image.name"],
                         f"moat.local/moat-operator:{TAG}")
        self.assertEqual(config["config"]["User"], "65532:65532")
        self.assertEqual(config["config"]["Entrypoint"], ["/opt/moat/bin/moat-operator"])
        # as the chart runs it: the image's entrypoint, the restricted security context
        logs, info = self.run_pod("operator-help", f"moat.local/moat-operator:{TAG}", None,
                                  ["--help"], RESTRICTED)
        self.assertIn("Usage: moat-operator", logs)
        self.assertIn("--leader-elect", logs)
        self.assertEqual(info["Spec"]["process"]["user"]["uid"], 65532)
        self.assertTrue(info["Spec"]["root"].get("readonly"))

    def test_node_image_programs_run(self):
        _, config = self.image_config("moat-node")
        self.assertEqual(config["config"]["Entrypoint"], ["/opt/moat-node/bin/moat-agent"])
        image = f"moat.local/moat-node:{TAG}"
        root = dict(RESTRICTED, runAsNonRoot=False)
        logs, _ = self.run_pod("node-agent-help", image, None, ["--help"], root, user=0)
        self.assertIn("Usage: moat-agent", logs)
        logs, _ = self.run_pod("node-install-help", image, ["/opt/moat-node/bin/moat-install"],
                               ["--help"], root, user=0)
        self.assertIn("--mode shim|config", logs)
        # the probe in an unprivileged container: no /dev/kvm reaches it, and it says so
        logs, _ = self.run_pod("node-probe", image, ["/opt/moat-node/bin/moat-probe"],
                               ["--json", "--no-libvirt"], root, user=0)
        report = json.loads(logs)
        self.assertIn("hypervisor", report)
        self.assertIn("no /dev/kvm", json.dumps(report))
        logs, _ = self.run_pod("node-nsenter", image, ["/opt/moat-node/bin/nsenter"], ["--version"],
                               root, user=0)
        self.assertIn("nsenter from util-linux", logs)

    def test_installer_payload_starts_without_debian(self):
        """moat-cri as the installer puts it on a host (prefix /opt/moat), in a root that
        holds only the payload: no /lib, no /usr."""
        payload = os.path.join(self.out, "rootfs", "node", "opt", "moat-image")
        for b in ("moat-cri", "runsc", "containerd-shim-runsc-v1"):
            self.assertTrue(os.access(os.path.join(payload, "bin", b), os.X_OK), b)
        with tempfile.TemporaryDirectory() as scratch:
            shutil.copytree(payload, os.path.join(scratch, "opt", "moat"), symlinks=True)
            self.assertEqual(sorted(os.listdir(scratch)), ["opt"])
            p = subprocess.run(["chroot", scratch, "/opt/moat/bin/moat-cri", "--help"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("moat-cri", p.stdout + p.stderr)
        # gVisor's programs need nothing: static, no interpreter
        for b in ("runsc", "containerd-shim-runsc-v1"):
            out = subprocess.run(["file", "-L", os.path.join(payload, "bin", b)],
                                 capture_output=True, text=True, check=True).stdout
            self.assertIn("statically linked", out)

    def test_images_hold_no_sanitizer_runtime(self):
        for name in ("operator", "node"):
            for dirpath, _, files in os.walk(os.path.join(self.out, "rootfs", name)):
                for f in files:
                    self.assertFalse(f.startswith(("libasan", "libubsan")), os.path.join(dirpath, f))

    def test_chart_runs_on_the_local_node(self):
        """helm install with these images: the installer is left out (it would reconfigure
        this machine's containerd and kubelet; e2e/ runs it on the host instead) and the
        node pool is the local node, in config mode on gVisor."""
        ns = f"moat-helm-node-{os.getpid()}"
        for kind, name in [("RuntimeClass", "moat-auto"), ("RuntimeClass", "moat-vm"),
                           ("RuntimeClass", "moat-gvisor"), ("ClusterRole", "moat-agent"),
                           ("ClusterRoleBinding", "moat-agent"), ("ClusterRole", "moat-operator"),
                           ("ClusterRoleBinding", "moat-operator"),
                           ("ValidatingAdmissionPolicy", "moat-agent-own-node"),
                           ("ValidatingAdmissionPolicyBinding", "moat-agent-own-node")]:
            kubectl("delete", kind, name, "--ignore-not-found", "--wait=true")  # earlier tests' copies
        node_labels = ["moat.dev/managed-", "moat.dev/hypervisor-", "moat.dev/gpu-mode-",
                       "moat.dev/runtime.gvisor-", "moat.dev/runtime.kata-"]
        # an earlier test's agent labelled the node too: the labels checked below are this one's
        kubectl("label", "node", NODE, *node_labels, check=False)
        values = {"installer": {"enabled": False},
                  "host": {"containerdSocket": SOCK},
                  "agent": {"probeInterval": 5, "logLevel": "debug"},
                  "nodePools": [{"name": "local", "nodeSelector": {"kubernetes.io/hostname": NODE},
                                 "mode": "config", "isolation": "gvisor", "gpu": "none"}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            json.dump(values, f)
            f.flush()
            p = subprocess.run([HELM, "install", "moat", CHART, "-n", ns, "--create-namespace",
                                "-f", f.name, "--wait", "--timeout", "180s"],
                               capture_output=True, text=True, timeout=240)

        def cleanup():
            subprocess.run([HELM, "uninstall", "moat", "-n", ns, "--wait"], capture_output=True)
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
            kubectl("label", "node", NODE, *node_labels, check=False)
        self.addCleanup(cleanup)
        if p.returncode != 0:
            pods = kubectl("get", "pods", "-n", ns, "-o", "wide", check=False)[1]
            events = kubectl("get", "events", "-n", ns, check=False)[1]
            logs = kubectl("logs", "-n", ns, "-l", "app.kubernetes.io/name=moat-operator",
                           "--tail=20", "--all-containers", check=False)[1]
            self.fail(f"helm install --wait: {p.stderr}\n{pods}\n{events[-3000:]}\n{logs}")

        # helm waits on the ReplicaSet; the Deployment's own status follows it
        wait_for(lambda: get_json("deployment", "moat-operator", "-n", ns)["status"].get(
            "readyReplicas") == 2, 60, 0.5, what="the operator's 2 replicas ready")
        pods = get_json("pods", "-n", ns, "-l", "app.kubernetes.io/name=moat-operator")["items"]
        names = {q["metadata"]["name"] for q in pods}
        lease = wait_for(lambda: (kubectl("get", "lease", "moat-operator", "-n", ns, "-o", "json",
                                          check=False)[1] or None), timeout=60, what="the Lease")
        self.assertIn(json.loads(lease)["spec"]["holderIdentity"], names)
        cid = pods[0]["status"]["containerStatuses"][0]["containerID"][len("containerd://"):]
        info = json.loads(ctr("containers", "info", cid))
        self.assertEqual(info["Spec"]["process"]["user"]["uid"], 65532)
        self.assertTrue(info["Spec"]["root"].get("readonly"))
        self.assertEqual(info["Runtime"]["Name"], "io.containerd.runc.v2")

        # helm --wait counts a DaemonSet of one node ready with none ready (maxUnavailable 1):
        # the agent's own readiness (its probe) is waited for here
        def agent_ready():
            items = get_json("pods", "-n", ns, "-l", "app.kubernetes.io/name=moat-agent")["items"]
            return items if items and all(
                any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in q.get("status", {}).get("conditions", [])) for q in items) else None
        wait_for(agent_ready, timeout=120, what="the node agent to be ready")

        def labelled():
            labels = get_json("node", NODE)["metadata"].get("labels", {})
            return labels if labels.get("moat.dev/managed") == "true" else None
        labels = wait_for(labelled, timeout=90, what="the node agent to label its Node")
        self.assertEqual(labels.get("moat.dev/hypervisor"), "none")
        self.assertEqual(labels.get("moat.dev/runtime.gvisor"), "true")
        agent = get_json("pods", "-n", ns, "-l", "app.kubernetes.io/name=moat-agent")["items"]
        self.assertEqual(len(agent), 1)
        self.assertEqual(agent[0]["spec"]["nodeName"], NODE)
        self.assertFalse(agent[0]["spec"].get("hostNetwork", False))  # on the pod network
        log = kubectl("logs", "-n", ns, agent[0]["metadata"]["name"])[1]
        self.assertNotIn("denied", log)
        self.assertNotIn("forbidden", log.lower())


if __name__ == "__main__":
    unittest.main(verbosity=2)
