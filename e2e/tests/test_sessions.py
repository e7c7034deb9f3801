"""Sessions end to end (README: Sessions), against the cluster in $KUBECONFIG with Moat from
its Helm chart: a Sandbox an agent lives in, under gVisor, commands and files through
pods/exec and Moat's helper (moat-init, mounted at /.moat from the node image), idle seen
by moat-cri and the node agent, ended by the operator.

Every command goes through the real kubectl and API server: `kubectl exec` is what the SDK
and `kubectl moat` do over the same pods/exec subresource.
"""
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from kube import create_namespace, get_json, kubectl, wait_for  # noqa: E402

CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
KUBECTL = os.environ.get("KUBECTL", os.path.join(CACHE, "bin", "kubectl"))
BUSYBOX = "moat.local/busybox:1.35"
NOSHELL = "moat.local/noshell:1"
PYTHON = "moat.local/python:3.11"
HELPER = "/.moat/moat-init"
MIB = 1024 * 1024


def session(name, image=BUSYBOX, idle=None, timeout=None, cpu="100m", **extra):
    # small: six sessions and Moat's own pods fit on the 2-core node
    spec = {"image": image, "mode": "Session", "isolation": "GVisor",
            "resources": {"cpu": cpu, "memory": "128Mi"}, **extra}
    if idle:
        spec["idleTimeout"] = idle
    if timeout:
        spec["timeout"] = timeout
    return json.dumps({"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox",
                       "metadata": {"name": name}, "spec": spec})


def kubectl_said(stderr):
    """stderr without the line kubectl adds for a non-zero exit."""
    lines = stderr.splitlines(keepends=True)
    if lines and lines[-1].startswith(b"command terminated with exit code"):
        lines.pop()
    return b"".join(lines)


def condition(st, kind):
    return next((c for c in st.get("conditions", []) if c["type"] == kind), {})


