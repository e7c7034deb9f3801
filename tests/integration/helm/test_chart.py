"""The Helm chart (helm/moat) against the real helm and the real local control plane:
lint and template with the default values, every preset and a GPU-pool example; every
rendered object applied (server-side dry run, then for real); install, upgrade with changed
values, uninstall; CRDs and Sandboxes survive an upgrade; the schema refuses bad values
naming them; the chart's RBAC by impersonation, and the admission policy refusing a node
agent's write to another node. The chart's copies of shared manifests are checked against
their sources (crds/, isolation/agent/)."""
import base64
import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from kube import get_json, kubectl, wait_for  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CHART = os.path.join(ROOT, "helm", "moat")
CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
HELM = os.environ.get("HELM", os.path.join(CACHE, "bin", "helm"))
KUBE_VERSION = "1.35.4"
OPERATOR = os.environ.get("MOAT_OPERATOR")  # the built moat-operator, to parse the config
PRESETS = sorted(glob.glob(os.path.join(CHART, "presets", "*.yaml")))
GPU_EXAMPLE = os.path.join(CHART, "examples", "gpu-pools.yaml")
VALUE_SETS = [None] + PRESETS + [GPU_EXAMPLE]
RELEASE = "moat"


def helm(*args, check=True, timeout=180):
    p = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=timeout)
    # helm warns on stderr for every symlink it follows (crds/, files/): expected
    if check and p.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def template(values=None, namespace="moat-system", extra=()):
    args = ["template", RELEASE, CHART, "-n", namespace, "--kube-version", KUBE_VERSION, *extra]
    if values:
        args += ["-f", values]
    return helm(*args).stdout


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(objs, kind, name=None):
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def strip(obj):
    """An object without the fields the chart adds (labels) or the server would."""
    o = json.loads(json.dumps(obj))
    o.get("metadata", {}).pop("labels", None)
    o.get("metadata", {}).pop("namespace", None)
    return o


def short(path):
    return os.path.relpath(path, ROOT) if path else "default values"


