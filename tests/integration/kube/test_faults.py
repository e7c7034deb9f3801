"""The informer and the client under faults injected between them and the real API server
(tests/integration/kube/fault_proxy.py): dropped connections, a watch cut mid-line, a
stalled watch, 410 Gone (as an HTTP answer and as an ERROR event), 429 with Retry-After,
and 500s. For each fault the informer's cache converges to the real state, no change is
delivered twice, and the client's retries stop at their cap."""
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from kube import create_namespace, delete_namespace, kubectl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER = os.environ.get("MOAT_CLUSTER_DIR", "/var/tmp/moat-cluster")
PKI = os.path.join(CLUSTER, "pki")
DRIVER = os.environ.get("MOAT_INFORMER_DRIVER", "informer_driver")


class Proxy:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="moat-proxy-")
        ready = os.path.join(self.dir, "ready.json")
        server = None
        with open(os.environ["KUBECONFIG"]) as f:
            for line in f:
                if "server:" in line:
                    server = line.split("server:")[1].strip()
        # Its log to a file: a pipe nobody reads fills (64 KiB), and then every thread of
        # the proxy that logs blocks, the proxy with it.
        self.log = open(os.path.join(self.dir, "log"), "w+")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "fault_proxy.py"),
             "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--upstream", server,
             "--upstream-ca", os.path.join(PKI, "ca.crt"),
             "--client-cert", os.path.join(PKI, "admin.crt"),
             "--client-key", os.path.join(PKI, "admin.key"),
             "--serve-cert", os.path.join(PKI, "apiserver.crt"),
             "--serve-key", os.path.join(PKI, "apiserver.key"), "--ready-file", ready],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 20
        while not os.path.exists(ready):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("fault proxy did not start")
            time.sleep(0.05)
        with open(ready) as f:
            addrs = json.load(f)
        self.listen, self.control = addrs["listen"], addrs["control"]
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            f.write(f"""apiVersion: v1
kind: Config
current-context: proxy
clusters:
- name: proxy
  cluster: {{server: "https://{self.listen}", certificate-authority: {PKI}/ca.crt}}
users:
- name: admin
  user: {{client-certificate: {PKI}/admin.crt, client-key: {PKI}/admin.key}}
contexts:
- name: proxy
  context: {{cluster: proxy, user: admin}}
""")

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.control}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def fault(self, action, count=1, **match):
        return self.call("POST", "/faults", [{"match": match, "count": count, "action": action}])

    def stats(self):
        return self.call("GET", "/stats")

    def logs(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Driver:
    """The C informer (informer_driver) talking through the proxy."""

    def __init__(self, kubeconfig, ns, stall_s=0):
        env = dict(os.environ, KUBECONFIG=kubeconfig)
        self.proc = subprocess.Popen([DRIVER, ns, str(stall_s)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
        self.events, self.answers = [], queue.Queue()
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            if msg["op"] in ("add", "update", "delete"):
                with self.lock:
                    self.events.append(msg)
            else:
                self.answers.put(msg)

    def ask(self, cmd, timeout=90):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.answers.get(timeout=timeout)

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except Exception:
            self.proc.kill()


def real_state(ns):
    items = json.loads(kubectl("get", "configmaps", "-n", ns, "-o", "json")[1])["items"]
    return {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items}


def change(ns, name, value):
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
           "data": {"v": str(value)}}
    kubectl("apply", "--server-side", "--field-manager=test", "-f", "-", stdin=json.dumps(doc))


class FaultTest(unittest.TestCase):
    def setUp(self):
        self.proxy = Proxy()
        self.ns = create_namespace("moat-faults")
        self.driver = None

    def tearDown(self):
        if self.driver:
            self.driver.close()
        self.proxy.close()
        delete_namespace(self.ns)

    def start(self, stall_s=0):
        self.driver = Driver(self.proxy.kubeconfig, self.ns, stall_s)
        self.assertTrue(self.driver.ask("sync")["ok"])

    def churn(self, n, prefix="cm", delete_every=3):
        """n changes made straight to the API server (not through the proxy)."""
        for i in range(n):
            name = f"{prefix}-{i % 7}"
            if i % delete_every == delete_every - 1:
                kubectl("delete", "configmap", name, "-n", self.ns, "--ignore-not-found")
            else:
                change(self.ns, name, i)

    def assert_converges(self, timeout=60):
        deadline = time.time() + timeout
        want = got = None
        while time.time() < deadline:
            want = real_state(self.ns)
            got = self.driver.ask("dump")["items"]
            if got == want:
                break
            time.sleep(0.3)
        self.assertEqual(got, want, "the informer's cache never matched the server")
        with self.driver.lock:
            seen = [(e["op"], e["name"], e["rv"]) for e in self.driver.events
                    if e["op"] != "delete"]
        dups = {s for s in seen if seen.count(s) > 1}
        self.assertEqual(dups, set(), "changes delivered more than once")
        return self.driver.ask("stats")

    def in_background(self, fn):
        t = threading.Thread(target=fn)
        t.start()
        return t

    def test_dropped_connections(self):
        self.start()
        t = self.in_background(lambda: self.churn(60))
        for _ in range(5):
            time.sleep(0.5)
            self.proxy.call("POST", "/drop-all")
        t.join()
        st = self.assert_converges()
        self.assertGreaterEqual(st["watch_failures"], 1)

    def test_watch_cut_mid_line(self):
        self.start()
        self.proxy.fault({"type": "cut", "after_lines": 1, "partial_bytes": 40}, count=3,
                         watch=True)
        self.proxy.call("POST", "/drop-all")  # a watch started before the fault: the next
        self.churn(40)
        st = self.assert_converges()
        self.assertGreaterEqual(self.proxy.stats()["faults_applied"].get("cut", 0), 1)
        self.assertGreaterEqual(st["watch_failures"], 1)

    def test_stalled_watch_is_detected(self):
        self.start(stall_s=2)
        self.proxy.fault({"type": "stall", "seconds": 60}, count=1, watch=True)
        self.proxy.call("POST", "/drop-all")  # the next watch is the stalled one
        time.sleep(0.5)
        self.churn(20)
        started = time.time()
        st = self.assert_converges(timeout=30)
        self.assertLess(time.time() - started, 25)
        self.assertEqual(self.proxy.stats()["faults_applied"].get("stall"), 1)
        self.assertGreaterEqual(st["watch_failures"], 1)

    def test_gone_relists_with_missed_deletes(self):
        self.start()
        self.churn(14, delete_every=100)  # 7 objects, no deletes yet
        self.assert_converges()
        lists_before = self.driver.ask("stats")["lists"]
        # Every watch now answers 410 until the test lets go: the informer must relist, and
        # the changes made meanwhile, deletes included, arrive by the diff against the cache.
        self.proxy.fault({"type": "status", "code": 410}, count=-1, watch=True)
        self.proxy.call("POST", "/drop-all")
        for i in range(3):
            kubectl("delete", "configmap", f"cm-{i}", "-n", self.ns)
        change(self.ns, "cm-5", "after")
        change(self.ns, "cm-new", "after")
        time.sleep(1)
        self.proxy.call("DELETE", "/faults")
        st = self.assert_converges()
        self.assertGreater(st["lists"], lists_before)
        with self.driver.lock:
            deleted = {e["name"] for e in self.driver.events if e["op"] == "delete"}
        self.assertEqual(deleted, {"cm-0", "cm-1", "cm-2"})

    def test_error_event_relists(self):
        self.start()
        lists_before = self.driver.ask("stats")["lists"]
        self.proxy.fault({"type": "watch_error", "code": 410}, count=1, watch=True)
        self.proxy.call("POST", "/drop-all")
        self.churn(20)
        st = self.assert_converges()
        self.assertGreater(st["lists"], lists_before)

    def test_429_with_retry_after_on_the_first_list(self):
        self.proxy.fault({"type": "status", "code": 429, "retry_after": 1}, count=2,
                         method="GET", watch=False, path="/configmaps")
        self.churn(5, delete_every=100)
        started = time.time()
        self.start()
        self.assertGreaterEqual(time.time() - started, 1.5)  # two Retry-After: 1
        self.assertEqual(self.proxy.stats()["faults_applied"].get("status"), 2)
        self.assert_converges()

    def test_retries_stop_at_their_cap(self):
        self.start()
        change(self.ns, "target", 1)
        self.proxy.call("DELETE", "/stats")
        self.proxy.fault({"type": "status", "code": 500}, count=-1, path="/configmaps/target")
        answer = self.driver.ask("get target")
        self.assertFalse(answer["ok"])
        self.assertEqual(answer["reason"], "InternalError")
        self.assertIn("after 3 retries", answer["error"])
        # the driver's client allows 3 retries: 4 requests in all, then it gives up
        self.assertEqual(self.proxy.stats()["faults_applied"]["status"], 4)
        self.proxy.call("DELETE", "/faults")
        self.assertTrue(self.driver.ask("get target")["ok"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
