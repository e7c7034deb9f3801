"""moat-install against real components: a standalone containerd 2.x and a standalone kubelet
(no API server: no --kubeconfig, its own root dir and ports), each with its own config and
state under a temporary directory, run as services by the installer's process backend.

- config mode in a scratch host root (--host-root) holding what e2e/node/node.sh writes for
  containerd: install, re-run (nothing changed, nothing restarted), a node with a hypervisor
  (moat-vm appears), uninstall (every file back to its original sha256, nothing left over);
  containerd restarted on each change and its CRI Status listing the handlers.
- shim mode with real processes: moat-cri started by the installer from its bundle
  (isolation/bundle.sh), CRI Version answered through moat-cri by containerd, kubelet pointed
  at moat-cri and healthy, re-run, uninstall, and a rollback when kubelet does not come back
  healthy (kubelet's config byte for byte, moat-cri stopped).
- the installed moat-cri in a chroot holding only what the installer put there (plus /proc,
  /dev and containerd's socket): it starts and answers Version and /healthz.
"""
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import grpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
BIN = os.path.join(CACHE, "bin")
INSTALL = os.environ.get("MOAT_INSTALL", os.path.join(ROOT, "build", "isolation", "moat-install"))
CRI = os.environ.get("MOAT_CRI", os.path.join(ROOT, "build", "cri-shim", "moat-cri"))
BUNDLE_SH = os.path.join(ROOT, "isolation", "bundle.sh")
PROTO = os.path.join(CACHE, "go", "mod", "k8s.io", "cri-api@v0.35.4", "pkg", "apis", "runtime",
                     "v1", "api.proto")
WORK = tempfile.mkdtemp(prefix="moat-install-test-")
ENV = dict(os.environ, PATH=BIN + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
WALL_TABLE = "moat_itest_install"  # moat-cri's egress wall (cri-shim/wall.h): this test's own
CHROOT_TABLE = "moat_itest_chroot"


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cri_stubs  # noqa: E402

api, rpc = cri_stubs.load(os.path.join(WORK, "stubs"), PROTO)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(root):
    """Every file under root with its sha256, every directory with None."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs:
            out[os.path.relpath(os.path.join(d, n), root)] = None
        for n in files:
            p = os.path.join(d, n)
            if not os.path.isfile(p):  # sockets
                out[os.path.relpath(p, root)] = "not a file"
                continue
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def containerd_config(state, sock, runsc_toml_dir=None):
    """What e2e/node/node.sh writes (its gVisor handlers only when runsc_toml_dir is set: a
    node before Moat's shim mode has none), with state and socket under the test's dir."""
    runsc = ""
    if runsc_toml_dir:
        runsc = f"""    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc]
      runtime_type = "io.containerd.runsc.v1"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "{runsc_toml_dir}/runsc.toml"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc-nonet]
      runtime_type = "io.containerd.runsc.v1"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc-nonet.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "{runsc_toml_dir}/runsc-nonet.toml"
"""
    return f"""version = 3
root = "{state}/root"
state = "{state}/state"

[grpc]
  address = "{sock}"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  restrict_oom_score_adj = true
  # Pod network namespaces under the state dir, not /var/run/netns: down removes them all.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
{runsc}  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{state}/cni/net.d"

