"""Tenants against the real API server with the chart's admission policies and RBAC, and the
real moat-operator running with nothing but its service account's token (README: Threat
model). Tenants act by impersonation:

  A  may create Sandboxes in the namespace (and get the Secrets "mine", s0..s15);
  B  may also create and patch Pods there.

Each test plays an attack of issue 13 as written and asserts that the API server refuses
it, naming the field, or that no status claims what did not happen. The Pods live on a fake
node (no kubelet; the test writes what kubelet and the node agent would)."""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "operator"))
from harness import (ROOT, FakeNode, Operator, condition, get_json, get_pod,  # noqa: E402
                     install_api, kubectl, sandbox, sandbox_status, wait_for)
from kube import raw_patch  # noqa: E402

CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
HELM = os.environ.get("HELM", os.path.join(CACHE, "bin", "helm"))
CHART = os.path.join(ROOT, "helm", "moat")
SYSTEM = "moat-system"
OPERATOR_USER = f"system:serviceaccount:{SYSTEM}:moat-operator"
AGENT_USER = f"system:serviceaccount:{SYSTEM}:moat-agent"
REPORT_KEY = "moat.dev/isolation-report"
A, B = "tenant-a", "tenant-b"
RUNC = f"moat-tenant-runc-{os.getpid()}"  # a RuntimeClass that is not Moat's
POLICIES = ["moat-sandbox-secrets", "moat-sandbox-placement", "moat-pod-guard",
            "moat-sandbox-pod-shape", "moat-agent-own-node"]
# What the chart installs that this suite needs: RBAC, the policies, the mark key.
TEMPLATES = ["serviceaccounts.yaml", "operator-rbac.yaml", "agent-rbac.yaml",
             "agent-admission-policy.yaml", "admission-sandbox-secrets.yaml",
             "admission-sandbox-placement.yaml", "admission-pods.yaml", "operator-mark-key.yaml",
             "operator-config.yaml"]


def render():
    args = [HELM, "template", "moat", CHART, "-n", SYSTEM, "--kube-version", "1.35.4"]
    for t in TEMPLATES:
        args += ["--show-only", f"templates/{t}"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"helm template: {p.stderr}")
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def as_user(user, *args, stdin=None, extra=()):
    """kubectl as user; returns (rc, stdout, stderr)."""
    return kubectl("--as", user, *extra, *args, stdin=stdin, check=False)


def pod_manifest(name, labels=None, annotations=None, owner=None, **spec):
    meta = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
    if owner:
        meta["ownerReferences"] = [owner]
    body = {"containers": [{"name": "sandbox", "image": "moat.local/busybox:1.35"}]}
    body.update(spec)
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body})


def sandbox_owner(ns, name):
    sbx = get_json("sandbox", name, "-n", ns)
    return {"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox", "name": name,
            "uid": sbx["metadata"]["uid"], "controller": True, "blockOwnerDeletion": False}


class TenantTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        install_api()
        cls.objects = render()
        text = yaml.safe_dump_all([o for o in cls.objects if o["kind"] != "ConfigMap"])
        kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=moat-tenant-test",
                "-f", "-", stdin=text)
        cls.ns = f"moat-tenant-{os.getpid()}"
        kubectl("create", "namespace", cls.ns)
        kubectl("apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": RUNC},
            "handler": "runc"}))
        cls.node = FakeNode(f"fake-tenant-{os.getpid()}",
                            {"moat.dev/managed": "true", "moat.dev/hypervisor": "none",
                             "moat.dev/runtime.gvisor": "true"})
        cls.grant()
        cls.operator = cls.start_operator()

    @classmethod
    def tearDownClass(cls):
        code = cls.operator.stop()
        kubectl("delete", "pods", "--all", "-n", cls.ns, "--grace-period=0", "--force",
                "--wait=false", check=False)
        kubectl("delete", "namespace", cls.ns, "--wait=false", check=False)
        cls.node.delete()
        kubectl("delete", "runtimeclass", RUNC, "--ignore-not-found", check=False)
        # the policies bind cluster-wide: no test after this one may meet them
        for o in cls.objects:
            if o["kind"] in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
                             "ClusterRole", "ClusterRoleBinding"):
                kubectl("delete", o["kind"], o["metadata"]["name"], "--ignore-not-found",
                        check=False)
        if code not in (0, None):
            raise AssertionError(f"the operator exited {code} on SIGTERM")

    @classmethod
    def grant(cls):
        readable = ["mine"] + [f"s{i}" for i in range(16)]
        secrets = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n},
                    "stringData": {"k": f"value of {n}"}} for n in readable + ["db"]]
        roles = [
            {"kind": "Role", "metadata": {"name": "sandboxes"},
             "rules": [{"apiGroups": ["moat.dev"], "resources": ["sandboxes"],
                        "verbs": ["create", "get", "list", "watch", "delete"]},
                       {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                        "resourceNames": readable}]},
            {"kind": "Role", "metadata": {"name": "pods"},
             "rules": [{"apiGroups": [""], "resources": ["pods", "pods/ephemeralcontainers",
                                                         "pods/status"],
                        "verbs": ["create", "get", "list", "watch", "patch", "update",
                                  "delete"]}]},
        ]
        bindings = [("sandboxes", A), ("sandboxes", B), ("pods", B)]
        docs = secrets + [{"apiVersion": "rbac.authorization.k8s.io/v1", **r} for r in roles]
        docs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "admin"}})
        for role, user in bindings:
            docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                         "metadata": {"name": f"{role}-{user}"},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                     "name": role},
                         "subjects": [{"kind": "User", "name": user}]})
        kubectl("apply", "-n", cls.ns, "-f", "-", stdin=yaml.safe_dump_all(docs))

    @classmethod
    def start_operator(cls):
        """The real operator with the chart's configuration, its service account's token
        and the chart's mark key: what it may do here is what the chart grants it."""
        token = kubectl("create", "token", "moat-operator", "-n", SYSTEM,
                        "--duration=1h")[1].strip()
        with open(os.environ["KUBECONFIG"]) as f:
            admin = yaml.safe_load(f)
        cls.dir = tempfile.mkdtemp(prefix="moat-tenant-")
        kc = os.path.join(cls.dir, "kubeconfig")
        with open(kc, "w") as f:
            yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "sa",
                            "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
                            "users": [{"name": "sa", "user": {"token": token}}],
                            "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}]},
                           f)
        secret = get_json("secret", "moat-operator-mark", "-n", SYSTEM)
        key = os.path.join(cls.dir, "mark-key")
        with open(key, "wb") as f:
            import base64
            f.write(base64.b64decode(secret["data"]["key"]))
        cm = next(o for o in cls.objects if o["kind"] == "ConfigMap")
        config = cm["data"]["operator.yaml"].replace("/etc/moat-operator/mark/key", key)
        return Operator(config=config, security="", kubeconfig=kc)

    # ---- helpers ----

    def create_as(self, user, name, **spec):
        return as_user(user, "create", "-n", self.ns, "-f", "-", stdin=sandbox(name, **spec))

    def refused(self, result, *needles):
        rc, out, err = result
        self.assertNotEqual(rc, 0, f"admitted: {out}")
        for n in needles:
            self.assertIn(n, err)

    def admitted(self, result):
        rc, out, err = result
        self.assertEqual(rc, 0, err)

    def running_sandbox(self, name, **spec):
        """A Sandbox of A's, its Pod made by the operator and bound to the fake node."""
        self.admitted(self.create_as(A, name, **spec))
        pod = wait_for(lambda: get_pod(self.ns, name), 60, what=f"the operator's pod {name}")
        wait_for(lambda: (get_pod(self.ns, name) or {}).get("spec", {}).get("nodeName"), 60,
                 what=f"pod {name} scheduled")
        return pod

    # ---- 1: Secrets ----

    def test_1_sandbox_cannot_name_a_secret_its_creator_may_not_read(self):
        env = lambda name, optional=None: {  # noqa: E731
            "name": "TOKEN", "valueFrom": {"secretKeyRef": {
                "name": name, "key": "k", **({"optional": optional} if optional is not None else {})}}}
        for user in (A, B):
            with self.subTest(user=user):
                self.refused(self.create_as(user, "steal-env", env=[env("db")]),
                             "spec.env[TOKEN].valueFrom.secretKeyRef.name", 'Secret "db"',
                             f"read by {user}", "moat-sandbox-secrets")
                self.refused(self.create_as(user, "steal-optional", env=[env("db", True)]),
                             'Secret "db"')
                self.refused(self.create_as(user, "steal-pull", imagePullSecrets=[{"name": "db"}]),
                             "spec.imagePullSecrets[db].name", 'Secret "db"')
        # its own Secret: admitted, and the Pod carries the reference
        self.admitted(self.create_as(A, "own", env=[env("mine", False)]))
        pod = wait_for(lambda: get_pod(self.ns, "own"), 60, what="pod own")
        ref = pod["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
        self.assertEqual(ref["name"], "mine")
        # at the cap: 16 distinct Secrets, each checked (the 16th check is the last one)
        many = [{"name": f"V{i}", "valueFrom": {"secretKeyRef": {"name": f"s{i}", "key": "k"}}}
                for i in range(16)]
        self.admitted(self.create_as(A, "at-cap", env=many))
        many[15]["valueFrom"]["secretKeyRef"]["name"] = "db"
        self.refused(self.create_as(A, "cap-last-unreadable", env=many),
                     "spec.env[V15].valueFrom.secretKeyRef.name", 'Secret "db"')
        many[15]["valueFrom"]["secretKeyRef"]["name"] = "s15"
        self.refused(self.create_as(A, "over-cap", env=many, imagePullSecrets=[{"name": "mine"}]),
                     "more than 16 distinct Secrets")

    # ---- 2 and 3: Pods that claim a Sandbox, and the operator's own Pods ----

    def test_2_tenant_cannot_forge_a_sandbox_pod(self):
        forged_report = json.dumps({"runtime": "kata", "handler": "kata-clh",
                                    "reason": "kvm usable", "verified": True})
        # the Pod of the attack as played: Moat's label, a forged report and decisions
        self.refused(as_user(B, "create", "-n", self.ns, "-f", "-", stdin=pod_manifest(
            "forged", labels={"moat.dev/sandbox": "forged"},
            annotations={"moat.dev/isolation-report": forged_report,
                         "moat.dev/decision-runtime": "kata"})),
            'metadata.labels["moat.dev/sandbox"]', "moat-pod-guard")
        self.refused(as_user(B, "create", "-n", self.ns, "-f", "-", stdin=pod_manifest(
            "forged", annotations={"moat.dev/decision-runtime": "kata",
                                   "moat.dev/decision-handler": "kata-clh"})),
            "metadata.annotations[\"moat.dev/decision-")
        # a plain Pod, then the Sandbox, then the uid patched in
        self.admitted(as_user(B, "create", "-n", self.ns, "-f", "-", stdin=pod_manifest("forged")))
        self.admitted(self.create_as(B, "forged", isolation="VM"))
        owner = sandbox_owner(self.ns, "forged")
        self.refused(as_user(B, "patch", "pod", "forged", "-n", self.ns, "--type=merge", "-p",
                             json.dumps({"metadata": {"ownerReferences": [owner]}})),
                     "only moat-operator may make a Pod owned by a Sandbox")
        self.refused(as_user(B, "create", "-n", self.ns, "-f", "-", stdin=pod_manifest(
            "forged-2", owner=owner)), "only moat-operator may make a Pod owned by a Sandbox")
        st = sandbox_status(self.ns, "forged") or {}
        self.assertNotEqual((condition(st, "Isolated") or {}).get("status"), "True", st)

    def test_3_operator_pods_are_the_operators(self):
        self.running_sandbox("victim", isolation="GVisor")
        patch = lambda body, *extra, kind="merge": as_user(  # noqa: E731
            B, "patch", "pod", "victim", "-n", self.ns, f"--type={kind}", "-p",
            json.dumps(body), *extra)
        report = json.dumps({"runtime": "gvisor", "handler": "runsc", "reason": "forged",
                             "verified": True})
        self.refused(patch({"metadata": {"annotations": {"moat.dev/isolation-report": report}}}),
                     'metadata.annotations["moat.dev/isolation-report"]')
        self.refused(patch({"metadata": {"labels": {"moat.dev/egress": "internet"}}}),
                     'metadata.labels["moat.dev/egress"]')
        # ... nor through the status subresource (which keeps metadata changes)
        self.refused(patch({"metadata": {"annotations": {"moat.dev/isolation-report": report}}},
                           "--subresource=status"),
                     'metadata.annotations["moat.dev/isolation-report"]')
        self.refused(patch({"metadata": {"labels": {"moat.dev/egress": "internet"}}},
                           "--subresource=status"), 'metadata.labels["moat.dev/egress"]')
        self.refused(patch({"metadata": {"annotations": {"moat.dev/network": "internet"}}}),
                     'metadata.annotations["moat.dev/network"]')
        self.refused(patch({"metadata": {"ownerReferences": None}}),
                     "only moat-operator may change its owner references")
        self.refused(patch({"spec": {"containers": [{"name": "sandbox", "image": "evil"}]}},
                           kind="strategic"),
                     "is a Sandbox's; only moat-operator may change it")
        self.refused(patch({"spec": {"ephemeralContainers": [
            {"name": "debug", "image": "moat.local/busybox:1.35"}]}},
            "--subresource=ephemeralcontainers", kind="strategic"), "(ephemeralcontainers)")
        # ... nor its status, whose phase, exit code and start time the operator takes: a
        # forged "Succeeded", or a start in 2099 that would keep a session from going idle
        self.refused(patch({"status": {"phase": "Succeeded", "startTime": "2099-01-01T00:00:00Z"}},
                           "--subresource=status"),
                     "status: Pod", "only its node's kubelet")
        # the chart's exempt keys are not exempt on a Sandbox's Pod (they would break its mark)
        self.refused(patch({"metadata": {"labels": {"moat.dev/node-pool": "x"}}}),
                     'metadata.labels["moat.dev/node-pool"]')
        # ... and still are on a Pod of the tenant's own
        self.admitted(as_user(B, "create", "--dry-run=server", "-n", self.ns, "-f", "-",
                              stdin=pod_manifest("plain", labels={"moat.dev/node-pool": "x"})))
        # a label of the tenant's own is its business
        self.admitted(patch({"metadata": {"labels": {"team": "a"}}}))
        # the node agent of the Pod's node may write its report, and then status says it
        # (patched straight away, as the agent does: it may patch Pods but not read them)
        node_extra = {"authentication.kubernetes.io/node-name": self.node.name}
        honest = json.dumps({"runtime": "gvisor", "handler": "runsc",
                             "reason": "no usable hypervisor", "verified": True})
        self.admitted(raw_patch(f"/api/v1/namespaces/{self.ns}/pods/victim",
                                {"metadata": {"annotations": {REPORT_KEY: honest}}},
                                user=AGENT_USER, extra=node_extra))
        wait_for(lambda: (condition(sandbox_status(self.ns, "victim"), "Isolated") or {})
                 .get("status") == "True", 30, what="Isolated True from the agent's report")
        # ... but not Moat's other keys
        self.refused(raw_patch(f"/api/v1/namespaces/{self.ns}/pods/victim",
                               {"metadata": {"annotations": {"moat.dev/network": "internet"}}},
                               user=AGENT_USER, extra=node_extra),
                     "moat.dev/")
        # the kubelet of the Pod's node writes its status (straight away, as kubelet does:
        # a node may not read pods/status)
        self.admitted(raw_patch(f"/api/v1/namespaces/{self.ns}/pods/victim/status",
                                {"status": {"message": "written by its node's kubelet"}},
                                user=f"system:node:{self.node.name}", group="system:nodes"))
        self.assertEqual(get_pod(self.ns, "victim")["status"].get("message"),
                         "written by its node's kubelet")

    def test_3b_session_activity_is_the_agents_and_the_deadline_the_operators(self):
        """B would keep a Session alive (or end another's) by writing its activity, its idle
        limit or its Pod's deadline: each is refused; the agent of the Pod's node may write
        the activity, the operator's status takes it."""
        pod = self.running_sandbox("sess", mode="Session", idleTimeout="1h", isolation="GVisor")
        self.assertEqual(pod["metadata"]["annotations"]["moat.dev/idle-timeout"], "3600")
        self.assertEqual([v["name"] for v in pod["spec"]["volumes"]], ["moat-init"])
        patch = lambda body, *extra, kind="merge": as_user(  # noqa: E731
            B, "patch", "pod", "sess", "-n", self.ns, f"--type={kind}", "-p",
            json.dumps(body), *extra)
        later = "2099-01-01T00:00:00Z"
        self.refused(patch({"metadata": {"annotations": {"moat.dev/last-activity": later}}}),
                     'metadata.annotations["moat.dev/last-activity"]')
        self.refused(patch({"metadata": {"annotations": {"moat.dev/last-activity": later}}},
                           "--subresource=status"),
                     'metadata.annotations["moat.dev/last-activity"]')
        self.refused(patch({"metadata": {"annotations": {"moat.dev/idle-timeout": "86400"}}}),
                     'metadata.annotations["moat.dev/idle-timeout"]')
        self.refused(patch({"spec": {"activeDeadlineSeconds": 1}}),
                     "is a Sandbox's; only moat-operator may change it")
        # the agent of another node may not write it; the Pod's node's agent may
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
        body = {"metadata": {"annotations": {"moat.dev/last-activity": when}}}
        self.refused(raw_patch(f"/api/v1/namespaces/{self.ns}/pods/sess", body, user=AGENT_USER,
                               extra={"authentication.kubernetes.io/node-name": "elsewhere"}),
                     "elsewhere")
        self.admitted(raw_patch(f"/api/v1/namespaces/{self.ns}/pods/sess", body,
                                user=AGENT_USER,
                                extra={"authentication.kubernetes.io/node-name": self.node.name}))
        # ... and nothing else, not even on a Session
        self.refused(raw_patch(f"/api/v1/namespaces/{self.ns}/pods/sess",
                               {"metadata": {"annotations": {"moat.dev/idle-timeout": "86400"}}},
                               user=AGENT_USER,
                               extra={"authentication.kubernetes.io/node-name": self.node.name}),
                     "moat.dev/")

    def test_4_without_the_guard_the_mark_holds(self):
        """The attack as played, with moat-pod-guard's binding deleted (a cluster whose
        policies are gone): the operator is not Ready, naming it, and the forged Pod never
        makes the Sandbox Isolated: its mark is missing."""
        kubectl("delete", "validatingadmissionpolicybinding", "moat-pod-guard")
        try:
            wait_for(lambda: self.operator.get("/readyz")[0] == 503 and
                     "ValidatingAdmissionPolicyBinding moat-pod-guard" in self.operator.get("/readyz")[1],
                     30, what="/readyz to name the missing binding")
            # the API server's policy cache lets go of the binding a moment later
            probe = pod_manifest("probe", labels={"moat.dev/sandbox": "probe"})
            wait_for(lambda: as_user(B, "create", "--dry-run=server", "-n", self.ns, "-f", "-",
                                     stdin=probe)[0] == 0, 30, what="the guard to be gone")
            # VM with no hypervisor anywhere: Pending, no Pod, while B prepares its own
            self.admitted(self.create_as(B, "forge-vm", isolation="VM"))
            wait_for(lambda: (condition(sandbox_status(self.ns, "forge-vm"), "Scheduled") or {})
                     .get("reason") == "NoHypervisor", 30, what="NoHypervisor")
            owner = sandbox_owner(self.ns, "forge-vm")
            report = json.dumps({"runtime": "kata", "handler": "kata-clh",
                                 "reason": "kvm usable", "verified": True})
            self.admitted(as_user(B, "create", "-n", self.ns, "-f", "-", stdin=pod_manifest(
                "forge-vm", owner=owner,
                labels={"moat.dev/sandbox": "forge-vm", "moat.dev/egress": "none"},
                annotations={"moat.dev/isolation-report": report,
                             "moat.dev/decision-runtime": "kata",
                             "moat.dev/decision-handler": "kata-clh"},
                runtimeClassName="moat-vm")))
            # a node with a hypervisor appears: the operator looks at the Sandbox again
            kubectl("label", "node", self.node.name, "moat.dev/hypervisor=kvm", "--overwrite")
            seen = []

            def failed():
                st = sandbox_status(self.ns, "forge-vm") or {}
                seen.append(st)
                return st.get("phase") == "Failed"
            wait_for(failed, 30, what="the Sandbox to fail")
            st = seen[-1]
            self.assertEqual(condition(st, "Isolated")["reason"], "UntrustedPod")
            self.assertIn("moat-operator's mark", st["message"])
            self.assertFalse(st["isolation"]["verified"])
            self.assertEqual(st["isolation"]["runtime"], "")
            self.assertFalse([s for s in seen if (condition(s, "Isolated") or {}).get("status") == "True"])
            wait_for(lambda: get_json("events", "-n", self.ns, "--field-selector",
                                      "involvedObject.name=forge-vm,reason=UntrustedPod")["items"],
                     30, what="the UntrustedPod event")
            self.assertGreaterEqual(self.operator.metric(
                'moat_operator_isolation_alarms_total{reason="UntrustedPod"}'), 1)
        finally:
            kubectl("label", "node", self.node.name, "moat.dev/hypervisor=none", "--overwrite",
                    check=False)
            guard = next(o for o in self.objects if o["kind"] == "ValidatingAdmissionPolicyBinding"
                         and o["metadata"]["name"] == "moat-pod-guard")
            kubectl("apply", "-f", "-", stdin=json.dumps(guard))
        wait_for(lambda: self.operator.get("/readyz")[0] == 200, 30, what="/readyz again")

    # ---- 4: what the operator's service account may create ----

    def test_5_operator_account_creates_only_sandbox_pods(self):
        good = {"runtimeClassName": "moat-gvisor", "automountServiceAccountToken": False,
                "containers": [{"name": "sandbox", "image": "moat.local/busybox:1.35",
                                "securityContext": {"allowPrivilegeEscalation": False}}]}
        labels = {"moat.dev/sandbox": "shape"}

        def create(ns=None, **spec):
            return as_user(OPERATOR_USER, "create", "--dry-run=server", "-n", ns or self.ns,
                           "-f", "-", stdin=pod_manifest("shape", labels=labels, **{**good, **spec}))
        self.admitted(create())
        self.refused(create(volumes=[{"name": "host", "hostPath": {"path": "/"}}]),
                     "spec.volumes[host]", "moat-sandbox-pod-shape")
        # Moat's own volume name is not enough: its kind (an image volume) and its mounts
        # (read-only) too
        helper = {"name": "moat-init", "image": {"reference": "moat.local/moat-node:0.1.0"}}
        mounted = lambda ro: [{"name": "sandbox", "image": "moat.local/busybox:1.35",  # noqa: E731
                               "securityContext": {"allowPrivilegeEscalation": False},
                               "volumeMounts": [{"name": "moat-init", "mountPath": "/.moat",
                                                 "readOnly": ro}]}]
        self.admitted(create(volumes=[helper], containers=mounted(True)))
        self.refused(create(volumes=[{"name": "moat-init", "hostPath": {"path": "/"}}]),
                     "spec.volumes[moat-init]: a sandbox Pod's volumes are image volumes")
        self.refused(create(volumes=[helper], containers=mounted(False)), "mounted read-only")
        self.refused(create(hostNetwork=True), "shares no host namespace")
        self.refused(create(hostPID=True), "shares no host namespace")
        self.refused(create(runtimeClassName=RUNC), f'spec.runtimeClassName: "{RUNC}"')
        self.refused(create(runtimeClassName=None), "spec.runtimeClassName")
        self.refused(create(automountServiceAccountToken=True), "no service-account token")
        self.refused(create(serviceAccountName="admin"), "default service account")
        self.refused(create(containers=[{"name": "sandbox", "image": "x",
                                         "securityContext": {"privileged": True}}]),
                     "not privileged")
        self.refused(create(containers=[{"name": "sandbox", "image": "x"}]),
                     "cannot escalate")
        self.refused(create(containers=[{"name": "sandbox", "image": "x",
                                         "ports": [{"containerPort": 80, "hostPort": 80}]}]),
                     "bind no host port")
        self.refused(create(initContainers=[{"name": "i", "image": "x"}]),
                     "no init or ephemeral containers")
        self.refused(create(ns="kube-system"), "may not create Pods in namespace kube-system")
        self.refused(create(ns=SYSTEM), f"may not create Pods in namespace {SYSTEM}")

    # ---- 5: placement ----

    def test_6_placement_is_the_clusters(self):
        self.refused(self.create_as(A, "aim", nodeSelector={"kubernetes.io/hostname": "victim"},
                                    tolerations=[{"operator": "Exists"}]),
                     'spec.nodeSelector["kubernetes.io/hostname"]', "moat-sandbox-placement")
        self.refused(self.create_as(A, "aim", tolerations=[{"operator": "Exists"}]),
                     "an empty key tolerates every taint")
        self.refused(self.create_as(A, "aim", tolerations=[
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]),
            'key "node.kubernetes.io/unschedulable" not allowed')
        self.admitted(self.create_as(A, "moat-keys", nodeSelector={"moat.dev/pool": "a"},
                                     tolerations=[{"key": "moat.dev/dedicated",
                                                   "operator": "Exists"}]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
