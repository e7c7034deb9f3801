"""`kubectl moat` (kubectl-moat/) end to end, against the cluster in $KUBECONFIG with Moat
from its Helm chart, every command under gVisor: run (a Run's log streamed, a Session with
stdin), exec (exit codes, stdin, a terminal through a pseudo-terminal with a resize), cp (0 B
and 50 MiB both ways, compared by hash, into an image without a shell), ls/get, logs,
delete, and the errors a person acts on, provoked for real: a spec the API server refuses,
isolation VM on this node (no usable hypervisor), a Sandbox that is gone, a user without
pods/exec (a ServiceAccount's token: the plugin's bearer-token path).

    KUBECTL_MOAT=build/kubectl-moat/kubectl-moat python3 e2e/tests/test_plugin.py
"""
import base64
import fcntl
import hashlib
import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from kube import create_namespace, get_json, kubectl, wait_for  # noqa: E402

CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
KUBECTL = os.environ.get("KUBECTL", os.path.join(CACHE, "bin", "kubectl"))
PLUGIN = os.environ.get("KUBECTL_MOAT", os.path.join(ROOT, "build", "kubectl-moat",
                                                     "kubectl-moat"))
BUSYBOX = "moat.local/busybox:1.35"
NOSHELL = "moat.local/noshell:1"
SMALL = ["--cpu", "100m", "--memory", "64Mi"]
MIB = 1024 * 1024


def session(name, image=BUSYBOX):
    return json.dumps({"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox",
                       "metadata": {"name": name},
                       "spec": {"image": image, "mode": "Session", "isolation": "GVisor",
                                "idleTimeout": "10m",
                                "resources": {"cpu": "100m", "memory": "128Mi"}}})


