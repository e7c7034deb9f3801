"""The fault-injection proxy (fault_proxy.py) against the real API server: requests no
rule catches pass through unchanged (kubectl works through it, on kept-alive connections,
watches stream incrementally), and each fault does what it says: status answers with a
Kubernetes Status body, watch_error, drop, stall, cut, /drop-all, the stats, impersonation
headers forwarded, and the proxy survives bad clients and a dead upstream.

Needs the local control plane (e2e/cluster/control-plane.sh): its PKI in
$MOAT_CLUSTER_DIR/pki and its API server on 127.0.0.1:$MOAT_APISERVER_PORT (6443)."""
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER_DIR = os.environ.get("MOAT_CLUSTER_DIR", "/var/tmp/moat-cluster")
PKI = os.path.join(CLUSTER_DIR, "pki")
os.environ.setdefault("KUBECONFIG", os.path.join(CLUSTER_DIR, "admin.kubeconfig"))
os.environ.setdefault("KUBECTL", os.path.join(os.environ.get("MOAT_CACHE", "/var/cache/moat"),
                                              "bin", "kubectl"))

sys.path.insert(0, os.path.join(HERE, ".."))
from kube import KUBECTL, create_namespace, delete_namespace, kubectl, wait_for  # noqa: E402

PROXY = os.path.join(HERE, "fault_proxy.py")
UPSTREAM = f"https://127.0.0.1:{os.environ.get('MOAT_APISERVER_PORT', '6443')}"
CA = os.path.join(PKI, "ca.crt")
N_CONFIGMAPS = 5


def start_proxy(tmpdir, name, upstream=UPSTREAM):
    """Starts fault_proxy.py on port 0; returns (process, listen, control, log path)."""
    ready = os.path.join(tmpdir, f"{name}.ready.json")
    logpath = os.path.join(tmpdir, f"{name}.log")
    logf = open(logpath, "w")
    proc = subprocess.Popen(
        [sys.executable, PROXY, "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
         "--upstream", upstream, "--upstream-ca", CA,
         "--client-cert", os.path.join(PKI, "admin.crt"),
         "--client-key", os.path.join(PKI, "admin.key"),
         "--serve-cert", os.path.join(PKI, "apiserver.crt"),
         "--serve-key", os.path.join(PKI, "apiserver.key"),
         "--ready-file", ready, "--verbose"],
        stdout=subprocess.PIPE, stderr=logf, text=True)
    logf.close()
    deadline = time.monotonic() + 20
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            with open(logpath) as f:
                raise RuntimeError(f"fault proxy did not start: {f.read()}")
        time.sleep(0.05)
    with open(ready) as f:
        addrs = json.load(f)
    # The same JSON comes on stdout.
    assert json.loads(proc.stdout.readline()) == addrs, addrs
    return proc, addrs["listen"], addrs["control"], logpath


