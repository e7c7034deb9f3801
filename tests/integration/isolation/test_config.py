"""Moat's containerd runtime entries against a real containerd 2.x: gen_config (the
installer's code path: iso_containerd_block + merge, iso_runsc_toml) merges them into a base
config; containerd validates and starts with it, its CRI Status lists every handler, and
gVisor pods run through the generated runsc and runsc-nonet handlers, each with the
runsc.toml Moat wrote. The independent CRI client is Python grpcio with stubs generated from
the upstream api.proto, as in tests/integration/shim/test_shim.py.

The standalone containerd comes from e2e/node/node.sh (`containerd`: its own state, socket,
bridge and CNI under a temporary MOAT_CLUSTER_DIR, the locally built images imported); the
test then restarts it on the merged config, and `node.sh down` cleans everything up."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
BIN = os.path.join(CACHE, "bin")
GEN = os.environ.get("MOAT_GEN_CONFIG",
                     os.path.join(ROOT, "build", "tests", "integration", "gen_config"))
PROTO = os.path.join(CACHE, "go", "mod", "k8s.io", "cri-api@v0.35.4", "pkg", "apis", "runtime",
                     "v1", "api.proto")
WORK = tempfile.mkdtemp(prefix="moat-config-test-")
NODE_ENV = dict(os.environ, MOAT_CLUSTER_DIR=WORK, MOAT_BRIDGE="moat-brc",
                MOAT_POD_CIDR="10.93.0.0/16", MOAT_NODE_IP="10.93.0.1")
NODE = os.path.join(WORK, "node")
SOCK = os.path.join(NODE, "containerd", "containerd.sock")
CONFIG = os.path.join(NODE, "containerd", "config.toml")
PIDFILE = os.path.join(NODE, "run", "containerd.pid")
# runsc's files under node.sh's runsc dir: `node.sh down` kills and deletes what is there
RUNSC_DIR = os.path.join(NODE, "runsc", "moat")
RUNSC_LOGS = os.path.join(NODE, "runsc", "moat-logs")
RUNSC_ROOT = os.path.join(NODE, "runsc", "root")
HANDLERS = ["runsc", "runsc-nonet", "runsc-nvproxy", "kata-clh", "kata-qemu-nvidia-gpu"]


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cri_stubs  # noqa: E402

api, rpc = cri_stubs.load(os.path.join(WORK, "stubs"), PROTO)


def node(cmd):
    subprocess.run(["bash", os.path.join(ROOT, "e2e", "node", "node.sh"), cmd], env=NODE_ENV,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def without_runsc(text):
    """node.sh's config minus its own runsc and runsc-nonet runtimes: the user's file that
    Moat merges into (lines of every table under ...runtimes.runsc*, headers included)."""
    out, skip = [], False
    for line in text.splitlines(keepends=True):
        s = line.strip()
        if s.startswith("["):
            skip = ".containerd.runtimes.runsc" in s
        if not skip:
            out.append(line)
    return "".join(out)


def gen(*args, check=True):
    p = subprocess.run([GEN, *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"gen_config {' '.join(args)}: {p.returncode}: {p.stderr}")
    return p


def merge(base, out):
    return gen("merge", base, out, "--runsc", os.path.join(BIN, "runsc"), "--runsc-dir",
               RUNSC_DIR, "--runsc-root", RUNSC_ROOT, "--log-dir", RUNSC_LOGS,
               # this machine's probe finds no usable hypervisor (kvm_pvm, no vmx/svm)
               "--platform", "systrap", *[f"{h}={h}" for h in HANDLERS])


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def stop_containerd():
    with open(PIDFILE) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 20
    while not gone(pid):
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def start_containerd(config):
    """containerd on config, as node.sh starts it; its pid goes into node.sh's pid file so
    `node.sh down` stops it; a thread reaps it."""
    env = dict(os.environ, PATH=BIN + ":" + os.environ["PATH"])
    with open(os.path.join(NODE, "logs", "containerd-moat.log"), "a") as log:
        proc = subprocess.Popen([os.path.join(BIN, "containerd"), "--config", config],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True)
    with open(PIDFILE, "w") as f:
        f.write(f"{proc.pid}\n")
    threading.Thread(target=proc.wait, daemon=True).start()
    deadline = time.time() + 20
    while True:
        ch = grpc.insecure_channel("unix:" + SOCK)
        try:
            rpc.RuntimeServiceStub(ch).Version(api.VersionRequest(), timeout=1)
            return proc, ch
        except grpc.RpcError:
            ch.close()
            if proc.poll() is not None or time.time() > deadline:
                with open(os.path.join(NODE, "logs", "containerd-moat.log")) as f:
                    raise RuntimeError("containerd did not start:\n" + f.read()[-3000:])
            time.sleep(0.1)


class ConfigTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        node("containerd")
        try:
            cls.nodesh = os.path.join(WORK, "node-sh.toml")
            shutil.copy(CONFIG, cls.nodesh)
            cls.base = os.path.join(WORK, "base.toml")
            with open(cls.base, "w") as f:
                f.write(without_runsc(read(CONFIG).decode()))
            os.makedirs(RUNSC_DIR, exist_ok=True)
            cls.merged = os.path.join(WORK, "merged.toml")
            merge(cls.base, cls.merged)
            stop_containerd()
            shutil.copy(cls.merged, CONFIG)
            cls.proc, cls.ch = start_containerd(CONFIG)
        except BaseException:
            node("down")  # tearDownClass does not run when setUpClass fails
            shutil.rmtree(WORK, ignore_errors=True)
            raise
        cls.rt = rpc.RuntimeServiceStub(cls.ch)
        cls.pods = []

    @classmethod
    def tearDownClass(cls):
        for pid in cls.pods:
            try:
                cls.rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pid), timeout=30)
                cls.rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pid),
                                        timeout=30)
            except grpc.RpcError:
                pass
        cls.ch.close()
        node("down")
        shutil.rmtree(WORK, ignore_errors=True)

    def run_pod(self, name, handler):
        cfg = api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name=name, uid=f"{name}-uid", namespace="moat-test"),
            log_directory=os.path.join(WORK, "logs", name))
        r = self.rt.RunPodSandbox(api.RunPodSandboxRequest(config=cfg, runtime_handler=handler),
                                  timeout=90)
        self.pods.append(r.pod_sandbox_id)
        c = self.rt.CreateContainer(api.CreateContainerRequest(
            pod_sandbox_id=r.pod_sandbox_id, sandbox_config=cfg, config=api.ContainerConfig(
                metadata=api.ContainerMetadata(name="main"),
                image=api.ImageSpec(image="moat.local/busybox:1.35"), command=["sleep", "300"],
                log_path="main.log")), timeout=60)
        self.rt.StartContainer(api.StartContainerRequest(container_id=c.container_id), timeout=60)
        return r.pod_sandbox_id, c.container_id

    def exec(self, cid, *cmd):
        out = self.rt.ExecSync(api.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=20),
                               timeout=30)
        self.assertEqual(out.exit_code, 0, out.stderr)
        return out.stdout.decode()

    def test_containerd_validates_the_merged_config(self):
        dump = subprocess.run([os.path.join(BIN, "containerd"), "--config", self.merged,
                               "config", "dump"], capture_output=True, text=True)
        self.assertEqual(dump.returncode, 0, dump.stderr)
        for h in HANDLERS + ["runc"]:
            self.assertIn(f"containerd.runtimes.{h}]", dump.stdout)
        self.assertIn(f"ConfigPath = '{RUNSC_DIR}/runsc-nonet.toml'", dump.stdout)
        self.assertIn("runtime_path = '/opt/kata/bin/containerd-shim-kata-v2'", dump.stdout)

    def test_status_lists_every_handler(self):
        st = self.rt.Status(api.StatusRequest(), timeout=10)
        names = {h.name for h in st.runtime_handlers}
        for h in HANDLERS + ["runc"]:
            self.assertIn(h, names)

    def test_gvisor_pod_through_the_generated_runsc_handler(self):
        pid, cid = self.run_pod("gvisor", "runsc")
        st = self.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid))
        self.assertEqual(st.status.runtime_handler, "runsc")
        self.assertIn("Starting gVisor", self.exec(cid, "dmesg"))
        self.assertNotEqual(self.exec(cid, "uname", "-r").strip(), os.uname().release)
        # the shim ran with Moat's runsc.toml: its log_path and runsc's debug-log are there
        self.assertTrue(os.path.exists(os.path.join(RUNSC_LOGS, f"runsc-shim-{pid}.log")),
                        os.listdir(RUNSC_LOGS) if os.path.isdir(RUNSC_LOGS) else "no log dir")
        logs = os.path.join(RUNSC_LOGS, pid)
        boot = "".join(read(os.path.join(logs, f)).decode(errors="replace")
                       for f in os.listdir(logs) if "boot" in f)
        self.assertIn("systrap", boot, os.listdir(logs))

    def test_no_network_pod_through_runsc_nonet(self):
        pid, cid = self.run_pod("nonet", "runsc-nonet")
        self.assertIn("Starting gVisor", self.exec(cid, "dmesg"))
        # network = "none": the sandbox has loopback only, although CNI gave the pod eth0
        devs = self.exec(cid, "cat", "/proc/net/dev")
        self.assertIn("lo:", devs)
        self.assertNotIn("eth0", devs)

    def test_refuses_a_config_that_defines_runsc(self):
        # node.sh's own config has runsc and runsc-nonet tables
        p = gen("merge", self.nodesh, os.path.join(WORK, "never.toml"), "--runsc-dir", RUNSC_DIR,
                "runsc=runsc", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn('[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc]',
                      p.stderr)
        self.assertFalse(os.path.exists(os.path.join(WORK, "never.toml")))

    def test_second_merge_changes_nothing_and_unmerge_gives_the_base_back(self):
        again = os.path.join(WORK, "merged-again.toml")
        merge(self.merged, again)
        self.assertEqual(read(again), read(self.merged))
        back = os.path.join(WORK, "unmerged.toml")
        gen("unmerge", self.merged, back)
        self.assertEqual(read(back), read(self.base))

    def test_version_2_block_is_read_by_containerd(self):
        # containerd 1.7's format: containerd 2.x reads it through its own migration
        src = os.path.join(ROOT, "tests", "golden", "installer", "base-user-v2.toml")
        out = os.path.join(WORK, "merged-v2.toml")
        merge(src, out)
        dump = subprocess.run([os.path.join(BIN, "containerd"), "--config", out, "config",
                               "dump"], capture_output=True, text=True)
        self.assertEqual(dump.returncode, 0, dump.stderr)
        self.assertIn("io.containerd.cri.v1.runtime'.containerd.runtimes.runsc-nvproxy]",
                      dump.stdout)
        self.assertIn("containerd.runtimes.nvidia]", dump.stdout)  # the user's runtime kept


if __name__ == "__main__":
    unittest.main(verbosity=2)