class Sessions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ns = create_namespace("sessions")
        kubectl("apply", "-n", cls.ns, "-f", "-", stdin="\n---\n".join([
            session("box", idle="10m", cpu="300m"),
            session("bare", image=NOSHELL, idle="10m"),
            session("py", image=PYTHON, idle="10m"),
            session("net", idle="10m", network={"egress": "Internet"}),
        ]))
        for name in ("box", "bare", "py", "net"):
            cls.wait_ready(name)

    @classmethod
    def tearDownClass(cls):
        kubectl("delete", "namespace", cls.ns, "--wait=false", check=False)

    # ---- helpers ----
    @classmethod
    def status(cls, name):
        return get_json("sandbox", name, "-n", cls.ns).get("status", {})

    @classmethod
    def wait_ready(cls, name, timeout=180):
        # Ready, and the node's isolation report in (it follows Ready by up to the agent's
        # 2 s pass: a test reading status.isolation at once raced it)
        return wait_for(lambda: (lambda st: st.get("phase") == "Running"
                                 and condition(st, "Ready").get("status") == "True"
                                 and condition(st, "Isolated").get("status") == "True" and st)(
                                     cls.status(name)),
                        timeout, 0.5, what=f"session {name} ready and isolation reported")

    def exec(self, name, *argv, stdin=None, timeout=120, opts=()):
        """One command through pods/exec and the helper (its options opts): (exit code,
        stdout, stderr)."""
        args = [KUBECTL, "exec", "-n", self.ns, name]
        if stdin is not None:
            args.append("-i")
        args += ["--", HELPER, "exec", *opts, "--", *argv]
        p = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout, kubectl_said(p.stderr)

    def helper(self, name, *argv, stdin=None, timeout=300):
        args = [KUBECTL, "exec", "-n", self.ns, name]
        if stdin is not None:
            args.append("-i")
        args += ["--", HELPER, *argv]
        p = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout)
        return subprocess.CompletedProcess(p.args, p.returncode, p.stdout, kubectl_said(p.stderr))

    def ps(self, name):
        rc, out, _ = self.exec(name, "ps", "-o", "pid,pgid,args")
        self.assertEqual(rc, 0)
        return out.decode()

    # ---- commands ----
    def test_commands_keep_state_and_separate_streams(self):
        st = self.status("box")
        self.assertEqual(st["limits"], {"timeout": "1h", "idleTimeout": "10m"})
        self.assertEqual(st["isolation"]["runtime"], "gvisor")
        self.assertTrue(st["isolation"]["verified"])
        rc, out, err = self.exec("box", "sh", "-c",
                                 "echo kept > /tmp/state; echo out; echo err >&2; exit 3")
        self.assertEqual((rc, out, err), (3, b"out\n", b"err\n"))
        rc, out, _ = self.exec("box", "cat", "/tmp/state")
        self.assertEqual((rc, out), (0, b"kept\n"))
        # the helper is PID 1 of the session: the image's own program never ran
        rc, out, _ = self.exec("box", "cat", "/proc/1/cmdline")
        self.assertEqual(out.split(b"\0")[:2], [HELPER.encode(), b"init"])

    def test_stdin_to_end_of_input(self):
        data = os.urandom(300 * 1024)
        rc, out, _ = self.exec("box", "cat", stdin=data)
        self.assertEqual(rc, 0)
        self.assertEqual(out, data)
        rc, out, _ = self.exec("box", "wc", "-c", stdin=b"")
        self.assertEqual((rc, out.strip()), (0, b"0"))

    def test_exit_codes(self):
        self.assertEqual(self.exec("box", "sh", "-c", "kill -9 $$")[0], 137)
        self.assertEqual(self.exec("box", "true")[0], 0)
        rc, _, err = self.exec("box", "/no/such/program")
        self.assertEqual(rc, 127)
        self.assertIn(b'"ENOENT"', err)

    def test_timeout_kills_the_process_group(self):
        t0 = time.monotonic()
        rc, _, err = self.exec("box", "sh", "-c", "sleep 307 & sleep 308", opts=("--timeout", "2"))
        self.assertEqual(rc, 124, err)
        self.assertIn(b"ETIMEDOUT", err)
        self.assertLess(time.monotonic() - t0, 30)
        ps = self.ps("box")
        self.assertNotIn("sleep 307", ps)
        self.assertNotIn("sleep 308", ps)

    def test_client_gone_leaves_nothing_behind(self):
        # The SDK's way: framed stdin, held open for the command's life; a client that goes
        # away closes it, and the helper kills the command's process group.
        p = subprocess.Popen([KUBECTL, "exec", "-i", "-n", self.ns, "box", "--", HELPER,
                              "exec", "--framed-stdin", "--", "sh", "-c",
                              "sleep 317 & sleep 318"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        wait_for(lambda: "sleep 318" in self.ps("box"), 60, 0.5, what="the command running")
        p.kill()  # the client dies mid-command
        p.wait()
        wait_for(lambda: "sleep 31" not in self.ps("box"), 30, 0.5,
                 what="no process of the command left")

    def test_helper_runs_under_runsc_and_runsc_nonet(self):
        for name, handler in (("box", "runsc-nonet"), ("net", "runsc")):
            with self.subTest(handler=handler):
                st = self.status(name)
                self.assertEqual(st["isolation"]["handler"], handler, st["isolation"])
                rc, out, err = self.exec(name, "cat", "/proc/1/cmdline")
                self.assertEqual(rc, 0, err)
                self.assertEqual(out.split(b"\0")[0], HELPER.encode())

    def test_python_image(self):
        rc, out, err = self.exec("py", "python3", "-c",
                                 "import sys, json; print(json.dumps(sys.version_info[:2]))")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), [3, 11])

    # ---- files, in an image with no shell and no libc ----
    def test_files_without_a_shell(self):
        self.assertNotEqual(self.exec("bare", "/bin/sh", "-c", "true")[0], 0)
        for size in (0, MIB, 100 * MIB):
            data = os.urandom(size)
            w = self.helper("bare", "write", "/tmp/f", stdin=data)
            self.assertEqual(w.returncode, 0, w.stderr)
            self.assertEqual(json.loads(w.stdout)["size"], size)
            r = self.helper("bare", "read", "/tmp/f")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(len(r.stdout), size)
            self.assertEqual(hashlib.sha256(r.stdout).digest(), hashlib.sha256(data).digest())
        self.assertEqual(self.helper("bare", "mkdir", "--parents", "/tmp/a/b").returncode, 0)
        self.assertEqual(self.helper("bare", "write", "/tmp/a/b/x", stdin=b"x").returncode, 0)
        listing = [json.loads(line) for line in
                   self.helper("bare", "list", "/tmp/a", "--depth", "2").stdout.splitlines()]
        self.assertEqual(sorted(e["path"] for e in listing), ["/tmp/a/b", "/tmp/a/b/x"])
        st = json.loads(self.helper("bare", "stat", "/tmp/a/b/x").stdout)
        self.assertEqual((st["type"], st["size"]), ("file", 1))
        self.assertEqual(self.helper("bare", "remove", "--recursive", "/tmp/a").returncode, 0)
        gone = self.helper("bare", "stat", "/tmp/a")
        self.assertEqual(gone.returncode, 1)
        self.assertEqual(json.loads(gone.stderr.splitlines()[-1])["error"], "ENOENT")

    def test_writes_are_atomic(self):
        old, new = os.urandom(20 * MIB), os.urandom(60 * MIB)
        self.assertEqual(self.helper("box", "write", "/tmp/atomic", stdin=old).returncode, 0)
        # a reader inside the sandbox hashes the file again and again while it is replaced
        reader = subprocess.Popen([KUBECTL, "exec", "-n", self.ns, "box", "--", HELPER, "exec",
                                   "--timeout", "120", "--", "sh", "-c",
                                   "while [ ! -e /tmp/stop ]; do md5sum /tmp/atomic; done"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(2)
        self.assertEqual(self.helper("box", "write", "/tmp/atomic", stdin=new).returncode, 0)
        time.sleep(2)
        self.helper("box", "write", "/tmp/stop", stdin=b"")
        out, _ = reader.communicate(timeout=120)
        seen = {line.split()[0].decode() for line in out.splitlines() if line.strip()}
        want = {hashlib.md5(old).hexdigest(), hashlib.md5(new).hexdigest()}
        self.assertTrue(seen, "the reader read nothing")
        self.assertLessEqual(seen, want, "a reader saw a file that was neither")
        self.assertIn(hashlib.md5(new).hexdigest(), seen)

    # ---- the gate and the walls ----
    def test_without_pods_exec_the_api_server_refuses(self):
        user = "sessions-reader"
        kubectl("create", "role", "read-sandboxes", "-n", self.ns, "--verb=get,list,create",
                "--resource=sandboxes.moat.dev,pods")
        kubectl("create", "rolebinding", "read-sandboxes", "-n", self.ns,
                "--role=read-sandboxes", f"--user={user}")
        rc, _, err = kubectl("exec", "-n", self.ns, "box", f"--as={user}", "--", HELPER,
                             "exec", "--", "true", check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("forbidden", err.lower())
        self.assertIn("pods/exec", err)

    def test_exec_is_held_by_egress_none(self):
        # egress None runs gVisor without a network: an exec'd process has loopback only
        rc, out, _ = self.exec("box", "cat", "/proc/net/dev")
        self.assertEqual(rc, 0)
        ifaces = {line.split(":")[0].strip() for line in out.decode().splitlines()[2:]}
        self.assertEqual(ifaces, {"lo"})
        server = kubectl("config", "view", "--minify", "-o",
                         "jsonpath={.clusters[0].cluster.server}")[1]
        host = server.split("//", 1)[1].split(":")[0]
        rc, _, _ = self.exec("box", "wget", "-q", "-T", "3", "-O", "-", f"http://{host}:6443/")
        self.assertNotEqual(rc, 0)

    # ---- idle and timeouts ----
    def test_z_idle_shell_ends_busy_exec_lives_timeout_ends_busy(self):
        kubectl("delete", "sandbox", "bare", "py", "net", "-n", self.ns, "--wait=false")
        kubectl("apply", "-n", self.ns, "-f", "-", stdin="\n---\n".join([
            session("idle", idle="20s"),
            session("busy", idle="20s"),
            session("hard", idle="1h", timeout="30s"),
        ]))
        # Each busy one starts burning as soon as it is ready: their clocks run from their
        # pods' start, so waiting for all three first could spend "busy"'s idle window.
        burn = "while :; do :; done"
        for name in ("busy", "hard"):
            self.wait_ready(name)
            threading.Thread(target=self.exec, args=(name, "sh", "-c", burn),
                             kwargs={"timeout": 120, "opts": ("--timeout", "70")},
                             daemon=True).start()
        self.wait_ready("idle")
        # an exec'd shell waiting for input: an exec start, then nothing
        shell = subprocess.Popen([KUBECTL, "exec", "-i", "-n", self.ns, "idle", "--", HELPER,
                                  "exec", "--", "sh"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            st = wait_for(lambda: (lambda s: s.get("phase") == "Expired" and s)(
                self.status("idle")), 120, 1, what="the idle session ending")
            self.assertEqual(condition(st, "Finished")["reason"], "IdleTimeout", st)
            self.assertIn("idle", st["message"])
            started = time.mktime(time.strptime(st["startTime"], "%Y-%m-%dT%H:%M:%SZ"))
            ended = time.mktime(time.strptime(st["completionTime"], "%Y-%m-%dT%H:%M:%SZ"))
            self.assertGreaterEqual(ended - started, 20)
            self.assertIn("lastActivityTime", st)
            # kubelet stops its pod (its log kept): the exec'd shell's stream ends
            wait_for(lambda: get_json("pod", "idle", "-n", self.ns)["status"]["phase"]
                     in ("Failed", "Succeeded"), 60, 1, what="the idle session's pod stopped")
            # the hard limit ends a busy one
            st = wait_for(lambda: (lambda s: s.get("phase") == "Expired" and s)(
                self.status("hard")), 90, 1, what="the busy session past its timeout")
            self.assertEqual(condition(st, "Finished")["reason"], "Timeout", st)
            # a busy exec keeps its session alive past twice its idleTimeout
            first = time.mktime(time.strptime(self.status("busy")["startTime"],
                                              "%Y-%m-%dT%H:%M:%SZ"))
            while time.mktime(time.gmtime()) < first + 45:
                time.sleep(1)
            st = self.status("busy")
            self.assertEqual(st.get("phase"), "Running", st)
            last = time.mktime(time.strptime(st["lastActivityTime"], "%Y-%m-%dT%H:%M:%SZ"))
            self.assertGreater(last - first, 30, st)  # the CPU, not only the exec start
        finally:
            shell.kill()
            shell.wait()


if __name__ == "__main__":
    unittest.main(verbosity=2)