def stop_proxy(proc):
    """SIGTERM; returns the exit status (the proxy must exit 0 quickly)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return "killed after SIGTERM timeout"
    proc.stdout.close()
    return proc.returncode


def hostport(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def read_stream(resp):
    """Reads a response body to its end; returns (data, error): error is None when the
    body ended properly, else the exception that ended it (IncompleteRead, reset, ...)."""
    data = b""
    try:
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                return data, None
            data += chunk
    except http.client.IncompleteRead as e:
        return data + e.partial, e
    except (OSError, http.client.HTTPException) as e:
        return data, e


class FaultProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="moat-fault-proxy-")
        cls.proc, cls.listen, cls.control_addr, cls.log = start_proxy(cls.tmp.name, "proxy")
        cls.kubeconfig = os.path.join(cls.tmp.name, "proxy.kubeconfig")
        cls.cache_dir = os.path.join(cls.tmp.name, "kube-cache")
        with open(cls.kubeconfig, "w") as f:
            json.dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
                "clusters": [{"name": "proxy", "cluster": {
                    "server": f"https://{cls.listen}", "certificate-authority": CA}}],
                # Sent nowhere (the proxy asks for no client certificate); the API server
                # sees the proxy's own identity.
                "users": [{"name": "admin", "user": {
                    "client-certificate": os.path.join(PKI, "admin.crt"),
                    "client-key": os.path.join(PKI, "admin.key")}}],
                "contexts": [{"name": "proxy", "context": {"cluster": "proxy",
                                                           "user": "admin"}}],
            }, f)
        cls.ssl_ctx = ssl.create_default_context(cafile=CA)
        cls.ns = None
        try:
            cls.ns = create_namespace("moat-fproxy")
            for i in range(N_CONFIGMAPS):  # created through the proxy: POST bodies pass
                cls.pkubectl("create", "configmap", f"cm-{i}", "-n", cls.ns,
                             f"--from-literal=index={i}")
        except BaseException:
            cls.tearDownClass()
            raise
        cls.cm_path = f"/api/v1/namespaces/{cls.ns}/configmaps"

    @classmethod
    def tearDownClass(cls):
        if cls.ns:
            delete_namespace(cls.ns)
        rc = stop_proxy(cls.proc)
        with open(cls.log) as f:
            log = f.read()
        cls.tmp.cleanup()
        if rc != 0:
            raise AssertionError(f"fault proxy exited {rc} on SIGTERM; log:\n{log[-4000:]}")
        if "unexpected error" in log:
            raise AssertionError(f"fault proxy logged an unexpected error:\n{log[-4000:]}")

    def setUp(self):
        self.control("DELETE", "/faults")

    # -- helpers --

    @classmethod
    def pkubectl(cls, *args, check=True, timeout=60):
        """kubectl through the proxy."""
        p = subprocess.run([KUBECTL, "--kubeconfig", cls.kubeconfig,
                            "--cache-dir", cls.cache_dir, *args],
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} via proxy exited "
                                 f"{p.returncode}: {p.stderr}")
        return p.returncode, p.stdout, p.stderr

    def control(self, method, path, body=None):
        c = http.client.HTTPConnection(*hostport(self.control_addr), timeout=10)
        try:
            c.request(method, path, body=None if body is None else json.dumps(body),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = json.loads(r.read())
            if r.status != 200:
                raise AssertionError(f"control {method} {path}: {r.status} {data}")
            return data
        finally:
            c.close()

    def faults(self, *rules):
        return self.control("POST", "/faults", list(rules))

    def stats(self):
        return self.control("GET", "/stats")

    def api(self, timeout=30):
        return http.client.HTTPSConnection(*hostport(self.listen), context=self.ssl_ctx,
                                           timeout=timeout)

    def get(self, conn, path):
        conn.request("GET", path)
        return conn.getresponse()

    def watch_path(self, rv="0"):
        """A watch on the namespace's configmaps: from resourceVersion 0 the existing ones
        come first as ADDED events; from a list's resourceVersion only new changes come."""
        return self.cm_path + "?watch=true&resourceVersion=" + rv

    def current_rv(self):
        conn = self.api()
        try:
            return json.loads(self.get(conn, self.cm_path).read())["metadata"][
                "resourceVersion"]
        finally:
            conn.close()

    def assertStatus(self, resp, code, reason):
        self.assertEqual(resp.status, code)
        self.assertEqual(resp.getheader("Content-Type"), "application/json")
        body = json.loads(resp.read())
        self.assertEqual(body["kind"], "Status")
        self.assertEqual(body["apiVersion"], "v1")
        self.assertEqual(body["status"], "Failure")
        self.assertEqual(body["code"], code)
        self.assertEqual(body["reason"], reason)
        self.assertTrue(body["message"])
        return body

    def wait_idle(self):
        wait_for(lambda: self.stats()["open_connections"] == 0, 15,
                 what="the proxy's client connections to close")

    # -- pass-through --

    def test_passthrough_kubectl(self):
        _, out, _ = self.pkubectl("get", "configmaps", "-n", self.ns, "-o", "name")
        names = set(out.split())
        self.assertTrue({f"configmap/cm-{i}" for i in range(N_CONFIGMAPS)} <= names, names)
        _, out, _ = self.pkubectl("get", "configmap", "cm-3", "-n", self.ns, "-o", "json")
        self.assertEqual(json.loads(out)["data"], {"index": "3"})

    def test_passthrough_keep_alive(self):
        conn = self.api()
        try:
            resp = self.get(conn, self.cm_path)
            self.assertEqual(resp.status, 200)
            sock = conn.sock
            items = json.loads(resp.read())["items"]
            self.assertGreaterEqual(len(items), N_CONFIGMAPS)
            for _ in range(3):  # more requests on the same connection
                resp = self.get(conn, self.cm_path + "/cm-0")
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.loads(resp.read())["metadata"]["name"], "cm-0")
                self.assertIs(conn.sock, sock, "the proxy closed a keep-alive connection")
            resp = self.get(conn, self.cm_path + "/no-such-configmap")
            self.assertStatus(resp, 404, "NotFound")  # the API server's own answer
            self.assertIs(conn.sock, sock)
        finally:
            conn.close()

    def test_watch_streams_incrementally(self):
        rv = self.current_rv()
        before = self.stats()
        conn = self.api()
        try:
            resp = self.get(conn, self.watch_path(rv))
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
            kubectl("create", "configmap", "streamed", "-n", self.ns)
            try:
                event = json.loads(resp.readline())  # arrives while the watch stays open
                self.assertEqual(event["type"], "ADDED")
                self.assertEqual(event["object"]["metadata"]["name"], "streamed")
            finally:
                kubectl("delete", "configmap", "streamed", "-n", self.ns)
            event = json.loads(resp.readline())
            self.assertEqual((event["type"], event["object"]["metadata"]["name"]),
                             ("DELETED", "streamed"))
        finally:
            conn.close()  # the client leaves mid-stream: the proxy ends that watch
        self.wait_idle()
        after = self.stats()
        self.assertEqual(after["watches"] - before["watches"], 1)
        self.assertEqual(after["upstream_errors"], before["upstream_errors"])

    # -- status faults --

    def test_429_with_retry_after(self):
        added = self.faults({"match": {"method": "GET", "path": r"/configmaps$"}, "count": 1,
                             "action": {"type": "status", "code": 429, "retry_after": 7,
                                        "reason": "TooManyRequests"}})
        self.assertEqual(added["added"], 1)
        conn = self.api()
        try:
            resp = self.get(conn, self.cm_path)
            body = self.assertStatus(resp, 429, "TooManyRequests")
            self.assertEqual(resp.getheader("Retry-After"), "7")
            self.assertEqual(body["details"]["retryAfterSeconds"], 7)
            sock = conn.sock
            resp = self.get(conn, self.cm_path)  # count 1: the next one passes, same conn
            self.assertEqual(resp.status, 200)
            self.assertEqual(json.loads(resp.read())["kind"], "ConfigMapList")
            self.assertIs(conn.sock, sock)
        finally:
            conn.close()
        rules = self.control("GET", "/faults")["rules"]
        self.assertEqual([(r["count"], r["applied"]) for r in rules], [(0, 1)])

    def test_410_on_watch_only(self):
        self.faults({"match": {"path": "/configmaps", "watch": True},
                     "action": {"type": "status", "code": 410, "reason": "Expired"}})
        conn = self.api()
        try:
            resp = self.get(conn, self.cm_path)  # a list is not a watch: passes
            self.assertEqual(resp.status, 200)
            resp.read()
            resp = self.get(conn, self.cm_path + "?watch=1&resourceVersion=1")
            self.assertStatus(resp, 410, "Expired")
            self.assertIsNone(resp.getheader("Retry-After"))
        finally:
            conn.close()

    def test_watch_error(self):
        self.faults({"match": {"watch": True}, "action": {"type": "watch_error"}})
        conn = self.api()
        try:
            resp = self.get(conn, self.watch_path())
            self.assertEqual(resp.status, 200)
            data, err = read_stream(resp)
            self.assertIsNone(err, "the watch_error stream must end properly")
            lines = data.splitlines()
            self.assertEqual(len(lines), 1, data)
            event = json.loads(lines[0])
            self.assertEqual(event["type"], "ERROR")
            self.assertEqual(event["object"]["kind"], "Status")
            self.assertEqual(event["object"]["code"], 410)
            self.assertEqual(event["object"]["reason"], "Expired")
        finally:
            conn.close()

    def test_rules_in_order_and_forever(self):
        self.faults(
            {"match": {"path": "cm-1"}, "count": -1,
             "action": {"type": "status", "code": 503, "retry_after": 1}},
            {"match": {"path": "cm-"}, "count": 2, "action": {"type": "status", "code": 500}},
        )
        conn = self.api()
        try:
            for _ in range(3):  # the first rule wins every time and never runs out
                self.assertStatus(self.get(conn, self.cm_path + "/cm-1"), 503,
                                  "ServiceUnavailable")
            self.assertStatus(self.get(conn, self.cm_path + "/cm-2"), 500, "InternalError")
            self.assertStatus(self.get(conn, self.cm_path + "/cm-3"), 500, "InternalError")
            resp = self.get(conn, self.cm_path + "/cm-4")  # the second rule is used up
            self.assertEqual(resp.status, 200)
            resp.read()
        finally:
            conn.close()
        rules = self.control("GET", "/faults")["rules"]
        self.assertEqual([(r["count"], r["applied"]) for r in rules], [(-1, 3), (0, 2)])
        self.assertEqual(self.control("DELETE", "/faults"), {"cleared": 2})
        self.assertEqual(self.control("GET", "/faults"), {"rules": []})

    def test_bad_rules_refused(self):
        for bad in ([{"action": {"type": "explode"}}],
                    [{"action": {"type": "status"}}],
                    [{"match": {"path": "("}, "action": {"type": "drop"}}],
                    [{"match": {"verb": "GET"}, "action": {"type": "drop"}}],
                    [{"count": -2, "action": {"type": "drop"}}],
                    [{"action": {"type": "stall", "seconds": -1}}]):
            with self.subTest(rule=bad):
                c = http.client.HTTPConnection(*hostport(self.control_addr), timeout=10)
                c.request("POST", "/faults", body=json.dumps(bad))
                r = c.getresponse()
                self.assertEqual(r.status, 400)
                self.assertIn("error", json.loads(r.read()))
                c.close()
        self.assertEqual(self.control("GET", "/faults"), {"rules": []})

    # -- connection faults --

    def test_drop(self):
        self.faults({"match": {"path": "/configmaps/cm-0$"}, "action": {"type": "drop"}})
        before = self.stats()
        conn = self.api()
        try:
            conn.request("GET", self.cm_path + "/cm-0")
            with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
                conn.getresponse()
        finally:
            conn.close()
        conn = self.api()  # the proxy goes on, and the rule is used up
        try:
            resp = self.get(conn, self.cm_path + "/cm-0")
            self.assertEqual(resp.status, 200)
            resp.read()
        finally:
            conn.close()
        after = self.stats()
        self.assertEqual(after["faults_applied"]["drop"] - before["faults_applied"]["drop"], 1)

    def test_cut_mid_line(self):
        self.faults({"match": {"watch": True},
                     "action": {"type": "cut", "after_lines": 2, "partial_bytes": 17}})
        conn = self.api()
        try:
            resp = self.get(conn, self.watch_path())
            self.assertEqual(resp.status, 200)
            data, err = read_stream(resp)
        finally:
            conn.close()
        self.assertIsNotNone(err, "a cut stream must not end properly")
        full, partial = data.rsplit(b"\n", 1)
        lines = full.split(b"\n")
        self.assertEqual(len(lines), 2, data)
        for line in lines:
            event = json.loads(line)
            self.assertEqual(event["type"], "ADDED")
            self.assertEqual(event["object"]["kind"], "ConfigMap")
        self.assertEqual(partial, b'{"type":"ADDED","'[:17])
        self.assertEqual(len(partial), 17)

    def test_stall_watch(self):
        self.faults({"match": {"watch": True}, "action": {"type": "stall", "seconds": 3}})
        conn = self.api(timeout=30)
        try:
            resp = self.get(conn, self.watch_path())
            self.assertEqual(resp.status, 200)
            first = json.loads(resp.readline())  # the first event comes, then nothing
            self.assertEqual(first["type"], "ADDED")
            t0 = time.monotonic()
            data, err = read_stream(resp)
            held = time.monotonic() - t0
        finally:
            conn.close()
        self.assertEqual(data, b"", "nothing may come after the first line while stalled")
        self.assertIsNotNone(err, "the stalled stream ends abruptly")
        self.assertGreaterEqual(held, 2.5)
        self.assertLess(held, 15)

    def test_stall_plain_get(self):
        self.faults({"match": {"method": "GET", "watch": False, "path": "/configmaps$"},
                     "action": {"type": "stall", "seconds": 1.5}})
        conn = self.api(timeout=30)
        try:
            t0 = time.monotonic()
            resp = self.get(conn, self.cm_path)
            self.assertEqual(resp.status, 200)  # the headers come at once
            self.assertLess(time.monotonic() - t0, 1.4)
            data, err = read_stream(resp)
            held = time.monotonic() - t0
        finally:
            conn.close()
        self.assertIsNotNone(err)
        self.assertEqual(data, b"")
        self.assertGreaterEqual(held, 1.4)

    def test_drop_all_ends_live_watch(self):
        before = self.stats()
        conn = self.api(timeout=60)
        idle = self.api(timeout=60)  # a second, idle keep-alive connection
        result = {}
        try:
            idle_resp = self.get(idle, self.cm_path + "/cm-0")
            self.assertEqual(idle_resp.status, 200)
            idle_resp.read()
            resp = self.get(conn, self.watch_path())
            self.assertEqual(resp.status, 200)
            json.loads(resp.readline())  # the watch is live
            reader = threading.Thread(target=lambda: result.update(
                zip(("data", "err"), read_stream(resp))), daemon=True)
            reader.start()
            wait_for(lambda: self.stats()["open_connections"] >= 2, 10,
                     what="both connections open")
            dropped = self.control("POST", "/drop-all")["dropped"]
            self.assertGreaterEqual(dropped, 2)
            reader.join(10)
            self.assertFalse(reader.is_alive(), "the watch did not end on /drop-all")
            self.assertIsNotNone(result["err"], "a dropped watch ends abruptly")
            # The idle keep-alive connection went too: it reads EOF.
            idle.sock.settimeout(10)
            try:
                self.assertEqual(idle.sock.recv(1), b"")
            except (ssl.SSLError, ConnectionError):
                pass
        finally:
            conn.close()
            idle.close()
        self.wait_idle()
        self.assertEqual(self.stats()["drop_all"] - before["drop_all"], 1)

    # -- stats --

    def test_stats(self):
        self.wait_idle()
        self.faults({"match": {"path": "/configmaps/cm-1$"},
                     "action": {"type": "status", "code": 500}},
                    {"match": {"watch": True}, "action": {"type": "watch_error"}})
        before = self.stats()
        self.assertEqual(before["open_connections"], 0)
        conn = self.api()
        try:
            for name in ("cm-0", "cm-1", "cm-2"):
                self.get(conn, self.cm_path + "/" + name).read()
            conn.request("POST", self.cm_path, body=json.dumps({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stats"}}),
                headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 201, resp.read())
            conn.request("DELETE", self.cm_path + "/stats")
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200, resp.read())
            self.get(conn, self.watch_path()).read()
            self.assertEqual(self.stats()["open_connections"], 1)
        finally:
            conn.close()
        self.wait_idle()
        after = self.stats()
        delta = lambda key: after[key] - before[key]  # noqa: E731
        self.assertEqual(delta("requests"), 6)
        self.assertEqual(after["by_method"].get("GET", 0) - before["by_method"].get("GET", 0), 4)
        self.assertEqual(after["by_method"]["POST"] - before["by_method"].get("POST", 0), 1)
        self.assertEqual(after["by_method"]["DELETE"] - before["by_method"].get("DELETE", 0),
                         1)
        self.assertEqual(delta("watches"), 1)
        self.assertEqual(delta("connections"), 1)
        faults = {k: after["faults_applied"][k] - before["faults_applied"][k]
                  for k in after["faults_applied"]}
        self.assertEqual(faults, {"status": 1, "watch_error": 1, "drop": 0, "stall": 0,
                                  "cut": 0})
        self.assertEqual(after["open_connections"], 0)

    # -- identity --

    def test_impersonation_passes_through(self):
        rc, _, err = self.pkubectl("get", "pods", "-n", self.ns)
        self.assertEqual(rc, 0, err)
        rc, _, err = self.pkubectl("--as=nobody", "get", "pods", "-n", self.ns, check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("Forbidden", err)
        self.assertIn('User "nobody"', err)
        # Impersonate-Group too: nobody in system:masters may list pods.
        rc, _, err = self.pkubectl("--as=nobody", "--as-group=system:masters",
                                   "get", "pods", "-n", self.ns, check=False)
        self.assertEqual(rc, 0, err)
        # The API server sees the proxy's identity, or the impersonated one.
        _, out, _ = self.pkubectl("auth", "whoami", "-o", "json")
        self.assertEqual(json.loads(out)["status"]["userInfo"]["username"], "moat-admin")
        _, out, _ = self.pkubectl("--as=nobody", "auth", "whoami", "-o", "json")
        self.assertEqual(json.loads(out)["status"]["userInfo"]["username"], "nobody")

    # -- robustness --

    def test_survives_bad_clients(self):
        host, port = hostport(self.listen)
        with socket.create_connection((host, port), timeout=10):
            pass  # connects and leaves before the TLS handshake
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(b"this is not TLS\r\n\r\n")
            try:
                s.recv(100)
            except OSError:
                pass
        with socket.create_connection((host, port), timeout=10) as raw:
            with self.ssl_ctx.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(b"NOT HTTP\r\n\r\n")
                self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 400 "))
        conn = self.api()
        try:  # a chunked request body is accepted and forwarded
            conn.request("POST", self.cm_path, headers={"Content-Type": "application/json"},
                         body=iter([b'{"apiVersion":"v1","kind":"ConfigMap",',
                                    b'"metadata":{"name":"chunked"}}']),
                         encode_chunked=True)
            resp = conn.getresponse()
            self.assertEqual(resp.status, 201, resp.read())
        finally:
            conn.close()
        _, out, _ = self.pkubectl("get", "configmap", "chunked", "-n", self.ns, "-o", "name")
        self.assertEqual(out.strip(), "configmap/chunked")
        self.assertIsNone(self.proc.poll())

    def test_upstream_down_gives_502(self):
        with socket.socket() as s:  # a loopback port with nothing listening
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        proc, listen, _, _ = start_proxy(self.tmp.name, "dead",
                                         upstream=f"https://127.0.0.1:{dead}")
        try:
            conn = http.client.HTTPSConnection(*hostport(listen), context=self.ssl_ctx,
                                               timeout=30)
            try:
                self.assertStatus(self.get(conn, "/version"), 502, "InternalError")
                self.assertStatus(self.get(conn, "/version"), 502, "InternalError")
            finally:
                conn.close()
        finally:
            self.assertEqual(stop_proxy(proc), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