class Plugin(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ns = create_namespace("plugin")
        cls.dir = tempfile.mkdtemp(prefix="plugin-")
        for name, image in (("box", BUSYBOX), ("bare", NOSHELL)):
            kubectl("apply", "-n", cls.ns, "-f", "-", stdin=session(name, image))
        for name in ("box", "bare"):
            wait_for(lambda n=name: any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in get_json("sandbox", n, "-n", cls.ns).get("status", {})
                .get("conditions", [])), 180, what=f"{name} ready")

    @classmethod
    def tearDownClass(cls):
        kubectl("delete", "namespace", cls.ns, "--wait=false", check=False)
        shutil.rmtree(cls.dir, ignore_errors=True)

    def moat(self, *args, stdin=None, timeout=180, env=None):
        # -n right after the command: after `--` it would be the program's
        return subprocess.run([PLUGIN, args[0], "-n", self.ns, *args[1:]], input=stdin,
                              capture_output=True, timeout=timeout, env=env)

    def path(self, name):
        return os.path.join(self.dir, name)

    # ---- the plugin itself ----
    def test_kubectl_finds_the_plugin_and_every_command_has_help(self):
        bindir = self.path("bin")
        os.makedirs(bindir, exist_ok=True)
        link = os.path.join(bindir, "kubectl-moat")
        if not os.path.exists(link):
            os.symlink(PLUGIN, link)
        env = {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"]}
        r = subprocess.run([KUBECTL, "moat", "version"], env=env, capture_output=True)
        self.assertEqual((r.returncode, r.stdout.split()[0]), (0, b"kubectl-moat"), r.stderr)
        for cmd in ("run", "exec", "cp", "ls", "get", "logs", "delete"):
            r = subprocess.run([PLUGIN, cmd, "--help"], capture_output=True)
            self.assertEqual(r.returncode, 0, cmd)
            self.assertIn(b"Usage: kubectl moat " + cmd.encode(), r.stdout)
        # kubectl's connection flags: --context picks a context of the kubeconfig
        ctx = kubectl("config", "current-context")[1].strip()
        r = subprocess.run([PLUGIN, "ls", "--context", ctx, "-n", self.ns], capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([PLUGIN, "ls", "--context", "no-such-context"], capture_output=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"no-such-context", r.stderr)
        r = subprocess.run([PLUGIN, "frobnicate"], capture_output=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b'unknown command "frobnicate"', r.stderr)
        r = subprocess.run([PLUGIN, "exec", "box"], capture_output=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"no command", r.stderr)

    # ---- run ----
    def test_run_streams_output_and_passes_exit_codes(self):
        for script, code in (("echo ok", 0), ("echo three; exit 3", 3),
                             ("echo pid=$$; kill -9 $$", 137)):
            r = self.moat("run", BUSYBOX, *SMALL, "--", "sh", "-c", script)
            self.assertEqual(r.returncode, code, (script, r.stderr))
        self.assertEqual(r.stdout, b"pid=1\n")  # $$ reached the shell as typed
        # the output as it comes: the first line long before the program ends
        with subprocess.Popen([PLUGIN, "run", BUSYBOX, *SMALL, "--name", "streamed", "-n",
                               self.ns, "--", "sh", "-c", "echo first; sleep 4; echo last"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as p:
            first = p.stdout.readline()
            t_first = time.monotonic()
            rest = p.stdout.read()
            self.assertEqual((first, rest, p.wait(60)), (b"first\n", b"last\n", 0))
        self.assertGreater(time.monotonic() - t_first, 3)
        # deleted afterwards; --keep keeps it
        r = kubectl("get", "sandbox", "streamed", "-n", self.ns, check=False)
        self.assertNotEqual(r[0], 0)
        r = self.moat("run", BUSYBOX, *SMALL, "--keep", "--name", "kept", "--", "true")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(get_json("sandbox", "kept", "-n", self.ns)["status"]["exitCode"], 0)

    def test_run_session_with_stdin(self):
        data = os.urandom(MIB)
        r = self.moat("run", "-i", BUSYBOX, *SMALL, "--", "sh", "-c",
                      "sha256sum; echo err >&2; exit 5", stdin=data)
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertEqual(r.stdout.split()[0].decode(), hashlib.sha256(data).hexdigest())
        self.assertEqual(r.stderr, b"err\n")

    def test_run_interrupted_deletes_its_sandbox(self):
        with subprocess.Popen([PLUGIN, "run", BUSYBOX, *SMALL, "--name", "stopped", "-n",
                               self.ns, "--", "sh", "-c", "echo up; sleep 300"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as p:
            self.assertEqual(p.stdout.readline(), b"up\n")
            p.send_signal(signal.SIGINT)
            self.assertEqual(p.wait(60), 130)
        r = kubectl("get", "sandbox", "stopped", "-n", self.ns, check=False)
        self.assertNotEqual(r[0], 0, "the interrupted run's Sandbox is still there")

    # ---- exec ----
    def test_exec_exit_codes_and_streams(self):
        for script, code in (("true", 0), ("exit 3", 3), ("kill -9 $$", 137)):
            r = self.moat("exec", "box", "--", "sh", "-c", script)
            self.assertEqual(r.returncode, code, (script, r.stderr))
        r = self.moat("exec", "box", "--", "sh", "-c", "echo out; echo err >&2")
        self.assertEqual((r.stdout, r.stderr), (b"out\n", b"err\n"))
        data = os.urandom(3 * MIB)
        r = self.moat("exec", "-i", "box", "--", "sha256sum", stdin=data)
        self.assertEqual(r.stdout.split()[0].decode(), hashlib.sha256(data).hexdigest())
        # a command that leaves its input unread still hands back its exit code
        r = self.moat("exec", "-i", "box", "--", "sh", "-c", "exit 4", stdin=os.urandom(20 * MIB))
        self.assertEqual(r.returncode, 4, r.stderr)
        # without -i the command's stdin is empty, not this process's
        r = self.moat("exec", "box", "--", "cat", stdin=b"not passed")
        self.assertEqual((r.returncode, r.stdout), (0, b""))
        # no shell in the image: the helper runs the program itself
        r = self.moat("exec", "bare", "--", "/app", "hello")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_exec_with_a_terminal(self):
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(PLUGIN, [PLUGIN, "exec", "-t", "box", "-n", self.ns, "--", "sh"])
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        seen = bytearray()

        def until(pattern, timeout=20):
            deadline = time.monotonic() + timeout
            while pattern not in seen and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.2)[0]:
                    try:
                        seen.extend(os.read(fd, 4096))
                    except OSError:
                        break
            return pattern in seen

        self.assertTrue(until(b"# "), seen)  # the remote shell's prompt
        os.write(fd, b"stty size\r")
        self.assertTrue(until(b"33 111"), seen)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 122, 0, 0))
        os.kill(pid, signal.SIGWINCH)  # as the terminal does when it is resized
        # the resize and the keystrokes take two channels: ask again until it has arrived
        for _ in range(10):
            os.write(fd, b"stty size\r")
            if until(b"44 122", 2):
                break
        self.assertIn(b"44 122", seen)
        os.write(fd, b"exit 7\r")
        until(b"never", 2)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        self.assertEqual(os.waitstatus_to_exitcode(status), 7)

    # ---- cp ----
    def test_cp_both_ways_compared_by_hash(self):
        for size in (0, 50 * MIB):
            src = self.path(f"in-{size}")
            with open(src, "wb") as f:
                f.write(os.urandom(size))
            for box in ("box", "bare"):
                r = self.moat("cp", src, f"{box}:/tmp/f-{size}")
                self.assertEqual(r.returncode, 0, r.stderr)
                out = self.path(f"out-{box}-{size}")
                r = self.moat("cp", f"{box}:/tmp/f-{size}", out)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(src, "rb") as a, open(out, "rb") as b:
                    self.assertEqual(hashlib.sha256(a.read()).digest(),
                                     hashlib.sha256(b.read()).digest(), (box, size))
        # a directory as DST takes the file's name
        r = self.moat("cp", "box:/tmp/f-0", self.dir + "/")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(self.path("f-0")))

    def test_cp_errors_leave_nothing_behind(self):
        before = sorted(os.listdir(self.dir))
        r = self.moat("cp", "box:/no/such/file", self.path("never"))
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"No such file or directory (ENOENT)", r.stderr)
        self.assertEqual(sorted(os.listdir(self.dir)), before)  # no part file, no temp file
        big = self.path("big-for-proc")
        with open(big, "wb") as f:
            f.write(os.urandom(20 * MIB))
        r = self.moat("cp", big, "box:/proc/nope")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"box:/proc/nope", r.stderr)
        self.assertIn(b"(E", r.stderr)  # the helper's errno name, not a lost connection
        r = self.moat("cp", "a", "b")
        self.assertEqual(r.returncode, 2)

    # ---- ls, get, logs, delete ----
    def test_ls_and_get_say_what_really_ran(self):
        r = self.moat("ls")
        self.assertEqual(r.returncode, 0, r.stderr)
        line = next(ln for ln in r.stdout.decode().splitlines() if ln.startswith("box "))
        cols = line.split()
        self.assertEqual(cols[1:4], ["Running", "Session", "gvisor"], line)
        r = self.moat("get", "box")
        out = r.stdout.decode()
        self.assertIn("Asked:      isolation GVisor\n", out)
        self.assertIn("Isolation:  gvisor (runsc", out)
        self.assertIn("Why:        isolation GVisor requested", out)
        self.assertRegex(out, r"Idle:       \d+[smh]")

    def test_logs_and_delete(self):
        r = self.moat("run", BUSYBOX, *SMALL, "--keep", "--name", "logged", "--", "sh", "-c",
                      "echo line1; echo line2")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.moat("logs", "logged")
        self.assertEqual((r.returncode, r.stdout), (0, b"line1\nline2\n"))
        r = self.moat("logs", "-f", "logged")
        self.assertEqual(r.stdout, b"line1\nline2\n")
        r = self.moat("delete", "logged")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: kubectl("get", "sandbox", "logged", "-n", self.ns, check=False)[0] != 0,
                 60, what="logged gone")
        for args in (("exec", "logged", "--", "true"), ("get", "logged"), ("logs", "logged")):
            r = self.moat(*args)
            self.assertIn(f"sandbox {self.ns}/logged not found".encode(), r.stderr, args)
            self.assertEqual(r.returncode, 125 if args[0] == "exec" else 1, args)

    def test_flags_before_the_command_and_options_after_the_name(self):
        # -n before the command, -i after the name: both read (getopt starts over)
        r = subprocess.run([PLUGIN, "-n", self.ns, "exec", "box", "-i", "--", "cat"],
                           input=b"through", capture_output=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout), (0, b"through"), r.stderr)
        r = subprocess.run([PLUGIN, "-n", self.ns, "run", BUSYBOX, *SMALL, "--keep", "--name",
                            "flagged", "--", "true"], capture_output=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(get_json("sandbox", "flagged", "-n", self.ns)["spec"]["command"],
                         ["true"])
        r = self.moat("delete", "flagged", "no-such-one", "also-missing")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"sandbox %s/flagged deleted" % self.ns.encode(), r.stdout)
        self.assertIn(b"no-such-one not found", r.stderr)
        self.assertIn(b"also-missing not found", r.stderr)  # every name tried

    def test_a_reader_gone_still_deletes_the_run(self):
        # `run ... | head -c 5`: the pipe closes early; the error is said, the Sandbox deleted
        with subprocess.Popen([PLUGIN, "run", BUSYBOX, *SMALL, "--name", "piped", "-n",
                               self.ns, "--", "sh", "-c", "while echo line; do :; done"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
            self.assertEqual(p.stdout.read(5), b"line\n")
            p.stdout.close()
            self.assertEqual(p.wait(120), 125)
            self.assertIn(b"Broken pipe", p.stderr.read())
        r = kubectl("get", "sandbox", "piped", "-n", self.ns, check=False)
        self.assertNotEqual(r[0], 0, "the Sandbox of a run whose reader went away is still there")

    def test_interrupting_a_session_run_and_an_exec(self):
        # the exec's event loop is woken by the signal, whatever it waits for
        for args, name in ((["run", "--session", BUSYBOX, *SMALL, "--name", "quiet"], "quiet"),
                           (["exec", "box"], None)):
            with subprocess.Popen([PLUGIN, *args, "-n", self.ns, "--", "sh", "-c",
                                   "echo up; sleep 300"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL) as p:
                self.assertEqual(p.stdout.readline(), b"up\n")
                t0 = time.monotonic()
                p.send_signal(signal.SIGINT)
                self.assertEqual(p.wait(30), 130)
                self.assertLess(time.monotonic() - t0, 10)
            if name:
                r = kubectl("get", "sandbox", name, "-n", self.ns, check=False)
                self.assertNotEqual(r[0], 0)
        # the exec's command went with it (its framed stdin ended)
        wait_for(lambda: b"sleep 300" not in self.moat("exec", "box", "--", "ps").stdout, 20,
                 what="the interrupted command gone")

    def test_cp_modes_and_stdin(self):
        tool = self.path("tool.sh")
        with open(tool, "wb") as f:
            f.write(b"#!/bin/sh\necho tool\n")
        os.chmod(tool, 0o750)
        r = self.moat("cp", tool, "box:/tmp/tool.sh")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.moat("exec", "box", "--", "/tmp/tool.sh").stdout, b"tool\n")
        back = self.path("tool-back.sh")
        r = self.moat("cp", "box:/tmp/tool.sh", back)
        self.assertEqual(r.returncode, 0, r.stderr)
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(os.stat(back).st_mode & 0o777, 0o750 & ~umask)  # +x kept
        # from stdin: all or nothing too (its size known before it is sent)
        data = os.urandom(2 * MIB + 3)
        r = self.moat("cp", "-", "box:/tmp/from-stdin", stdin=data)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.moat("cp", "box:/tmp/from-stdin", "-")
        self.assertEqual(r.stdout, data)
        r = self.moat("cp", "box:/tmp", self.path("dir-out"))
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"a dir (cp copies files)", r.stderr)

    # ---- errors a person acts on ----
    def test_refused_spec_names_the_field(self):
        r = self.moat("run", BUSYBOX, "--isolation", "Bogus", "--", "true")
        self.assertEqual(r.returncode, 125)
        self.assertIn(b"spec.isolation", r.stderr)
        r = self.moat("run", BUSYBOX, "--timeout", "forever", "--", "true")
        self.assertEqual(r.returncode, 125)
        self.assertIn(b"spec.timeout", r.stderr)

    def test_vm_isolation_without_a_hypervisor(self):
        r = self.moat("run", BUSYBOX, *SMALL, "--isolation", "VM", "--name", "vm", "--", "true",
                      timeout=120)
        self.assertEqual(r.returncode, 125)
        self.assertIn(b"isolation VM: no node has a usable hypervisor", r.stderr)
        r = kubectl("get", "sandbox", "vm", "-n", self.ns, check=False)
        self.assertNotEqual(r[0], 0, "the refused run's Sandbox is still there")

    def test_a_user_without_pods_exec(self):
        # a ServiceAccount that may read Sandboxes and Pods but not exec: its token only
        ns = self.ns
        kubectl("create", "serviceaccount", "reader", "-n", ns)
        kubectl("create", "role", "reader", "-n", ns, "--verb=get,list,watch",
                "--resource=sandboxes.moat.dev,pods,pods/log")
        kubectl("create", "rolebinding", "reader", "-n", ns, "--role=reader",
                f"--serviceaccount={ns}:reader")
        token = kubectl("create", "token", "reader", "-n", ns)[1].strip()
        admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json")[1])
        cluster = admin["clusters"][0]["cluster"]
        if "certificate-authority" in cluster:
            with open(cluster.pop("certificate-authority"), "rb") as f:
                cluster["certificate-authority-data"] = base64.b64encode(f.read()).decode()
        kc = {"apiVersion": "v1", "kind": "Config", "current-context": "reader",
              "clusters": [{"name": "c", "cluster": cluster}],
              "users": [{"name": "reader", "user": {"token": token}}],
              "contexts": [{"name": "reader",
                            "context": {"cluster": "c", "user": "reader", "namespace": ns}}]}
        path = self.path("reader.kubeconfig")
        with open(path, "w") as f:
            json.dump(kc, f)
        for args in (["--kubeconfig", path, "get", "box"], ["get", "box", "--kubeconfig", path]):
            r = subprocess.run([PLUGIN, *args], capture_output=True)  # the flag before or after
            self.assertEqual(r.returncode, 0, r.stderr)  # the token works: reads are allowed
            self.assertIn(b"Name:       box", r.stdout)
        r = subprocess.run([PLUGIN, "exec", "box", "--kubeconfig", path, "--", "true"],
                           capture_output=True)
        self.assertEqual(r.returncode, 125)
        self.assertIn(b"forbidden: you may not create pods/exec", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