class ChartTemplateTest(unittest.TestCase):
    """Everything that needs helm only."""

    def test_lint_and_template_every_value_set(self):
        for values in VALUE_SETS:
            with self.subTest(values=short(values)):
                args = ["lint", CHART, "--strict", "--kube-version", KUBE_VERSION]
                if values:
                    args += ["-f", values]
                p = helm(*args)
                self.assertIn("0 chart(s) failed", p.stdout)
                objs = docs(template(values))
                kinds = {o["kind"] for o in objs}
                self.assertTrue({"Deployment", "DaemonSet", "ServiceAccount", "ClusterRole",
                                 "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap",
                                 "PodDisruptionBudget", "Service", "RuntimeClass",
                                 "ValidatingAdmissionPolicy",
                                 "ValidatingAdmissionPolicyBinding"} <= kinds, kinds)
                pools = yaml.safe_load(read(values))["nodePools"] if values else \
                    yaml.safe_load(read(os.path.join(CHART, "values.yaml")))["nodePools"]
                ds = by_kind(objs, "DaemonSet")
                self.assertEqual(sorted(d["metadata"]["name"] for d in ds),
                                 sorted([f"moat-node-{p['name']}" for p in pools] +
                                        [f"moat-agent-{p['name']}" for p in pools]))
                for pool in pools:
                    self.check_daemonset(by_kind(objs, "DaemonSet", f"moat-node-{pool['name']}")[0],
                                         by_kind(objs, "DaemonSet", f"moat-agent-{pool['name']}")[0],
                                         pool)
                self.check_operator(by_kind(objs, "Deployment", "moat-operator")[0])

    def check_daemonset(self, d, a, pool):
        spec = d["spec"]["template"]["spec"]
        aspec = a["spec"]["template"]["spec"]
        for sp in (spec, aspec):
            self.assertEqual(sp.get("nodeSelector", {}), pool.get("nodeSelector", {}))
            tol = sp["tolerations"]
            self.assertIn({"key": "nvidia.com/gpu", "operator": "Exists"}, tol)
            for t in pool.get("tolerations", []):
                self.assertIn(t, tol)
        install = spec["initContainers"][0]
        self.assertEqual(install["args"][0], "install")
        self.assertIn(f"--mode={pool['mode']}", install["args"])
        self.assertIn(f"--gpu-mode={pool['gpu']}", install["args"])
        self.assertEqual([c["name"] for c in spec["containers"]], ["idle"])
        # the agent: its own pod, on the pod network, without privileges
        self.assertNotIn("hostNetwork", aspec)
        self.assertNotIn("hostPID", aspec)
        agent = aspec["containers"][0]
        self.assertEqual(agent["name"], "agent")
        self.assertIn(f"--mode={pool['mode']}", agent["args"])
        sock = "/run/moat/cri.sock" if pool["mode"] == "shim" else "/run/containerd/containerd.sock"
        self.assertIn(f"--cri-endpoint=unix://{sock}", agent["args"])
        self.assertFalse(agent["securityContext"].get("privileged", False))
        self.assertEqual(agent["securityContext"]["capabilities"], {"drop": ["ALL"]})
        self.assertFalse(agent["securityContext"]["allowPrivilegeEscalation"])
        self.assertEqual([m["mountPath"] for m in agent["volumeMounts"] if not m.get("readOnly")], [])
        if pool["isolation"] == "gvisor":
            self.assertIn("--assume-hypervisor=none", install["args"])
            self.assertIn("--assume-hypervisor=none", agent["args"])
            self.assertIn(f"--gpu-mode={pool['gpu']}", agent["args"])
            self.assertNotIn("initContainers", aspec)
        else:
            # the probe: privileged, once, in an init container that hands the facts over
            probe = aspec["initContainers"][0]
            self.assertEqual(probe["name"], "probe")
            self.assertTrue(probe["securityContext"]["privileged"])
            self.assertIn("--write-facts=/run/moat-agent/facts.json", probe["args"])
            self.assertIn(f"--gpu-mode={pool['gpu']}", probe["args"])
            self.assertIn("--facts=/run/moat-agent/facts.json", agent["args"])
            self.assertNotIn("--assume-hypervisor=none", agent["args"])
        # host paths: only directories, each mounted in the installer under /host
        for v in spec["volumes"] + aspec["volumes"]:
            self.assertTrue("hostPath" in v or "emptyDir" in v, v)
            if "hostPath" in v:
                self.assertNotEqual(v["hostPath"]["path"], "/")
        self.assertEqual(spec["serviceAccountName"], "moat-agent")
        self.assertEqual(aspec["serviceAccountName"], "moat-agent")

    def check_operator(self, dep):
        self.assertEqual(dep["spec"]["replicas"], 2)
        pod = dep["spec"]["template"]["spec"]
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertIn("podAntiAffinity", pod["affinity"])
        c = pod["containers"][0]
        self.assertIn("--leader-elect=true", c["args"])
        sc = c["securityContext"]
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertIn("limits", c["resources"])

    def test_admission_policies_and_mark_key(self):
        objs = docs(template())
        names = {o["metadata"]["name"] for o in by_kind(objs, "ValidatingAdmissionPolicy")}
        bound = {o["spec"]["policyName"] for o in by_kind(objs, "ValidatingAdmissionPolicyBinding")
                 if o["spec"]["validationActions"] == ["Deny"]}
        required = ["moat-sandbox-secrets", "moat-sandbox-placement", "moat-pod-guard",
                    "moat-sandbox-pod-shape", "moat-agent-own-node"]
        self.assertEqual(names, set(required))
        self.assertEqual(bound, set(required))
        cfg = yaml.safe_load(by_kind(objs, "ConfigMap", "moat-operator")[0]["data"]["operator.yaml"])
        self.assertEqual(cfg["security"]["requiredPolicies"], required)
        self.assertEqual(cfg["placement"], {"nodeSelectorKeys": [], "tolerationKeys": []})
        # one authorizer check per validation, 16 of them: the CRD's cap
        secrets = by_kind(objs, "ValidatingAdmissionPolicy", "moat-sandbox-secrets")[0]
        checks = [v for v in secrets["spec"]["validations"] if "authorizer" in v["expression"]]
        self.assertEqual(len(checks), 16)
        self.assertTrue(all(v["expression"].count("check('get')") == 1 for v in checks))
        # the mark key: a Secret mounted into the operator, read-only
        key = by_kind(objs, "Secret", "moat-operator-mark")[0]
        self.assertGreaterEqual(len(base64.b64decode(key["data"]["key"])), 32)
        pod = by_kind(objs, "Deployment", "moat-operator")[0]["spec"]["template"]["spec"]
        self.assertIn({"name": "mark-key", "secret": {"secretName": "moat-operator-mark",
                                                      "defaultMode": 0o400}}, pod["volumes"])
        # the chart's own pod templates carry no Moat key the guard reserves
        for o in objs:
            if o["kind"] in ("Deployment", "DaemonSet"):
                meta = o["spec"]["template"]["metadata"]
                for k in list(meta.get("labels", {})) + list(meta.get("annotations", {})):
                    if k.startswith("moat.dev/"):
                        self.assertTrue(k == "moat.dev/node-pool" or k.startswith("moat.dev/pool-"), k)
        # the placement allow-lists reach the policy and the operator alike
        objs = docs(template(extra=["--set", "operator.config.placement.nodeSelectorKeys[0]=pool",
                                    "--set", "operator.config.placement.tolerationKeys[0]=*"]))
        placement = by_kind(objs, "ValidatingAdmissionPolicy", "moat-sandbox-placement")[0]
        variables = {v["name"]: v["expression"] for v in placement["spec"]["variables"]}
        self.assertEqual(variables["nodeKeys"], "['pool']")
        self.assertEqual(variables["tolerationKeys"], "['*']")
        cfg = yaml.safe_load(by_kind(objs, "ConfigMap", "moat-operator")[0]["data"]["operator.yaml"])
        self.assertEqual(cfg["placement"], {"nodeSelectorKeys": ["pool"], "tolerationKeys": ["*"]})
        # the cluster's ranges reach the NetworkPolicies (operator) and the wall (moat-cri)
        objs = docs(template(extra=["--set", "cluster.podCIDRs={10.244.0.0/16,2600:1f18::/56}",
                                    "--set", "cluster.serviceCIDRs={10.96.0.0/12}"]))
        cfg = yaml.safe_load(by_kind(objs, "ConfigMap", "moat-operator")[0]["data"]["operator.yaml"])
        self.assertEqual(cfg["network"]["clusterCIDRs"],
                         ["10.244.0.0/16", "2600:1f18::/56", "10.96.0.0/12"])
        self.assertEqual(cfg["network"]["dnsNamespace"], "kube-system")
        install = by_kind(objs, "DaemonSet")[0]["spec"]["template"]["spec"]["initContainers"][0]
        self.assertIn("--cluster-cidrs=10.244.0.0/16,2600:1f18::/56,10.96.0.0/12", install["args"])

    def test_gpu_example_pools(self):
        objs = docs(template(GPU_EXAMPLE))
        ds = {d["metadata"]["name"]: d for d in by_kind(objs, "DaemonSet")}
        self.assertEqual(set(ds), {"moat-node-cpu", "moat-node-gpu-container", "moat-node-gpu-vm",
                                   "moat-agent-cpu", "moat-agent-gpu-container",
                                   "moat-agent-gpu-vm"})
        agent = ds["moat-agent-gpu-vm"]["spec"]["template"]["spec"]["containers"][0]
        probe = ds["moat-agent-gpu-vm"]["spec"]["template"]["spec"]["initContainers"][0]
        self.assertEqual(agent["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"})
        self.assertEqual(agent["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "metrics"})
        self.assertIn("--metrics-addr=0.0.0.0:9468", agent["args"])
        self.assertIn("--gpu-mode=vm-passthrough", probe["args"])
        self.assertIn("--cri-endpoint=unix:///run/containerd/containerd.sock", agent["args"])

    def test_values_change_the_rendering(self):
        objs = docs(template(extra=[
            "--set", "image.registry=mirror.example.com:5000/moat", "--set", "image.tag=1.2.3",
            "--set", "image.pullSecrets[0]=regcred", "--set", "metrics.enabled=false",
            "--set", "runtimeClasses.names.gvisor=sandboxed",
            "--set", "operator.config.maximums.timeout=2h"]))
        dep = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]
        self.assertEqual(dep["containers"][0]["image"], "mirror.example.com:5000/moat/moat-operator:1.2.3")
        self.assertEqual(dep["imagePullSecrets"], [{"name": "regcred"}])
        ds = by_kind(objs, "DaemonSet")[0]["spec"]["template"]["spec"]
        self.assertEqual(ds["imagePullSecrets"], [{"name": "regcred"}])
        self.assertEqual(ds["containers"][0]["image"], "mirror.example.com:5000/moat/moat-node:1.2.3")
        self.assertEqual(by_kind(objs, "Service"), [])
        rcs = {r["metadata"]["name"]: r["handler"] for r in by_kind(objs, "RuntimeClass")}
        self.assertEqual(rcs, {"moat-auto": "moat-auto", "moat-vm": "moat-vm", "sandboxed": "moat-gvisor"})
        cfg = yaml.safe_load(by_kind(objs, "ConfigMap")[0]["data"]["operator.yaml"])
        self.assertEqual(cfg["runtimeClasses"]["gvisor"], "sandboxed")
        self.assertEqual(cfg["maximums"]["timeout"], "2h")
        sm = docs(template(extra=["--set", "metrics.serviceMonitor.enabled=true"]))
        self.assertEqual(len(by_kind(sm, "ServiceMonitor")), 1)
        un = docs(template(extra=["--set", "installer.uninstall=true"]))
        self.assertEqual([d["metadata"]["name"] for d in by_kind(un, "DaemonSet")],
                         ["moat-node-default"])  # no agent while uninstalling
        spec = by_kind(un, "DaemonSet")[0]["spec"]["template"]["spec"]
        self.assertEqual(spec["initContainers"][0]["args"][0], "uninstall")
        self.assertEqual([c["name"] for c in spec["containers"]], ["idle"])
        off = docs(template(extra=["--set", "installer.enabled=false"]))
        self.assertEqual([d["metadata"]["name"] for d in by_kind(off, "DaemonSet")],
                         ["moat-agent-default"])
        spec = by_kind(off, "DaemonSet")[0]["spec"]["template"]["spec"]
        self.assertNotIn("hostPID", spec)
        self.assertNotIn("hostNetwork", spec)
        self.assertEqual([v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v],
                         ["/run/moat", "/usr/local/bin", "/opt/kata"])

    def test_schema_refuses_bad_values_naming_them(self):
        cases = [
            ("nodePools:\n  - {name: gpu, mode: shimm, isolation: auto, gpu: none}\n", "/nodePools/0/mode"),
            ("nodePools:\n  - {name: Bad_Name, mode: shim, isolation: auto, gpu: none}\n", "/nodePools/0/name"),
            ("nodePools:\n  - {name: a, mode: shim, isolation: kata, gpu: none}\n", "/nodePools/0/isolation"),
            ("nodePools:\n  - {name: a, mode: shim, isolation: auto, gpu: amd}\n", "/nodePools/0/gpu"),
            ("nodePools: []\n", "/nodePools"),
            ("operator: {replicas: 0}\n", "/operator/replicas"),
            ("operator: {config: {maximums: {timeout: forever}}}\n", "/operator/config/maximums/timeout"),
            ("operator: {config: {defaults: {memory: lots}}}\n", "/operator/config/defaults/memory"),
            ("image: {pullPolicy: Sometimes}\n", "/image/pullPolicy"),
            ("metrics: {enabled: yes-please}\n", "/metrics/enabled"),
            ("host: {kubeletConfig: relative/path}\n", "/host/kubeletConfig"),
            ("cluster: {podCIDRs: [10.0.0.0]}\n", "/cluster/podCIDRs/0"),
            ("nodePool:\n  - {name: a}\n", "nodePool"),  # a misspelt key
        ]
        for text, where in cases:
            with self.subTest(where=where), tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                f.write(text)
                f.flush()
                for cmd in (["template", RELEASE, CHART], ["lint", CHART]):
                    p = helm(*cmd, "-f", f.name, "--kube-version", KUBE_VERSION, check=False)
                    self.assertNotEqual(p.returncode, 0, p.stdout)
                    self.assertIn("schema", p.stderr + p.stdout)
                    self.assertIn(where, p.stderr + p.stdout)
        # what a schema cannot say, the templates refuse
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write("nodePools:\n  - {name: a, mode: shim, isolation: auto, gpu: none}\n"
                    "  - {name: a, mode: config, isolation: auto, gpu: none}\n")
            f.flush()
            p = helm("template", RELEASE, CHART, "-f", f.name, "--kube-version", KUBE_VERSION, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn('two pools are named "a"', p.stderr)
        p = helm("template", RELEASE, CHART, "--kube-version", KUBE_VERSION, "--set",
                 "operator.leaderElect=false", check=False)
        self.assertIn("operator.leaderElect is false but operator.replicas is 2", p.stderr)

    def test_crds_and_runtimeclasses_are_the_same_bytes_as_crds(self):
        for inside, source in [("crds/moat.dev_sandboxes.yaml", "crds/moat.dev_sandboxes.yaml"),
                               ("files/runtimeclasses.yaml", "crds/runtimeclasses.yaml")]:
            path = os.path.join(CHART, inside)
            self.assertTrue(os.path.islink(path), f"{inside} should link to {source}")
            self.assertEqual(os.path.realpath(path), os.path.join(ROOT, source))
        # the only files in the chart's crds/ (Helm would install anything there)
        self.assertEqual(os.listdir(os.path.join(CHART, "crds")), ["moat.dev_sandboxes.yaml"])
        # helm package follows the links: the packaged files are crds/'s bytes
        with tempfile.TemporaryDirectory() as d:
            helm("package", CHART, "-d", d)
            (tgz,) = glob.glob(os.path.join(d, "moat-*.tgz"))
            with tarfile.open(tgz) as t:
                names = t.getnames()
                for inside, source in [("moat/crds/moat.dev_sandboxes.yaml", "crds/moat.dev_sandboxes.yaml"),
                                       ("moat/files/runtimeclasses.yaml", "crds/runtimeclasses.yaml")]:
                    self.assertIn(inside, names)
                    self.assertEqual(t.extractfile(inside).read(),
                                     read(os.path.join(ROOT, source), "rb"))
                self.assertFalse([n for n in names if n.startswith("moat/examples/")], names)
        # the rendered RuntimeClasses are crds/runtimeclasses.yaml's, labels aside
        source = {o["metadata"]["name"]: strip(o)
                  for o in docs(read(os.path.join(ROOT, "crds", "runtimeclasses.yaml")))}
        rendered = {o["metadata"]["name"]: strip(o) for o in by_kind(docs(template()), "RuntimeClass")}
        self.assertEqual(rendered, source)
        crd = [o for o in docs(template(extra=["--include-crds"]))
               if o["kind"] == "CustomResourceDefinition"]
        self.assertEqual(crd, docs(read(os.path.join(ROOT, "crds", "moat.dev_sandboxes.yaml"))))

    def test_agent_rbac_and_policy_equal_isolation_agent(self):
        """isolation/agent/*.yaml (the node agent's own manifests) and the chart say the
        same, for the namespace those files assume (moat-system)."""
        rendered = docs(template(namespace="moat-system"))
        ours = {(o["kind"], o["metadata"]["name"]): strip(o) for o in rendered}
        for f in ("rbac.yaml", "admission-policy.yaml"):
            for o in docs(read(os.path.join(ROOT, "isolation", "agent", f))):
                if o["kind"] == "Namespace":
                    continue  # helm install --create-namespace
                key = (o["kind"], o["metadata"]["name"])
                with self.subTest(object=key):
                    self.assertIn(key, ours)
                    self.assertEqual(ours[key], strip(o))

    @unittest.skipUnless(OPERATOR, "MOAT_OPERATOR not set")
    def test_operator_accepts_the_rendered_config(self):
        for values in VALUE_SETS:
            cm = by_kind(docs(template(values)), "ConfigMap", "moat-operator")[0]
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                f.write(cm["data"]["operator.yaml"])
                f.flush()
                # a kubeconfig that does not exist: the operator stops right after its config
                p = subprocess.run([OPERATOR, "--config", f.name, "--kubeconfig", "/nonexistent"],
                                   capture_output=True, text=True, timeout=30)
                self.assertNotEqual(p.returncode, 0)
                self.assertNotIn("configuration:", p.stderr, short(values))
                self.assertIn("API client", p.stderr)
        # and the same check sees a bad one
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write("maximums: {timeout: 99h}\nbogus: 1\n")
            f.flush()
            p = subprocess.run([OPERATOR, "--config", f.name, "--kubeconfig", "/nonexistent"],
                               capture_output=True, text=True, timeout=30)
            self.assertIn("configuration:", p.stderr)


# The local node, when a fixture has it up, must not run the chart's pods: its installer
# would reconfigure this machine's own containerd and kubelet, its operator would reconcile
# beside the one the test runs. Every pod template is pinned to a label no node has.
NOWHERE = {"moat.dev/helm-test": "no-such-node"}


def pinned(text):
    objs = docs(text)
    for o in objs:
        if o["kind"] in ("Deployment", "DaemonSet"):
            o["spec"]["template"]["spec"].setdefault("nodeSelector", {}).update(NOWHERE)
    return yaml.safe_dump_all(objs)


def pinned_values(values=None):
    """A values file (to pass after `values`) that pins the operator and every pool."""
    v = yaml.safe_load(read(values or os.path.join(CHART, "values.yaml")))
    pools = v.get("nodePools") or yaml.safe_load(read(os.path.join(CHART, "values.yaml")))["nodePools"]
    for p in pools:
        p["nodeSelector"] = {**p.get("nodeSelector", {}), **NOWHERE}
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump({"operator": {"nodeSelector": NOWHERE}, "nodePools": pools}, f)
    f.close()
    return f.name


def can_i(user, verb, resource, namespace=None, extra=()):
    """resource: TYPE, TYPE/SUBRESOURCE, or TYPE#NAME for one object."""
    resource, _, sub = resource.partition("/")
    resource = resource.replace("#", "/")
    args = ["auth", "can-i", verb, resource, "--as", user, *extra]
    args += [f"--subresource={sub}"] if sub else []
    args += ["-n", namespace] if namespace else []
    rc, out, _ = kubectl(*args, check=False)
    return out.strip() == "yes"


class ChartClusterTest(unittest.TestCase):
    """Against the real control plane (no node is needed: nothing here waits for pods)."""

    @classmethod
    def setUpClass(cls):
        cls.ns = f"moat-helm-{os.getpid()}"
        cls.sandbox_ns = f"moat-helm-sbx-{os.getpid()}"
        # Leftovers of other tests with the chart's cluster-wide names (RuntimeClasses and
        # the agent's RBAC and policy, applied from crds/ and isolation/agent/) would make
        # helm refuse to install: remove those not owned by a Helm release.
        cls.cluster_scoped = [(o["kind"], o["metadata"]["name"]) for o in docs(template())
                              if "namespace" not in o["metadata"]]
        for kind, name in cls.cluster_scoped:
            rc, out, _ = kubectl("get", kind, name, "-o", "json", check=False)
            if rc == 0 and "meta.helm.sh/release-name" not in json.loads(out)["metadata"].get("annotations", {}):
                print(f"removing {kind}/{name} left by an earlier test", file=sys.stderr)
                kubectl("delete", kind, name, "--wait=true")

    @classmethod
    def tearDownClass(cls):
        helm("uninstall", RELEASE, "-n", cls.ns, "--wait", check=False)
        for n in (cls.ns, cls.sandbox_ns):
            kubectl("delete", "namespace", n, "--ignore-not-found", "--wait=false", check=False)
        kubectl("delete", "node", "moat-helm-node-a", "moat-helm-node-b", "--ignore-not-found", check=False)

    def apply(self, text, *args):
        return kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=moat-helm-test",
                       *args, "-f", "-", stdin=text, timeout=120)

    def test_1_every_rendered_object_applies(self):
        kubectl("apply", "--server-side", "--force-conflicts",
                "-f", os.path.join(ROOT, "crds", "moat.dev_sandboxes.yaml"))
        kubectl("create", "namespace", self.ns)
        try:
            for values in VALUE_SETS:
                with self.subTest(values=short(values)):
                    text = pinned(template(values, namespace=self.ns))
                    out = self.apply(text, "--dry-run=server")[1]
                    self.assertEqual(out.count("serverside-applied (server dry run)"), len(docs(text)), out)
                    # for real, then gone again
                    self.apply(text)
                    for o in docs(text):
                        ns = ["-n", self.ns] if "namespace" in o["metadata"] else []
                        got = get_json(o["kind"], o["metadata"]["name"], *ns)
                        self.assertEqual(got["metadata"]["labels"]["app.kubernetes.io/part-of"], "moat")
                    kubectl("delete", "-f", "-", "--wait=true", stdin=text, timeout=120)
        finally:
            kubectl("delete", "namespace", self.ns, "--wait=true", check=False, timeout=120)

    def test_2_install_upgrade_uninstall(self):
        kubectl("create", "namespace", self.sandbox_ns)
        # install
        pin = pinned_values()
        self.addCleanup(os.unlink, pin)
        p = helm("install", RELEASE, CHART, "-n", self.ns, "--create-namespace", "-f", pin)
        self.assertIn("STATUS: deployed", p.stdout)
        self.assertIn("Run a first Sandbox", p.stdout)  # NOTES.txt
        self.assertIn("rollout status daemonset/moat-agent-default", p.stdout)
        self.assertIn("count/sandboxes.moat.dev", p.stdout)
        dep = get_json("deployment", "moat-operator", "-n", self.ns)
        self.assertEqual(dep["spec"]["replicas"], 2)
        get_json("daemonset", "moat-node-default", "-n", self.ns)
        get_json("daemonset", "moat-agent-default", "-n", self.ns)
        for kind, name in self.cluster_scoped:
            got = get_json(kind, name)
            self.assertEqual(got["metadata"]["annotations"]["meta.helm.sh/release-name"], RELEASE)
        crd_uid = get_json("crd", "sandboxes.moat.dev")["metadata"]["uid"]
        kubectl("apply", "-n", self.sandbox_ns, "-f", os.path.join(ROOT, "crds", "examples", "hello.yaml"))
        sbx_uid = get_json("sandbox", "hello", "-n", self.sandbox_ns)["metadata"]["uid"]

        self.check_rbac()
        self.check_admission_policy()
        self.check_operator_runs_with_its_rbac()

        # upgrade: more replicas, a changed config, one pool gone and two new ones
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump({"operator": {"replicas": 3, "config": {"workers": 8}, "nodeSelector": NOWHERE},
                            "runtimeClasses": {"names": {"gvisor": "moat-gvisor-2"}},
                            "nodePools": [
                                {"name": "gvisor", "nodeSelector": {"moat.dev/pool": "gvisor", **NOWHERE},
                                 "mode": "shim", "isolation": "gvisor", "gpu": "none"},
                                {"name": "gpu", "nodeSelector": {"moat.dev/pool": "gpu", **NOWHERE},
                                 "mode": "config", "isolation": "auto", "gpu": "container"}]}, f)
            f.flush()
            old_checksum = dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            helm("upgrade", RELEASE, CHART, "-n", self.ns, "-f", f.name)
        dep = get_json("deployment", "moat-operator", "-n", self.ns)
        self.assertEqual(dep["spec"]["replicas"], 3)
        self.assertNotEqual(dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"],
                            old_checksum)
        cfg = yaml.safe_load(get_json("configmap", "moat-operator", "-n", self.ns)["data"]["operator.yaml"])
        self.assertEqual(cfg["workers"], 8)
        self.assertEqual(cfg["runtimeClasses"]["gvisor"], "moat-gvisor-2")
        ds = {d["metadata"]["name"] for d in get_json("daemonsets", "-n", self.ns)["items"]}
        self.assertEqual(ds, {"moat-node-gvisor", "moat-node-gpu", "moat-agent-gvisor",
                              "moat-agent-gpu"})
        get_json("runtimeclass", "moat-gvisor-2")
        self.assertNotEqual(kubectl("get", "runtimeclass", "moat-gvisor", check=False)[0], 0)
        # the CRD and the Sandbox came through the upgrade
        self.assertEqual(get_json("crd", "sandboxes.moat.dev")["metadata"]["uid"], crd_uid)
        self.assertEqual(get_json("sandbox", "hello", "-n", self.sandbox_ns)["metadata"]["uid"], sbx_uid)

        # uninstall: every object of the release goes; the CRD and the Sandbox stay (Helm
        # never deletes crds/; helm/README.md says how to remove them)
        helm("uninstall", RELEASE, "-n", self.ns, "--wait")
        for kind, name in self.cluster_scoped:
            if kind == "RuntimeClass" and name == "moat-gvisor":
                name = "moat-gvisor-2"
            self.assertNotEqual(kubectl("get", kind, name, check=False)[0], 0, f"{kind}/{name} left")
        left = get_json("all,configmaps,serviceaccounts,roles,rolebindings,poddisruptionbudgets",
                        "-n", self.ns)["items"]
        left = [o for o in left if o["metadata"]["name"] not in ("kube-root-ca.crt", "default")]
        self.assertEqual(left, [], [o["kind"] + "/" + o["metadata"]["name"] for o in left])
        self.assertEqual(get_json("crd", "sandboxes.moat.dev")["metadata"]["uid"], crd_uid)
        self.assertEqual(get_json("sandbox", "hello", "-n", self.sandbox_ns)["metadata"]["uid"], sbx_uid)

    def check_rbac(self):
        op = f"system:serviceaccount:{self.ns}:moat-operator"
        agent = f"system:serviceaccount:{self.ns}:moat-agent"
        allowed = [
            (op, "list", "sandboxes.moat.dev", None), (op, "watch", "sandboxes.moat.dev", None),
            (op, "delete", "sandboxes.moat.dev", self.sandbox_ns),
            (op, "update", "sandboxes.moat.dev/status", self.sandbox_ns),
            (op, "create", "pods", self.sandbox_ns), (op, "watch", "pods", None),
            (op, "patch", "pods", self.sandbox_ns),  # an idle Session's activeDeadlineSeconds
            (op, "get", "customresourcedefinitions.apiextensions.k8s.io#sandboxes.moat.dev", None),
            (op, "list", "nodes", None), (op, "patch", "networkpolicies.networking.k8s.io", self.sandbox_ns),
            (op, "create", "events", self.sandbox_ns), (op, "patch", "events", self.sandbox_ns),
            (op, "get", "leases.coordination.k8s.io", self.ns),
            (op, "list", "validatingadmissionpolicies.admissionregistration.k8s.io", None),
            (op, "watch", "validatingadmissionpolicybindings.admissionregistration.k8s.io", None),
            (op, "update", "leases.coordination.k8s.io", self.ns),
            (op, "create", "leases.coordination.k8s.io", self.ns),
            (agent, "get", "nodes", None), (agent, "patch", "nodes", None),
            (agent, "patch", "pods", self.sandbox_ns),
        ]
        forbidden = [
            (op, "get", "secrets", self.sandbox_ns), (op, "list", "secrets", None),
            (op, "delete", "nodes", None), (op, "patch", "nodes", None),
            (op, "create", "sandboxes.moat.dev", self.sandbox_ns),
            (op, "update", "sandboxes.moat.dev", self.sandbox_ns),
            (op, "delete", "pods", self.sandbox_ns), (op, "create", "pods/exec", self.sandbox_ns),
            (op, "get", "customresourcedefinitions.apiextensions.k8s.io", None),
            (op, "update", "customresourcedefinitions.apiextensions.k8s.io#sandboxes.moat.dev", None),
            (op, "get", "customresourcedefinitions.apiextensions.k8s.io#other.example.com", None),
            (op, "update", "leases.coordination.k8s.io", "kube-system"),
            (op, "create", "clusterrolebindings", None), (op, "delete", "networkpolicies", self.sandbox_ns),
            (op, "delete", "validatingadmissionpolicybindings.admissionregistration.k8s.io", None),
            (op, "get", "secrets", "moat-system"),
            (agent, "get", "secrets", self.sandbox_ns), (agent, "delete", "nodes", None),
            # no read of Pods: RBAC could not keep it to the agent's node
            (agent, "list", "pods", None), (agent, "watch", "pods", None),
            (agent, "get", "pods", self.sandbox_ns),
            (agent, "list", "nodes", None), (agent, "create", "pods", self.sandbox_ns),
            (agent, "delete", "pods", self.sandbox_ns), (agent, "update", "nodes/status", None),
            (agent, "get", "sandboxes.moat.dev", self.sandbox_ns),
        ]
        for user, verb, res, ns in allowed:
            with self.subTest(user=user, allowed=f"{verb} {res}"):
                self.assertTrue(can_i(user, verb, res, ns))
        for user, verb, res, ns in forbidden:
            with self.subTest(user=user, forbidden=f"{verb} {res}"):
                self.assertFalse(can_i(user, verb, res, ns))

    def check_operator_runs_with_its_rbac(self):
        """The real moat-operator, with the chart's config and a token of the chart's
        ServiceAccount (nothing else), reconciles a Sandbox: its Pod, its NetworkPolicies,
        its status, an Event and the leader Lease, and nothing is forbidden on the way."""
        if not OPERATOR:
            self.skipTest("MOAT_OPERATOR not set")
        token = kubectl("create", "token", "moat-operator", "-n", self.ns, "--duration=10m")[1].strip()
        admin = yaml.safe_load(read(os.environ["KUBECONFIG"]))
        cluster = admin["clusters"][0]["cluster"]
        cm = get_json("configmap", "moat-operator", "-n", self.ns)["data"]["operator.yaml"]
        with tempfile.TemporaryDirectory() as d:
            kc, cfg = os.path.join(d, "kubeconfig"), os.path.join(d, "operator.yaml")
            with open(kc, "w") as f:
                yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "sa",
                                "clusters": [{"name": "c", "cluster": cluster}],
                                "users": [{"name": "sa", "user": {"token": token}}],
                                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}]}, f)
            # the mark key: the chart's Secret, which the Deployment mounts there
            key = os.path.join(d, "mark-key")
            with open(key, "wb") as f:
                f.write(base64.b64decode(get_json("secret", "moat-operator-mark", "-n", self.ns)
                                         ["data"]["key"]))
            self.assertIn("/etc/moat-operator/mark/key", cm)
            with open(cfg, "w") as f:
                f.write(cm.replace("/etc/moat-operator/mark/key", key))
            log = open(os.path.join(d, "operator.log"), "w+")
            proc = subprocess.Popen([OPERATOR, "--config", cfg, "--kubeconfig", kc,
                                     "--metrics-addr", "127.0.0.1:0", "--lease-namespace", self.ns,
                                     "--identity", "helm-test", "--log-level", "debug"],
                                    stdout=log, stderr=subprocess.STDOUT)
            try:
                ns = self.sandbox_ns
                wait_for(lambda: kubectl("get", "pod", "hello", "-n", ns, check=False)[0] == 0,
                         timeout=60, what="the operator's Pod for Sandbox hello")
                pod = get_json("pod", "hello", "-n", ns)
                self.assertEqual(pod["metadata"]["ownerReferences"][0]["kind"], "Sandbox")
                wait_for(lambda: get_json("sandbox", "hello", "-n", ns).get("status", {}).get("phase"),
                         timeout=60, what="the Sandbox's status")
                wait_for(lambda: get_json("networkpolicies", "-n", ns)["items"], timeout=60,
                         what="the operator's NetworkPolicies")
                wait_for(lambda: get_json("events", "-n", ns, "--field-selector",
                                          "involvedObject.kind=Sandbox")["items"],
                         timeout=60, what="an Event on the Sandbox")
                lease = get_json("lease", "moat-operator", "-n", self.ns)
                self.assertEqual(lease["spec"]["holderIdentity"], "helm-test")
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                log.seek(0)
                text = log.read()
                log.close()
                if sys.exc_info()[0]:
                    print("moat-operator's log:\n" + text[-4000:], file=sys.stderr)
            # RBAC refusals only: Sandboxes that other tests left in namespaces still being
            # deleted are refused with "forbidden" too ("unable to create new content in
            # namespace ... because it is being terminated"), whatever the permissions.
            refused = [line for line in text.lower().splitlines()
                       if "forbidden" in line and "is being terminated" not in line]
            self.assertEqual(refused, [], text[-3000:])

    def check_admission_policy(self):
        """RBAC lets the agent patch any Node; the chart's policy allows only its own."""
        for n in ("moat-helm-node-a", "moat-helm-node-b"):
            kubectl("apply", "-f", "-", stdin=json.dumps(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "labels": {"keep": "me"}}}))
        agent = ["--as", f"system:serviceaccount:{self.ns}:moat-agent",
                 "--as-user-extra", "authentication.kubernetes.io/node-name=moat-helm-node-a"]
        patch = ["patch", "node", "--type=merge", "-p"]

        def policy_ready():  # the API server compiles a new policy within a second or so
            rc, _, err = kubectl(*agent, *patch, '{"metadata":{"labels":{"moat.dev/managed":"true"}}}',
                                 "moat-helm-node-b", "--dry-run=server", check=False)
            return rc != 0 and "moat-agent-own-node" in err
        wait_for(policy_ready, timeout=30, what="the admission policy to refuse node b")
        rc, _, err = kubectl(*agent, *patch, '{"metadata":{"labels":{"moat.dev/managed":"true"}}}',
                             "moat-helm-node-b", check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("may not change Node 'moat-helm-node-b'", err)
        # its own node: Moat's label yes, anything else no
        kubectl(*agent, *patch, '{"metadata":{"labels":{"moat.dev/managed":"true"}}}', "moat-helm-node-a")
        self.assertEqual(get_json("node", "moat-helm-node-a")["metadata"]["labels"]["moat.dev/managed"], "true")
        rc, _, err = kubectl(*agent, *patch, '{"metadata":{"labels":{"keep":"not"}}}',
                             "moat-helm-node-a", check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("only Moat's node labels", err)
        # no node name in the credentials at all (a token not bound to a pod)
        rc, _, err = kubectl("--as", f"system:serviceaccount:{self.ns}:moat-agent", *patch,
                             '{"metadata":{"labels":{"moat.dev/managed":"true"}}}', "moat-helm-node-a",
                             check=False)
        # refused by the policy's own check, even with no userInfo.extra at all
        self.assertNotEqual(rc, 0)
        self.assertIn("moat-agent-own-node", err)
        self.assertIn("no node name in moat-agent's credentials", err)
        labels_b = get_json("node", "moat-helm-node-b")["metadata"]["labels"]
        self.assertEqual(labels_b["keep"], "me")
        self.assertNotIn("moat.dev/managed", labels_b)

if __name__ == "__main__":
    unittest.main(verbosity=2)