[plugins."io.containerd.cri.v1.images"]
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "moat.local/pause:3.10"
"""


def kubelet_config(endpoint, healthz_port, port, logs):
    """A standalone kubelet's configuration (node.sh's, without the API server's parts):
    no QoS cgroups, so it leaves this machine's cgroups alone."""
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# the runtime kubelet talks to
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
containerRuntimeEndpoint: unix://{endpoint}
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
failSwapOn: false
podLogsDir: {logs}
"""


def bundle(out, prefix):
    for b in (CRI, os.path.join(BIN, "runsc"), os.path.join(BIN, "containerd-shim-runsc-v1")):
        subprocess.run(["bash", BUNDLE_SH, b, out, prefix], check=True, stdout=subprocess.DEVNULL)


def run_install(*args, check=True):
    p = subprocess.run([INSTALL, *args], env=ENV, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"moat-install {' '.join(args)} exited {p.returncode}:\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


def pid_of(svc_dir, name):
    """The pid the process backend recorded, if that process still runs (not a zombie)."""
    try:
        with open(os.path.join(svc_dir, name + ".pid")) as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return None
        return pid
    except (FileNotFoundError, ValueError):
        return None


def wait(what, fn, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception:  # noqa: BLE001 - not there yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def nft_table(name):
    """Whether nftables holds table inet <name>."""
    return subprocess.run(["nft", "list", "table", "inet", name], capture_output=True).returncode == 0


def healthz(port):
    with NO_PROXY.open(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
        return r.status == 200 and r.read().strip() == b"ok"


def cri(sock):
    ch = grpc.insecure_channel("unix:" + sock)
    return ch, rpc.RuntimeServiceStub(ch)


def version(sock):
    ch, rt = cri(sock)
    try:
        return rt.Version(api.VersionRequest(version="0.1.0"), timeout=5)
    finally:
        ch.close()


def handlers(sock):
    ch, rt = cri(sock)
    try:
        return {h.name for h in rt.Status(api.StatusRequest(), timeout=5).runtime_handlers}
    finally:
        ch.close()


def cleanup():
    """Every process with WORK on its command line, then mounts under WORK, then WORK, and
    the egress wall tables a failed test may have left."""
    for table in (WALL_TABLE, CHROOT_TABLE):
        for family in ("inet", "netdev"):  # the wall is one table of each
            subprocess.run(["nft", "delete", "table", family, table], capture_output=True)
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if WORK.encode() in f.read():
                    os.kill(int(p), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    time.sleep(0.3)
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if f" {WORK}/" in line]
    for m in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    shutil.rmtree(WORK, ignore_errors=True)


class ConfigMode(unittest.TestCase):
    """Config mode in a scratch host root (default host paths under --host-root)."""

    def setUp(self):
        self.host = os.path.join(WORK, "c", "host")
        self.state = os.path.join(WORK, "c", "containerd")
        # The socket where the host root's default path puts it (the installer asks
        # containerd for its Version after each restart).
        self.sock = os.path.join(self.host, "run", "containerd", "containerd.sock")
        self.svc = os.path.join(WORK, "c", "svc")
        self.image = os.path.join(WORK, "c", "image")
        bundle(self.image, "/opt/moat")
        self.cfg = os.path.join(self.host, "etc", "containerd", "config.toml")
        # node.sh's config, gVisor handlers included (config mode adds moat-* next to them).
        write(self.cfg, containerd_config(self.state, self.sock, "/etc/moat/node-runsc"))
        write(os.path.join(self.host, "var", "lib", "kubelet", "config.yaml"),
              kubelet_config("/run/containerd/containerd.sock", 10248, 10250, "/var/log/pods"))
        write(os.path.join(self.svc, "containerd.argv"),
              f"{BIN}/containerd\n--config\n{self.cfg}\n")
        self.args = ["--mode", "config", "--host-root", self.host, "--bundle", self.image,
                     f"--service-manager=process:{self.svc}"]
        run_install("service", "start", "containerd", *self.args)
        wait("containerd", lambda: version(self.sock))

    def tearDown(self):
        run_install("service", "stop", "containerd", *self.args, check=False)

    def containerd_pid(self):
        return pid_of(self.svc, "containerd")

    def test_config_mode(self):
        before = tree(self.host)
        cfg_sha = sha(self.cfg)
        self.assertNotIn("moat-auto", handlers(self.sock))
        pid0 = self.containerd_pid()

        p = run_install("install", *self.args, "--assume-hypervisor", "none")
        self.assertIn("wrote /etc/containerd/config.toml", p.stdout)
        self.assertIn("restarted containerd", p.stdout)
        pid1 = self.containerd_pid()
        self.assertNotEqual(pid0, pid1)
        got = wait("handlers", lambda: handlers(self.sock))
        self.assertTrue({"runc", "runsc", "runsc-nonet", "moat-auto", "moat-gvisor"} <= got, got)
        self.assertNotIn("moat-vm", got)
        with open(os.path.join(self.host, "etc", "moat", "runsc", "moat-auto.toml")) as f:
            toml = f.read()
        self.assertIn('platform = "systrap"', toml)
        self.assertIn('binary_name = "/usr/local/bin/runsc"', toml)
        self.assertEqual(sha(os.path.join(self.host, "usr", "local", "bin", "runsc")),
                         sha(os.path.join(BIN, "runsc")))
        self.assertFalse(os.path.exists(os.path.join(self.host, "opt", "moat")))  # no moat-cri

        p = run_install("install", *self.args, "--assume-hypervisor", "none")
        self.assertEqual(p.stdout, "moat-install: nothing changed\n")
        self.assertEqual(self.containerd_pid(), pid1)

        # A node with a usable hypervisor: moat-vm to kata-clh, gVisor on its kvm platform.
        p = run_install("install", *self.args, "--assume-hypervisor", "kvm")
        self.assertIn("restarted containerd", p.stdout)
        got = wait("handlers", lambda: "moat-vm" in handlers(self.sock) and handlers(self.sock))
        self.assertIn("moat-vm", got)
        with open(os.path.join(self.host, "etc", "moat", "runsc", "moat-auto.toml")) as f:
            self.assertIn('platform = "kvm"', f.read())
        pid2 = self.containerd_pid()

        p = run_install("uninstall", *self.args)
        self.assertIn("restarted containerd", p.stdout)
        self.assertNotEqual(self.containerd_pid(), pid2)
        self.assertEqual(sha(self.cfg), cfg_sha)
        self.assertEqual(tree(self.host), before)
        got = wait("handlers", lambda: handlers(self.sock))
        self.assertNotIn("moat-auto", got)
        p = run_install("uninstall", *self.args)
        self.assertEqual(p.stdout, "moat-install: nothing changed\n")


class ShimMode(unittest.TestCase):
    """Shim mode with real processes. Host root "/": every path the installer writes is
    under H, so containerd and kubelet (not chrooted) read the same paths the configs name."""

    @classmethod
    def setUpClass(cls):
        base = os.path.join(WORK, "s")
        cls.h = H = os.path.join(base, "h")
        cls.run_dir = os.path.join(base, "run")
        cls.svc = os.path.join(base, "svc")
        cls.cd_sock = os.path.join(cls.run_dir, "containerd", "containerd.sock")
        cls.cri_sock = os.path.join(cls.run_dir, "moat", "cri.sock")
        cls.cfg = os.path.join(H, "etc", "containerd", "config.toml")
        cls.kcfg = os.path.join(H, "var", "lib", "kubelet", "config.yaml")
        cls.prefix = os.path.join(H, "opt", "moat")
        cls.image = os.path.join(base, "image")
        cls.hz, cls.kport, cls.mport = free_port(), free_port(), free_port()
        bundle(cls.image, cls.prefix)
        write(cls.cfg, containerd_config(os.path.join(base, "containerd"), cls.cd_sock))
        write(cls.kcfg, kubelet_config(cls.cd_sock, cls.hz, cls.kport, os.path.join(base, "pods")))
        write(os.path.join(cls.svc, "containerd.argv"), f"{BIN}/containerd\n--config\n{cls.cfg}\n")
        write(os.path.join(cls.svc, "kubelet.argv"),
              f"{BIN}/kubelet\n--config={cls.kcfg}\n--root-dir={base}/kubelet\n"
              f"--cert-dir={base}/pki\n--v=1\n")
        cls.args = ["--mode", "shim", "--host-root", "/", "--bundle", cls.image,
                    "--prefix", cls.prefix, "--bin-dir", os.path.join(H, "usr", "local", "bin"),
                    "--state-dir", os.path.join(H, "var", "lib", "moat"),
                    "--containerd-config", cls.cfg, "--containerd-socket", cls.cd_sock,
                    "--runsc-config-dir", os.path.join(H, "etc", "moat", "runsc"),
                    "--cri-config", os.path.join(H, "etc", "moat", "cri.yaml"),
                    "--cri-socket", cls.cri_sock, "--cri-metrics", f"127.0.0.1:{cls.mport}",
                    "--kubelet-config", cls.kcfg,
                    "--kubelet-healthz", f"http://127.0.0.1:{cls.hz}/healthz",
                    "--kubelet-settle", "3000", "--kubelet-timeout", "60000",
                    f"--service-manager=process:{cls.svc}", "--assume-hypervisor", "none",
                    "--egress-wall-table", WALL_TABLE]
        run_install("service", "start", "containerd", *cls.args)
        wait("containerd", lambda: version(cls.cd_sock))
        run_install("service", "start", "kubelet", *cls.args)
        wait("kubelet healthz", lambda: healthz(cls.hz))
        cls.before = tree(H)
        cls.cfg_sha, cls.kcfg_sha = sha(cls.cfg), sha(cls.kcfg)

    @classmethod
    def tearDownClass(cls):
        for name in ("kubelet", "moat-cri", "containerd"):
            run_install("service", "stop", name, *cls.args, check=False)

    def pid(self, name):
        return pid_of(self.svc, name)

    def metrics(self):
        with NO_PROXY.open(f"http://127.0.0.1:{self.mport}/metrics", timeout=5) as r:
            return r.read().decode()

    def calls(self, method):
        """moat-cri's count of successful calls of a RuntimeService method."""
        key = f'moat_cri_calls_total{{method="/runtime.v1.RuntimeService/{method}",result="ok"}} '
        for line in self.metrics().splitlines():
            if line.startswith(key):
                return int(line[len(key):])
        return 0

    def assert_back_to_original(self):
        self.assertEqual(sha(self.cfg), self.cfg_sha)
        self.assertEqual(sha(self.kcfg), self.kcfg_sha)
        self.assertEqual(tree(self.h), self.before)
        self.assertIsNone(self.pid("moat-cri"))
        self.assertFalse(os.path.exists(os.path.join(self.svc, "moat-cri.argv")))

    def test_1_install_rerun_chroot_uninstall(self):
        k0, c0 = self.pid("kubelet"), self.pid("containerd")
        p = run_install("install", *self.args)
        for line in ("restarted containerd", "defined service moat-cri", "restarted moat-cri",
                     "restarted kubelet", f"wrote {self.kcfg}"):
            self.assertIn(line, p.stdout)
        # Order: kubelet only after moat-cri runs.
        self.assertLess(p.stdout.index("restarted moat-cri"), p.stdout.index("restarted kubelet"))
        k1, c1, m1 = self.pid("kubelet"), self.pid("containerd"), self.pid("moat-cri")
        self.assertNotEqual(k0, k1)
        self.assertNotEqual(c0, c1)
        self.assertIsNotNone(m1)
        with open(self.kcfg) as f:
            self.assertIn(f'containerRuntimeEndpoint: "unix://{self.cri_sock}"\n', f.read())
        self.assertTrue(healthz(self.hz))

        # moat-cri runs from the bundle: its loader and libc are the bundled ones.
        self.assertEqual(os.readlink(f"/proc/{m1}/exe"), os.path.join(self.prefix, "bin",
                                                                      "moat-cri"))
        with open(f"/proc/{m1}/maps") as f:
            maps = f.read()
        self.assertIn(os.path.join(self.prefix, "lib", "libc.so.6"), maps)
        self.assertIn(os.path.join(self.prefix, "lib", "ld-linux-x86-64.so.2"), maps)
        self.assertNotIn("/lib/x86_64-linux-gnu/libc.so.6", maps)

        # Version through moat-cri is containerd's; kubelet's own calls go through it.
        v = version(self.cri_sock)
        self.assertEqual(v.runtime_name, "containerd")
        self.assertEqual(v, version(self.cd_sock))
        wait("kubelet's calls through moat-cri", lambda: self.calls("ListPodSandbox") > 0)
        self.assertTrue(nft_table(WALL_TABLE), "moat-cri raised no egress wall")
        self.assertTrue({"runsc", "runsc-nonet", "moat-auto"} <= handlers(self.cri_sock))

        p = run_install("install", *self.args)
        self.assertEqual(p.stdout, "moat-install: nothing changed\n")
        self.assertEqual((self.pid("kubelet"), self.pid("containerd"), self.pid("moat-cri")),
                         (k1, c1, m1))

        self.chroot_moat_cri()

        p = run_install("uninstall", *self.args)
        for line in ("restored " + self.kcfg, "restarted kubelet",
                     "stopped and removed service moat-cri", "restarted containerd",
                     f"removed nftables table inet {WALL_TABLE}"):
            self.assertIn(line, p.stdout)
        self.assertFalse(nft_table(WALL_TABLE))
        self.assert_back_to_original()
        wait("kubelet healthy on containerd again", lambda: healthz(self.hz))
        p = run_install("uninstall", *self.args)
        self.assertEqual(p.stdout, "moat-install: nothing changed\n")

    def chroot_moat_cri(self):
        """The installed moat-cri in a root holding only the installer's files (the prefix,
        bind-mounted read-only at its own path), /proc, /dev and containerd's socket."""
        root = os.path.join(WORK, "chroot")
        for d in (self.prefix, os.path.dirname(self.cd_sock), "proc", "dev", "tmp", "run"):
            os.makedirs(os.path.join(root, d.lstrip("/")), exist_ok=True)
        port = free_port()
        script = f"""set -e
mount --bind {self.prefix} {root}{self.prefix}
mount -o remount,bind,ro {root}{self.prefix}
mount --bind {os.path.dirname(self.cd_sock)} {root}{os.path.dirname(self.cd_sock)}
mount -t proc proc {root}/proc
mount --rbind /dev {root}/dev
test ! -e {root}/lib && test ! -e {root}/usr && test ! -e {root}/lib64 && test ! -e {root}/etc
echo 'egressWall: {{table: {CHROOT_TABLE}}}' >{root}/tmp/cri.yaml
exec chroot {root} {self.prefix}/bin/moat-cri --config /tmp/cri.yaml --listen /run/cri.sock \
    --upstream {self.cd_sock} --metrics-addr 127.0.0.1:{port}
"""
        log = open(os.path.join(WORK, "chroot-moat-cri.log"), "w")
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 script], stdout=log, stderr=log)
        try:
            sock = os.path.join(root, "run", "cri.sock")
            v = wait("moat-cri in the chroot", lambda: proc.poll() is None and version(sock),
                     timeout=20)
            self.assertEqual(v.runtime_name, "containerd")
            self.assertTrue(healthz(port))
            # its egress wall, from libnftables in the bundle
            self.assertTrue(nft_table(CHROOT_TABLE))
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(20)
            log.close()
            for family in ("inet", "netdev"):
                subprocess.run(["nft", "delete", "table", family, CHROOT_TABLE],
                               capture_output=True)
        with open(os.path.join(WORK, "chroot-moat-cri.log")) as f:
            out = f.read()
        self.assertEqual(code, 0, out)

    def test_2_rollback(self):
        """kubelet's health endpoint stays down after the restart (the installer is told to
        watch a port nothing listens on): kubelet's config back byte for byte, kubelet
        restarted again, moat-cri stopped and removed."""
        run_install("uninstall", *self.args)  # whatever test_1 left, should it have failed
        self.assert_back_to_original()
        dead = free_port()
        args = [a if a != f"http://127.0.0.1:{self.hz}/healthz" else
                f"http://127.0.0.1:{dead}/healthz" for a in self.args]
        args += ["--kubelet-timeout", "4000"]
        k0 = self.pid("kubelet")
        p = run_install("install", *args, check=False)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("is not healthy; rolled back", p.stderr)
        self.assertIn("restored " + self.kcfg, p.stdout)
        self.assertIn("stopped and removed moat-cri", p.stdout)
        self.assertEqual(p.stdout.count("restarted kubelet"), 2)
        self.assertEqual(sha(self.kcfg), self.kcfg_sha)
        self.assertIsNone(self.pid("moat-cri"))
        self.assertNotEqual(self.pid("kubelet"), k0)
        wait("kubelet healthy on containerd", lambda: healthz(self.hz))
        run_install("uninstall", *self.args)
        self.assert_back_to_original()


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        if not os.environ.get("MOAT_TEST_KEEP"):  # keep WORK (processes stopped) to debug
            cleanup()
