"""200 Sandboxes created in two bursts of 100 yield exactly 200 Pod creations, counted by an
independent watch on Pods, while the operator is restarted twice, kube-apiserver once (each
while Pods are being made), and the fault proxy between the operator and the API server
forces 410 Gone and drops its watches."""
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import unittest
import http.client

sys.path.insert(0, os.path.dirname(__file__))
from harness import FakeNode, Operator, install_api, kubectl, wait_for  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "kube"))
from kube import create_namespace, delete_namespace  # noqa: E402
from test_faults import Proxy  # noqa: E402

CLUSTER = os.environ.get("MOAT_CLUSTER_DIR", "/var/tmp/moat-cluster")
PKI = os.path.join(CLUSTER, "pki")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
N = 200


class PodCreationCounter:
    """Every Pod UID ever seen in the namespace, by list+watch straight to the API server,
    resuming across its restart."""

    def __init__(self, ns):
        self.ns, self.uids, self.stop = ns, set(), threading.Event()
        port = os.environ.get("MOAT_APISERVER_PORT", "6443")
        self.addr = ("127.0.0.1", int(port))
        self.ctx = ssl.create_default_context(cafile=os.path.join(PKI, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(PKI, "admin.crt"), os.path.join(PKI, "admin.key"))
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def get(self, path):
        conn = http.client.HTTPSConnection(*self.addr, context=self.ctx, timeout=30)
        conn.request("GET", path)
        return conn, conn.getresponse()

    def run(self):
        rv = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    conn, r = self.get(f"/api/v1/namespaces/{self.ns}/pods")
                    body = json.loads(r.read())
                    conn.close()
                    for p in body.get("items", []):
                        self.uids.add(p["metadata"]["uid"])
                    rv = body["metadata"]["resourceVersion"]
                conn, r = self.get(f"/api/v1/namespaces/{self.ns}/pods?watch=1&"
                                   f"resourceVersion={rv}&allowWatchBookmarks=true&"
                                   f"timeoutSeconds=30")
                if r.status == 410:
                    rv = None
                    continue
                for line in r:
                    ev = json.loads(line)
                    if ev["type"] == "ERROR":
                        rv = None
                        break
                    rv = ev["object"]["metadata"]["resourceVersion"]
                    if ev["type"] == "ADDED":
                        self.uids.add(ev["object"]["metadata"]["uid"])
                    if self.stop.is_set():
                        break
                conn.close()
            except (OSError, http.client.HTTPException, ValueError):
                time.sleep(0.3)  # the API server is restarting


class BurstTest(unittest.TestCase):
    def setUp(self):
        install_api()
        self.ns = create_namespace("moat-burst")
        self.node = FakeNode(f"fake-burst-{os.getpid()}", {"moat.dev/managed": "true"})
        self.proxy = Proxy()
        self.operator = None

    def tearDown(self):
        if self.operator:
            self.operator.stop()
        self.proxy.close()
        self.node.delete()
        delete_namespace(self.ns)

    def test_200_sandboxes_make_exactly_200_pods_through_restarts_and_faults(self):
        counter = PodCreationCounter(self.ns)
        self.operator = Operator(kubeconfig=self.proxy.kubeconfig)

        def create(first, n):
            items = [{"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox",
                      "metadata": {"name": f"b-{i:03d}"},
                      "spec": {"image": "moat.local/busybox:1.35"}}
                     for i in range(first, first + n)]
            kubectl("create", "-n", self.ns, "-f", "-",
                    stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
                    timeout=120)

        # Each restart comes while Pods are being made (the operator makes a couple of
        # hundred in seconds): the first half, stopped once a few have Pods ...
        create(0, N // 2)
        wait_for(lambda: len(counter.uids) >= 10, 60, interval=0.05, what="the first Pods")
        self.operator.stop()  # restart 1: SIGTERM mid-burst
        self.operator = Operator(kubeconfig=self.proxy.kubeconfig)
        self.proxy.fault({"type": "status", "code": 410}, count=3, watch=True)
        self.proxy.call("POST", "/drop-all")
        # ... the second half, then kube-apiserver gone under the operator at once
        create(N // 2, N - N // 2)
        subprocess.run(["bash", os.path.join(ROOT, "e2e", "cluster", "control-plane.sh"),
                        "restart-apiserver"], check=True, timeout=180)
        self.operator.stop(kill=True)  # restart 2: a crash
        self.operator = Operator(kubeconfig=self.proxy.kubeconfig)
        self.proxy.fault({"type": "watch_error", "code": 410}, count=2, watch=True)
        self.proxy.call("POST", "/drop-all")

        with_pods = []

        def all_have_pods():
            out = kubectl("get", "sbx", "-n", self.ns, "-o",
                          "jsonpath={range .items[*]}{.status.podName}{\"\\n\"}{end}")[1]
            with_pods.append(sum(1 for line in out.splitlines() if line.strip()))
            return with_pods[-1] == N
        try:
            wait_for(all_have_pods, 180, interval=1, what="every sandbox to have its pod")
        except AssertionError as e:
            # which ones, what their status says, and every line of the operator's about them
            items = json.loads(kubectl("get", "sbx", "-n", self.ns, "-o", "json")[1])["items"]
            lacking = {i["metadata"]["name"]: i.get("status", {}) for i in items
                       if not i.get("status", {}).get("podName")}
            log = self.operator.logs()
            about = [line for line in log.splitlines()
                     if any(f"/{name}\"" in line for name in lacking)]
            raise AssertionError(f"{e}: Sandboxes with a pod, every 10 s: {with_pods[::10]}; "
                                 f"without one: {json.dumps(lacking)[:3000]}; the operator "
                                 f"on them: {about[-40:]}; proxy: {self.proxy.stats()}; "
                                 f"the operator's log ends:\n{log[-6000:]}\nthe proxy's:\n"
                                 f"{self.proxy.logs()[-3000:]}") from None
        pods = json.loads(kubectl("get", "pods", "-n", self.ns, "-o", "json")[1])["items"]
        self.assertEqual(len(pods), N)
        time.sleep(2)
        counter.stop.set()
        self.assertEqual(len(counter.uids), N,
                         f"{len(counter.uids)} pod creations for {N} sandboxes")
        faults = self.proxy.stats()["faults_applied"]
        self.assertGreaterEqual(faults.get("status", 0), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
