"""moat-cri in front of a real containerd 2.x (its own config and state), with an
independent CRI client: Python grpcio from Debian with stubs generated from the upstream
api.proto of k8s.io/cri-api at the pinned version."""
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
SHIM = os.environ.get("MOAT_CRI", os.path.join(ROOT, "build", "cri-shim", "moat-cri"))
PROTO = os.path.join(CACHE, "go", "mod", "k8s.io", "cri-api@v0.35.4", "pkg", "apis", "runtime",
                     "v1", "api.proto")
WORK = tempfile.mkdtemp(prefix="moat-shim-test-")
NODE_ENV = dict(os.environ, MOAT_CLUSTER_DIR=WORK, MOAT_BRIDGE="moat-brs",
                MOAT_POD_CIDR="10.90.0.0/16", MOAT_NODE_IP="10.90.0.1")
NODE = os.path.join(WORK, "node")
CONTAINERD = os.path.join(NODE, "containerd", "containerd.sock")
CONTAINERD_PID = os.path.join(NODE, "run", "containerd.pid")
SHIM_SOCK = os.path.join(WORK, "cri.sock")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # pod addresses: direct
WALL_TABLE = "moat_itest_shim"  # the shim's egress wall: this test's own nftables table
NAT_TABLE = "moat_itest_shim_nat"  # the test's stand-in for kube-proxy's DNAT of a Service
DNS_SERVICE = "10.96.99.10"
MOAT_POD = {"moat.dev/network": "internet", "moat.dev/gpu-count": "0"}
NODE_ADDR = "203.0.113.10"  # TEST-NET-3: outside every blocked range, on this machine only
# "The Internet": a network namespace the test creates, behind a veth from the node, at a
# TEST-NET-2 address outside every blocked range. Nothing listens there: a TCP reset from
# its kernel is an answer, so "reached".
OUT_NS = "moat-itest-out"
OUT_HOST, OUT_ADDR = "198.51.100.1", "198.51.100.2"
# ... where one more address stands for a cluster range the configuration names (a
# public-looking one: the wall must take it from the configuration, not the RFC ranges).
CLUSTER_CIDR, CLUSTER_ADDR = "198.51.100.128/25", "198.51.100.200"
# A connection attempt from inside a pod's network namespace, as a guest kernel that owns
# the pod's interface could make it (a Kata VM, gVisor's netstack): from the pod's address
# or any other it chooses. REACHED when anything answers (a reset is an answer).
CONNECT = r"""
import socket, sys
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(3)
try:
    if src != "-":
        s.bind((src, 0))
    s.connect(socket.getaddrinfo(dst, port, fam, socket.SOCK_STREAM)[0][4])
    print("REACHED")
except ConnectionRefusedError:
    print("REACHED")
except OSError as e:
    print("BLOCKED", e)
"""


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cri_stubs  # noqa: E402

api, rpc = cri_stubs.load(os.path.join(WORK, "stubs"), PROTO)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node(cmd):
    subprocess.run(["bash", os.path.join(ROOT, "e2e", "node", "node.sh"), cmd], env=NODE_ENV,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def listening(path):
    """Whether a process accepts connections on the unix socket at path (a socket file a
    dead process left behind refuses them)."""
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


class Shim:
    def __init__(self):
        self.port = free_port()
        self.config = os.path.join(WORK, "moat-cri.yaml")
        with open(self.config, "w") as f:
            # No hypervisor, whatever this machine has: the probe looks at paths that do not
            # exist (some of these machines have a usable /dev/kvm, some none).
            f.write(f"listen: {SHIM_SOCK}\nupstream: {CONTAINERD}\n"
                    f"metrics: 127.0.0.1:{self.port}\n"
                    f"probe: {{kvm: {WORK}/no-kvm, mshv: {WORK}/no-mshv}}\n"
                    f"egressWall: {{table: {WALL_TABLE}, clusterCIDRs: [{CLUSTER_CIDR}]}}\n")
        self.log = open(os.path.join(WORK, "moat-cri.log"), "a")
        self.start()

    def start(self):
        """A new moat-cri on the same configuration, once it accepts calls. Waits for a
        listener, not for the socket file: a SIGKILLed shim leaves its file behind."""
        self.proc = subprocess.Popen([SHIM, f"--config={self.config}", "--log-level=debug"],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 10
        while not listening(SHIM_SOCK):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"moat-cri did not start (exit {self.proc.poll()}):\n"
                                   + self.log_tail())
            time.sleep(0.05)

    def log_tail(self, lines=20):
        with open(os.path.join(WORK, "moat-cri.log")) as f:
            return "".join(f.readlines()[-lines:])

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
        return self.proc.returncode


def containerd_restart():
    """containerd again, on the state and configuration node.sh made and as node.sh starts
    it (`node.sh containerd` would wipe that state). Its pid goes into node.sh's pid file, so
    `node.sh down` stops it like the first one; a thread reaps it, else node.sh would wait
    on a zombie."""
    env = dict(os.environ, PATH=os.path.join(CACHE, "bin") + ":" + os.environ["PATH"])
    with open(os.path.join(NODE, "logs", "containerd-restarted.log"), "a") as log:
        proc = subprocess.Popen([os.path.join(CACHE, "bin", "containerd"), "--config",
                                 os.path.join(NODE, "containerd", "config.toml")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True)
    with open(CONTAINERD_PID, "w") as f:
        f.write(f"{proc.pid}\n")
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc


def gone(pid):
    """Whether the process has ended (a zombie has: only its parent can reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def stubs(path):
    ch = grpc.insecure_channel("unix:" + path)
    return ch, rpc.RuntimeServiceStub(ch), rpc.ImageServiceStub(ch)


def sandbox_config(name, annotations=None, privileged=False, **extra):
    cfg = api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=name, uid=f"{name}-uid", namespace="moat-test"),
        annotations=annotations or {}, log_directory=os.path.join(WORK, "logs", name), **extra)
    if privileged:
        cfg.linux.security_context.privileged = True
    return cfg


class ShimTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        node("containerd")
        cls.containerd = None  # a containerd this test started again, if any
        try:
            cls.shim = Shim()
        except BaseException:
            node("down")  # tearDownClass does not run when setUpClass fails
            shutil.rmtree(WORK, ignore_errors=True)
            raise
        cls.ch, cls.rt, cls.im = stubs(SHIM_SOCK)
        cls.dch, cls.direct, cls.dim = stubs(CONTAINERD)
        cls.pods = []

    @classmethod
    def reconnect(cls):
        """Fresh channels after the shim or containerd changed: an old channel may sit in
        reconnect backoff for seconds."""
        cls.ch.close()
        cls.dch.close()
        cls.ch, cls.rt, cls.im = stubs(SHIM_SOCK)
        cls.dch, cls.direct, cls.dim = stubs(CONTAINERD)

    def restart_shim(self):
        self.shim.start()
        self.reconnect()

    @classmethod
    def tearDownClass(cls):
        for pid in cls.pods:
            try:
                cls.direct.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pid))
                cls.direct.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pid))
            except grpc.RpcError:
                pass
        code = cls.shim.stop()
        subprocess.run(["nft", "delete", "table", "ip", NAT_TABLE], capture_output=True)
        removed = subprocess.run([SHIM, f"--config={cls.shim.config}", "--remove-wall"],
                                 capture_output=True, text=True)
        left = subprocess.run(["nft", "list", "table", "inet", WALL_TABLE], capture_output=True)
        node("down")
        if cls.containerd and cls.containerd.poll() is None:
            cls.containerd.kill()
        shutil.rmtree(WORK, ignore_errors=True)
        if code != 0:
            raise AssertionError(f"moat-cri exited {code} on SIGTERM")
        if removed.returncode != 0 or left.returncode == 0:
            raise AssertionError(f"moat-cri --remove-wall left table inet {WALL_TABLE}: "
                                 f"exit {removed.returncode}: {removed.stderr}")

    def run_pod(self, name, handler="", **kw):
        """A pod through the shim. A Moat handler's pod carries the annotations the operator
        puts on every Sandbox's Pod (moat-cri refuses one without), Internet unless said."""
        if handler.startswith("moat-"):
            kw["annotations"] = {**MOAT_POD, **(kw.get("annotations") or {})}
        cfg = sandbox_config(name, **kw)
        r = self.rt.RunPodSandbox(api.RunPodSandboxRequest(config=cfg, runtime_handler=handler),
                                  timeout=60)
        self.pods.append(r.pod_sandbox_id)
        return r.pod_sandbox_id, cfg

    def start_container(self, pid, cfg, command, name="main"):
        """As kubelet does: the sandbox's status (its address) first, then the container."""
        self.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid), timeout=10)
        return self.create_start(pid, cfg, command, name)

    def create_start(self, pid, cfg, command, name="main"):
        c = self.rt.CreateContainer(api.CreateContainerRequest(
            pod_sandbox_id=pid, sandbox_config=cfg, config=api.ContainerConfig(
                metadata=api.ContainerMetadata(name=name),
                image=api.ImageSpec(image="moat.local/busybox:1.35"), command=command,
                log_path=f"{name}.log")), timeout=60)
        self.rt.StartContainer(api.StartContainerRequest(container_id=c.container_id), timeout=60)
        return c.container_id

    def test_answers_equal_containerd_apart_from_what_the_shim_changes(self):
        self.assertEqual(self.rt.Version(api.VersionRequest()),
                         self.direct.Version(api.VersionRequest()))
        # Status carries conditions (NetworkReady) that settle just after containerd starts:
        # compare once both answers agree on them.
        for _ in range(50):
            via, direct = self.rt.Status(api.StatusRequest()), self.direct.Status(api.StatusRequest())
            if via.status == direct.status:
                break
            time.sleep(0.1)
        names = [h.name for h in via.runtime_handlers]
        for logical in ("moat-auto", "moat-vm", "moat-gvisor"):
            self.assertIn(logical, names)
        del via.runtime_handlers[len(direct.runtime_handlers):]
        self.assertEqual(via, direct)
        # containerd lists images in no fixed order (two calls may differ)
        self.assertEqual(sorted(self.im.ListImages(api.ListImagesRequest()).images,
                                key=lambda i: i.id),
                         sorted(self.dim.ListImages(api.ListImagesRequest()).images,
                                key=lambda i: i.id))
        spec = api.ImageSpec(image="moat.local/busybox:1.35")
        self.assertEqual(self.im.ImageStatus(api.ImageStatusRequest(image=spec)),
                         self.dim.ImageStatus(api.ImageStatusRequest(image=spec)))

    def test_runc_pod_lifecycle_passes_through(self):
        pid, cfg = self.run_pod("plain", hostname="plain-host", labels={"app": "x"})
        st = self.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid))
        self.assertEqual(st.status.runtime_handler, "")
        self.assertNotIn("moat.dev/decision-runtime", st.status.annotations)
        self.assertEqual(st, self.direct.PodSandboxStatus(
            api.PodSandboxStatusRequest(pod_sandbox_id=pid)))
        cid = self.start_container(pid, cfg, ["sh", "-c", "echo to-the-log; sleep 60"])
        out = self.rt.ExecSync(api.ExecSyncRequest(container_id=cid, cmd=["uname", "-r"],
                                                   timeout=10))
        self.assertEqual(out.exit_code, 0)
        self.assertEqual(out.stdout.decode().strip(), os.uname().release)
        cs = self.rt.ContainerStatus(api.ContainerStatusRequest(container_id=cid))
        self.assertEqual(cs.status.state, api.CONTAINER_RUNNING)
        deadline = time.time() + 10  # containerd's log writer follows the container
        while True:
            with open(cs.status.log_path) as f:
                logged = f.read()
            if "to-the-log" in logged or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertIn("to-the-log", logged)
        # Sessions' activity (cri-shim/activity.h): ExecSync (a probe) records nothing, an
        # Exec start and a PortForward do, beside the socket; removals take them away
        activity = os.path.join(os.path.dirname(SHIM_SOCK), "activity")
        self.assertFalse(os.path.exists(os.path.join(activity, cid)))
        before = time.time()
        url = self.rt.Exec(api.ExecRequest(container_id=cid, cmd=["sh"], stdout=True)).url
        self.assertTrue(url.startswith("http://"), url)
        self.assertGreaterEqual(os.stat(os.path.join(activity, cid)).st_mtime, before - 1)
        self.rt.PortForward(api.PortForwardRequest(pod_sandbox_id=pid, port=[80]))
        self.assertTrue(os.path.exists(os.path.join(activity, pid)))
        self.assertRegex(self.shim.metrics(), r'moat_cri_stream_starts_total\{kind="exec"\} [1-9]')
        self.rt.StopContainer(api.StopContainerRequest(container_id=cid, timeout=1))
        self.rt.RemoveContainer(api.RemoveContainerRequest(container_id=cid))
        self.assertFalse(os.path.exists(os.path.join(activity, cid)))
        self.rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pid))
        self.rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pid))
        self.assertFalse(os.path.exists(os.path.join(activity, pid)))
        with self.assertRaises(grpc.RpcError) as e:
            self.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid))
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_moat_auto_runs_under_gvisor_and_reports_why(self):
        pid, cfg = self.run_pod("auto", "moat-auto")
        st = self.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid))
        self.assertEqual(st.status.runtime_handler, "runsc")
        ann = st.status.annotations
        self.assertEqual(ann["moat.dev/decision-runtime"], "gvisor")
        self.assertEqual(ann["moat.dev/decision-handler"], "runsc")
        self.assertIn("no usable hypervisor", ann["moat.dev/decision-reason"])
        cid = self.start_container(pid, cfg, ["sleep", "60"])
        out = self.rt.ExecSync(api.ExecSyncRequest(container_id=cid, cmd=["dmesg"], timeout=10))
        self.assertIn("Starting gVisor", out.stdout.decode())
        kernel = self.rt.ExecSync(api.ExecSyncRequest(container_id=cid, cmd=["uname", "-r"],
                                                      timeout=10)).stdout.decode()
        self.assertIn("gvisor", kernel)
        runsc = subprocess.run([os.path.join(CACHE, "bin", "runsc"), "--root",
                                os.path.join(WORK, "node", "runsc", "root", "k8s.io"), "list",
                                "-quiet"], capture_output=True, text=True)
        self.assertIn(pid, runsc.stdout + self.runsc_all())

    def runsc_all(self):
        out = ""
        for root, dirs, _ in os.walk(os.path.join(WORK, "node", "runsc", "root")):
            for d in dirs:
                r = subprocess.run([os.path.join(CACHE, "bin", "runsc"), "--root",
                                    os.path.join(root, d), "list", "-quiet"],
                                   capture_output=True, text=True)
                out += r.stdout
            break
        return out

    def test_no_network_runs_under_runsc_nonet(self):
        pid, _ = self.run_pod("nonet", "moat-gvisor", annotations={"moat.dev/network": "none"})
        st = self.direct.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid))
        self.assertEqual(st.status.runtime_handler, "runsc-nonet")  # containerd's own state

    def test_refusals(self):
        for name, handler, kw, words in [
                ("vm", "moat-vm", {}, "hypervisor"),
                ("priv", "moat-auto", {"privileged": True}, "privileged")]:
            with self.subTest(name=name):
                with self.assertRaises(grpc.RpcError) as e:
                    self.run_pod(name, handler, **kw)
                self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
                self.assertIn(words, e.exception.details())
        self.assertIn("moat_cri_refusals_total", self.shim.metrics())
        # a Moat pod without the operator's annotations: its egress class would be a guess
        for ann, words in (({}, "moat.dev/network is missing"),
                           ({"moat.dev/network": "none"}, "moat.dev/gpu-count is missing")):
            with self.assertRaises(grpc.RpcError) as e:
                self.rt.RunPodSandbox(api.RunPodSandboxRequest(
                    config=sandbox_config("bare", annotations=ann),
                    runtime_handler="moat-gvisor"), timeout=60)
            self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
            self.assertIn(words, e.exception.details())

    def test_unknown_fields_reach_containerd(self):
        cfg = sandbox_config(
            "fields", annotations=MOAT_POD, hostname="kept-host", labels={"l": "v"},
            dns_config=api.DNSConfig(servers=["10.90.0.1"], searches=["example.test"]),
            port_mappings=[api.PortMapping(protocol=api.TCP, container_port=80, host_port=0)])
        cfg.linux.cgroup_parent = ""
        cfg.linux.sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"
        r = self.rt.RunPodSandbox(api.RunPodSandboxRequest(config=cfg,
                                                           runtime_handler="moat-gvisor"))
        self.pods.append(r.pod_sandbox_id)
        st = self.direct.PodSandboxStatus(api.PodSandboxStatusRequest(
            pod_sandbox_id=r.pod_sandbox_id, verbose=True))
        seen = json.loads(st.info["info"])["config"]
        self.assertEqual(seen["hostname"], "kept-host")
        self.assertEqual(seen["dns_config"]["searches"], ["example.test"])
        self.assertEqual(seen["port_mappings"][0]["container_port"], 80)
        self.assertEqual(seen["linux"]["sysctls"]["net.ipv4.ip_unprivileged_port_start"], "0")
        self.assertEqual(seen["labels"], {"l": "v"})
        # ... and what the shim changed is only the handler and the decision annotations
        self.assertEqual(st.status.runtime_handler, "runsc")
        self.assertEqual(seen["annotations"]["moat.dev/decision-handler"], "runsc")

    def test_malformed_requests(self):
        raw = self.ch.unary_unary("/runtime.v1.RuntimeService/RunPodSandbox",
                                  request_serializer=None, response_deserializer=None)
        with self.assertRaises(grpc.RpcError) as e:
            raw(b"\x0a\xff\xff\xff\x0f")  # a length past the end
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as e:
            raw(b"\x12\x05moat")  # truncated string
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        big = self.ch.unary_unary("/runtime.v1.RuntimeService/Version",
                                  request_serializer=None, response_deserializer=None)
        with self.assertRaises(grpc.RpcError) as e:
            big(b"\x0a" + b"\x80\x80\x80\x08" + b"x" * (17 * 1024 * 1024))
        self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(self.shim.proc.poll(), None)  # never a crash

    def test_unknown_method_is_relayed(self):
        m = self.ch.unary_unary("/runtime.v1.RuntimeService/NoSuchMethodYet",
                                request_serializer=None, response_deserializer=None)
        with self.assertRaises(grpc.RpcError) as e:
            m(b"")
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        # answered by containerd, not by the shim: its metrics count the call as relayed
        # (the shim finishes its side of the call just after the client has its answer)
        deadline = time.time() + 5
        while 'NoSuchMethodYet",result="error"} 1' not in self.shim.metrics():
            self.assertLess(time.time(), deadline, "the relayed call was not counted")
            time.sleep(0.05)

    def test_event_stream_and_cancellation(self):
        stream = self.rt.GetContainerEvents(api.GetEventsRequest())
        got = []

        def read():
            try:
                for ev in stream:
                    got.append(ev)
            except grpc.RpcError as e:
                got.append(e.code())
        t = threading.Thread(target=read, daemon=True)
        t.start()
        time.sleep(0.5)
        pid, cfg = self.run_pod("events")
        cid = self.start_container(pid, cfg, ["true"])
        deadline = time.time() + 20
        while time.time() < deadline and not any(
                getattr(e, "container_id", None) == cid for e in got):
            time.sleep(0.1)
        self.assertTrue(any(getattr(e, "container_id", None) == cid for e in got), got)
        stream.cancel()
        t.join(5)
        self.assertFalse(t.is_alive())
        self.assertIn(grpc.StatusCode.CANCELLED, got)

    def decisions(self, annotations):
        return {k: v for k, v in annotations.items() if k.startswith("moat.dev/decision-")}

    @staticmethod
    def host_runs(cmdline):
        """Whether a process on this machine has exactly cmdline (NUL-separated)."""
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read() == cmdline:
                        return True
            except OSError:
                pass  # gone meanwhile
        return False

    def wait_for(self, what, call, within):
        """call() until it answers, for at most `within` seconds; returns the answer and how
        long it took."""
        t0 = time.monotonic()
        while True:
            try:
                return call(), time.monotonic() - t0
            except grpc.RpcError as e:
                if time.monotonic() - t0 > within:
                    self.fail(f"{what}: still {e.code()} ({e.details()}) after {within} s")
            time.sleep(0.1)

    def test_containerd_killed_calls_fail_fast_and_the_shim_reconnects(self):
        pid, _ = self.run_pod("survivor", "moat-auto")
        ann = self.decisions(self.rt.PodSandboxStatus(
            api.PodSandboxStatusRequest(pod_sandbox_id=pid)).status.annotations)
        self.assertEqual(ann["moat.dev/decision-runtime"], "gvisor")
        shim_pid = self.shim.proc.pid
        with open(CONTAINERD_PID) as f:
            old = int(f.read())
        os.kill(old, signal.SIGKILL)
        deadline = time.time() + 5
        while not gone(old):
            self.assertLess(time.time(), deadline, "containerd outlived SIGKILL")
            time.sleep(0.02)
        try:
            # The client's deadline (5 s) is far past the bound: a shim that waits for
            # containerd shows as DEADLINE_EXCEEDED or as a slow call, not as a pass.
            calls = [("Version", lambda: self.rt.Version(api.VersionRequest(), timeout=5)),
                     ("ListPodSandbox",
                      lambda: self.rt.ListPodSandbox(api.ListPodSandboxRequest(), timeout=5))]
            for i in range(4):
                for name, call in calls:
                    t0 = time.monotonic()
                    with self.assertRaises(grpc.RpcError, msg=f"{name} #{i}") as e:
                        call()
                    took = time.monotonic() - t0
                    self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE,
                                     f"{name} #{i}: {e.exception.details()}")
                    self.assertLess(took, 1.0, f"{name} #{i} took {took:.2f} s")
                time.sleep(0.2)  # across the shim's reconnect attempts (backoff 0.1-1 s)
        finally:
            type(self).containerd = containerd_restart()
            self.reconnect()
        self.wait_for("containerd after its restart",
                      lambda: self.direct.Version(api.VersionRequest(), timeout=1), 30)
        _, took = self.wait_for("the shim after containerd's restart",
                                lambda: self.rt.Version(api.VersionRequest(), timeout=1), 10)
        self.assertLess(took, 5, "the shim took too long to reconnect")
        self.assertEqual(self.shim.proc.pid, shim_pid)
        self.assertIsNone(self.shim.proc.poll())
        st = self.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid))
        self.assertEqual(self.decisions(st.status.annotations), ann)
        self.assertIn(pid, [p.id for p in self.rt.ListPodSandbox(
            api.ListPodSandboxRequest()).items])

    def test_shim_restart_keeps_pods_and_replaces_a_stale_socket(self):
        pid, _ = self.run_pod("restarted", "moat-gvisor")

        def listed_decisions():
            items = {p.id: p for p in self.rt.ListPodSandbox(api.ListPodSandboxRequest(),
                                                             timeout=5).items}
            self.assertIn(pid, items)
            return self.decisions(items[pid].annotations)
        ann = listed_decisions()
        self.assertEqual(ann["moat.dev/decision-handler"], "runsc")

        t0 = time.monotonic()
        self.assertEqual(self.shim.stop(signal.SIGTERM), 0)
        self.assertLess(time.monotonic() - t0, 5, "SIGTERM with no call in flight hung")
        self.assertFalse(os.path.exists(SHIM_SOCK))
        t0 = time.monotonic()
        self.restart_shim()
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(listed_decisions(), ann)

        self.shim.proc.kill()
        self.shim.proc.wait(5)
        self.assertTrue(stat.S_ISSOCK(os.lstat(SHIM_SOCK).st_mode), "SIGKILL left no socket?")
        self.assertFalse(listening(SHIM_SOCK))
        self.restart_shim()  # waits for a listener, not for the (stale) file
        self.assertEqual(listed_decisions(), ann)
        self.assertEqual(stat.S_IMODE(os.stat(SHIM_SOCK).st_mode), 0o660)
        self.assertIn("moat_cri_", self.shim.metrics())

    def test_gvisor_internet_pod_reaches_the_internet_and_a_no_network_one_cannot(self):
        self.outside()
        www = os.path.join(WORK, "outside-www")
        os.makedirs(www, exist_ok=True)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("hello-from-outside\n")
        server = subprocess.Popen(["ip", "netns", "exec", OUT_NS, sys.executable, "-m",
                                   "http.server", "--bind", OUT_ADDR, "--directory", www, "8080"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(server.kill)
        url = f"http://{OUT_ADDR}:8080/"
        # Not wget's -T: Debian's busybox 1.35 wget segfaults with it (exit 139), under runc too.
        wget = ["timeout", "10", "wget", "-qO-", url]

        pid, cfg = self.run_pod("netted", "moat-gvisor")  # egress Internet: walled, not cut off
        st = self.direct.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid))
        self.assertEqual(st.status.runtime_handler, "runsc")
        cid = self.start_container(pid, cfg, ["sleep", "60"])
        self.assertIn("gvisor", self.rt.ExecSync(api.ExecSyncRequest(
            container_id=cid, cmd=["uname", "-r"], timeout=10)).stdout.decode())
        deadline = time.time() + 10  # the server may still be starting
        while True:
            out = self.rt.ExecSync(api.ExecSyncRequest(container_id=cid, cmd=wget, timeout=20))
            if out.exit_code == 0 or time.time() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual((out.exit_code, out.stdout.decode().strip()), (0, "hello-from-outside"),
                         f"gVisor pod -> {url}: stderr {out.stderr.decode()!r}")

        pid, cfg = self.run_pod("cut-off", "moat-gvisor",
                                annotations={"moat.dev/network": "none"})
        st = self.direct.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid))
        self.assertEqual(st.status.runtime_handler, "runsc-nonet")  # containerd's own state
        cid = self.start_container(pid, cfg, ["sleep", "60"])
        self.assertIn("gvisor", self.rt.ExecSync(api.ExecSyncRequest(
            container_id=cid, cmd=["uname", "-r"], timeout=10)).stdout.decode())
        out = self.rt.ExecSync(api.ExecSyncRequest(container_id=cid, cmd=wget, timeout=20))
        self.assertNotIn("hello", out.stdout.decode())
        # refused for want of a network, not failing some other way (a crash, a timeout)
        self.assertEqual(out.exit_code, 1, out.stderr.decode())
        self.assertIn("Network is unreachable", out.stderr.decode())

    def web_pod(self, name, body, also_on=None):
        """A runc pod serving body over HTTP on 8080 (and on also_on); its address, once it
        answers the host on the test's bridge (a failure after that is the client's)."""
        extra = f"httpd -p {also_on} -h /tmp/www && " if also_on else ""
        pid, cfg = self.run_pod(name)
        self.start_container(pid, cfg, [
            "sh", "-c", f"mkdir -p /tmp/www && echo {body} >/tmp/www/index.html && "
                        f"{extra}exec httpd -f -p 8080 -h /tmp/www"])
        ip = self.rt.PodSandboxStatus(api.PodSandboxStatusRequest(
            pod_sandbox_id=pid)).status.network.ip
        self.assertEqual(self.wait_served(f"http://{ip}:8080/"), body)
        return ip

    def wait_served(self, url):
        """The body at url, once the host gets one (within 10 s)."""
        deadline = time.time() + 10
        while True:
            try:
                with NO_PROXY.open(url, timeout=2) as r:
                    return r.read().decode().strip()
            except OSError as e:
                self.assertLess(time.time(), deadline, f"{url} from the host: {e}")
                time.sleep(0.1)

    def gauge(self, name):
        for line in self.shim.metrics().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        self.fail(f"no {name} in moat-cri's metrics")

    def walled_set(self, family="4"):
        out = subprocess.run(["nft", "-j", "list", "set", "inet", WALL_TABLE, "walled" + family],
                             capture_output=True, text=True, check=True).stdout
        elems = json.loads(out)["nftables"][1]["set"].get("elem", [])
        return {e["elem"]["val"]: e["elem"].get("comment") for e in elems}

    def test_egress_wall_keeps_an_internet_pod_off_private_addresses_from_its_first_instant(self):
        # A runc server on 8080 and on 53 (HTTP over TCP, standing in for DNS over TCP), and
        # a Service-like address the test DNATs to it, as kube-proxy would.
        ip = self.web_pod("wall-web", "served", also_on=53)
        subprocess.run(["nft", "-f", "-"], check=True, text=True, input=f"""
            table ip {NAT_TABLE} {{
              chain pre {{
                type nat hook prerouting priority dstnat; policy accept;
                ip daddr {DNS_SERVICE} tcp dport {{ 53, 8080 }} dnat to {ip}
              }}
            }}""")
        probe = lambda url: (f"if timeout 10 wget -qO- {url} >/dev/null 2>&1; "
                             f"then echo REACHED {url}; else echo BLOCKED {url}; fi")
        first = probe(f"http://{ip}:8080/")

        # Through the shim as kubelet calls it: RunPodSandbox, PodSandboxStatus (the wall goes
        # up), CreateContainer. The container's first act is the probe.
        ann = {"moat.dev/network": "internet"}
        dns = api.DNSConfig(servers=[DNS_SERVICE])
        pid, cfg = self.run_pod("walled", "moat-auto", annotations=ann, dns_config=dns)
        pod_ip = self.rt.PodSandboxStatus(api.PodSandboxStatusRequest(
            pod_sandbox_id=pid)).status.network.ip
        # CreateContainer right away: the shim holds it until the wall is up
        cid = self.create_start(pid, cfg, ["sh", "-c", first + "; sleep 120"])
        self.assertEqual(self.walled_set().get(pod_ip), pid)
        def first_log():
            with open(os.path.join(WORK, "logs", "walled", "main.log")) as f:
                return f.read()
        deadline = time.time() + 30
        while "BLOCKED" not in first_log() and "REACHED" not in first_log():
            self.assertLess(time.time(), deadline, "the walled pod's first probe never ended")
            time.sleep(0.2)
        self.assertIn(f"BLOCKED http://{ip}:8080/", first_log())

        def run(url):
            out = self.rt.ExecSync(api.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", probe(url)],
                                                       timeout=30))
            return out.stdout.decode().strip()
        # DNS: its server by the address kubelet gave (before DNAT), port 53 only; the same
        # pod at its own address, or another port behind the same Service address, stays walled.
        self.assertEqual(run(f"http://{DNS_SERVICE}:53/"), f"REACHED http://{DNS_SERVICE}:53/")
        self.assertEqual(run(f"http://{DNS_SERVICE}:8080/"), f"BLOCKED http://{DNS_SERVICE}:8080/")
        self.assertEqual(run(f"http://{ip}:53/"), f"BLOCKED http://{ip}:53/")
        # the node itself (the bridge's address: the input hook)
        self.assertEqual(run("http://10.90.0.1:1/"), "BLOCKED http://10.90.0.1:1/")
        # ... while a pod without Moat's egress class (a runc pod) reaches the server
        pid2, cfg2 = self.run_pod("wall-plain")
        cid2 = self.start_container(pid2, cfg2, ["sleep", "60"])
        out = self.rt.ExecSync(api.ExecSyncRequest(
            container_id=cid2, cmd=["sh", "-c", probe(f"http://{ip}:8080/")], timeout=30))
        self.assertEqual(out.stdout.decode().strip(), f"REACHED http://{ip}:8080/")

        # A walled pod's container before its status came through: refused, nothing created.
        pid3, cfg3 = self.run_pod("wall-early", "moat-auto", annotations=ann)
        with self.assertRaises(grpc.RpcError) as e:
            self.create_start(pid3, cfg3, ["true"])
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("not walled yet", e.exception.details())
        self.assertEqual(len(self.direct.ListContainers(api.ListContainersRequest(
            filter=api.ContainerFilter(pod_sandbox_id=pid3))).containers), 0)
        self.start_container(pid3, cfg3, ["true"])  # kubelet's retry, after the status

        # A restarted shim reads the wall back from the kernel: a second container is let in.
        walled = self.gauge("moat_cri_egress_wall_sandboxes")  # other tests' Moat pods too
        self.assertGreaterEqual(walled, 2)
        self.assertEqual(self.shim.stop(), 0)
        self.restart_shim()
        self.assertEqual(self.gauge("moat_cri_egress_wall_sandboxes"), walled)
        cid4 = self.create_start(pid, cfg, ["sleep", "60"], name="second")
        out = self.rt.ExecSync(api.ExecSyncRequest(
            container_id=cid4, cmd=["sh", "-c", probe(f"http://{ip}:8080/")], timeout=30))
        self.assertEqual(out.stdout.decode().strip(), f"BLOCKED http://{ip}:8080/")

        # The node's own addresses, whatever their range: an address the test puts on the
        # loopback interface (TEST-NET-3, outside every blocked range; this kernel has no
        # dummy interfaces) is picked up by the next reassert (5 s) and refused, while an
        # unwalled pod reaches it.
        subprocess.run(["ip", "addr", "add", f"{NODE_ADDR}/32", "dev", "lo"], check=True)
        self.addCleanup(subprocess.run, ["ip", "addr", "del", f"{NODE_ADDR}/32", "dev", "lo"],
                        capture_output=True)
        server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", NODE_ADDR,
                                   "18080"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(server.kill)
        self.wait_served(f"http://{NODE_ADDR}:18080/")
        node_url = f"http://{NODE_ADDR}:18080/"
        out = self.rt.ExecSync(api.ExecSyncRequest(
            container_id=cid2, cmd=["sh", "-c", probe(node_url)], timeout=30))
        self.assertEqual(out.stdout.decode().strip(), f"REACHED {node_url}")
        deadline = time.time() + 15
        while True:
            out = self.rt.ExecSync(api.ExecSyncRequest(
                container_id=cid4, cmd=["sh", "-c", probe(node_url)], timeout=30))
            if out.stdout.decode().strip() == f"BLOCKED {node_url}":
                break
            self.assertLess(time.time(), deadline, "the node's new address was never walled")
            time.sleep(1)

        # A flushed table is put back within the bound (5 s), its walled pods with it. (The
        # count is read before the delete: the shim's look may come at once after it.)
        self.assertIn("moat_cri_egress_wall_restores_total 0", self.shim.metrics())
        subprocess.run(["nft", "delete", "table", "inet", WALL_TABLE], check=True)
        deadline = time.time() + 8
        while subprocess.run(["nft", "list", "table", "inet", WALL_TABLE],
                             capture_output=True).returncode != 0:
            self.assertLess(time.time(), deadline, "the deleted table never came back")
            time.sleep(0.2)
        wait = time.time() + 3
        while self.walled_set().get(pod_ip) != pid and time.time() < wait:
            time.sleep(0.1)
        self.assertEqual(self.walled_set().get(pod_ip), pid)
        self.assertIn("moat_cri_egress_wall_restores_total 1", self.shim.metrics())
        out = self.rt.ExecSync(api.ExecSyncRequest(
            container_id=cid4, cmd=["sh", "-c", probe(f"http://{ip}:8080/")], timeout=30))
        self.assertEqual(out.stdout.decode().strip(), f"BLOCKED http://{ip}:8080/")

        # Removed through the shim: the address leaves the wall.
        for p in (pid, pid3):
            self.rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=p), timeout=60)
            self.rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=p), timeout=60)
        deadline = time.time() + 5  # the worker takes walls down
        while self.gauge("moat_cri_egress_wall_sandboxes") != walled - 2:
            self.assertLess(time.time(), deadline, self.shim.metrics())
            time.sleep(0.1)
        self.assertNotIn(pod_ip, self.walled_set())

    def netns(self, pid):
        """The pod's network namespace, from containerd's own record (verbose status)."""
        st = self.direct.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid,
                                                                      verbose=True))
        return json.loads(st.info["info"])["sandboxMetadata"]["Metadata"]["NetNSPath"]

    def reach(self, netns, src, dst, port=1, tries=1):
        """REACHED or BLOCKED. An answer is proof; a silence may be a slow machine, so a
        caller expecting an answer may try again (tries)."""
        for _ in range(tries - 1):
            if self.reach(netns, src, dst, port) == "REACHED":
                return "REACHED"
        out = subprocess.run(["nsenter", f"--net={netns}", sys.executable, "-c", CONNECT, src,
                              dst, str(port)], capture_output=True, text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout.split()[0]

    def in_netns(self, netns, *cmd):
        subprocess.run(["nsenter", f"--net={netns}", *cmd], check=True, capture_output=True)

    def outside(self):
        """The test's stand-in for the Internet, reachable from the pod bridge."""
        subprocess.run(["ip", "netns", "del", OUT_NS], capture_output=True)
        subprocess.run(["ip", "link", "del", "moat-out0"], capture_output=True)
        for cmd in (["ip", "netns", "add", OUT_NS],
                    ["ip", "link", "add", "moat-out0", "type", "veth", "peer", "name", "eth0",
                     "netns", OUT_NS],
                    ["ip", "addr", "add", f"{OUT_HOST}/24", "dev", "moat-out0"],
                    ["ip", "link", "set", "moat-out0", "up"],
                    ["ip", "-n", OUT_NS, "addr", "add", f"{OUT_ADDR}/24", "dev", "eth0"],
                    ["ip", "-n", OUT_NS, "addr", "add", f"{CLUSTER_ADDR}/24", "dev", "eth0"],
                    ["ip", "-n", OUT_NS, "link", "set", "eth0", "up"],
                    ["ip", "-n", OUT_NS, "route", "add", "default", "via", OUT_HOST],
                    # node.sh drops what leaves the pod bridge; this one way stays here
                    ["iptables", "-I", "FORWARD", "-i", "moat-brs", "-o", "moat-out0", "-j",
                     "ACCEPT"]):
            subprocess.run(cmd, check=True, capture_output=True)
        self.addCleanup(subprocess.run, ["iptables", "-D", "FORWARD", "-i", "moat-brs", "-o",
                                         "moat-out0", "-j", "ACCEPT"], capture_output=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", OUT_NS], capture_output=True)
        self.addCleanup(subprocess.run, ["ip", "link", "del", "moat-out0"], capture_output=True)

    def wall_state(self, netns):
        """What a failure needs to be understood: the chains, the walled addresses, the
        pod's own view and moat-cri's log."""
        run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True).stdout
        return (run("nft", "list", "table", "netdev", WALL_TABLE) +
                run("nft", "list", "set", "inet", WALL_TABLE, "walled4") +
                run("nft", "list", "set", "inet", WALL_TABLE, "blocked4") +
                run("iptables", "-S", "FORWARD") + run("iptables", "-t", "nat", "-S") +
                run("ip", "-n", OUT_NS, "addr") + run("ip", "route") +
                run("nsenter", f"--net={netns}", "ip", "addr") +
                run("nsenter", f"--net={netns}", "ip", "neigh") + self.shim.log_tail(40))

    def wall_chains(self):
        out = subprocess.run(["nft", "-j", "list", "table", "netdev", WALL_TABLE],
                             capture_output=True, text=True)
        if out.returncode != 0:
            return []
        return [i["chain"]["name"] for i in json.loads(out.stdout)["nftables"] if "chain" in i]

    def walled_chains(self, pid, timeout=10):
        """The wall's chains for the sandbox, once it has any (the worker raises it)."""
        deadline = time.time() + timeout
        while True:
            chains = [c for c in self.wall_chains() if c.endswith("/" + pid)]
            if chains or time.time() > deadline:
                return chains
            time.sleep(0.05)

    def test_egress_none_and_forged_sources_are_walled_at_the_pods_interface(self):
        self.outside()
        bridge_ll = json.loads(subprocess.run(
            ["ip", "-6", "-j", "addr", "show", "dev", "moat-brs", "scope", "link"],
            capture_output=True, text=True, check=True).stdout)[0]["addr_info"][0]["local"]
        node_ll = f"{bridge_ll}%eth0"

        # Without the wall: a pod reaches "the Internet" and the node's link-local address,
        # from its own address, an added one and a link-local one. (So this test can fail.)
        pid0, _ = self.run_pod("net-open")
        ns0 = self.netns(pid0)
        self.in_netns(ns0, "ip", "addr", "add", "10.90.250.1/16", "dev", "eth0")
        self.assertEqual(self.reach(ns0, "-", OUT_ADDR, tries=3), "REACHED")
        self.assertEqual(self.reach(ns0, "10.90.250.1", OUT_ADDR, tries=3), "REACHED")
        self.assertEqual(self.reach(ns0, "-", node_ll, tries=3), "REACHED")
        self.assertEqual(self.reach(ns0, "-", CLUSTER_ADDR, tries=3), "REACHED")

        # egress Internet: its own address reaches the Internet; an added or forged one, or
        # a link-local one to the node, does not.
        pid1, _ = self.run_pod("net-internet", annotations={"moat.dev/network": "internet"})
        self.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid1), timeout=10)
        chains = self.walled_chains(pid1)
        self.assertEqual(len(chains), 1, self.shim.log_tail())  # the log says why not
        self.assertTrue(chains[0].startswith("internet/"), chains)
        ns1 = self.netns(pid1)
        # the chain's interface is the node's end of the pod's veth (its peer's index, as
        # the pod's side of it tells)
        peer = json.loads(subprocess.run(["nsenter", f"--net={ns1}", "ip", "-j", "link", "show",
                                          "eth0"], capture_output=True, text=True,
                                         check=True).stdout)[0]["link_index"]
        veths = [l["ifname"] for l in json.loads(subprocess.run(
            ["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout)
            if l["ifindex"] == peer]
        self.assertEqual(chains[0].split("/")[1:], [veths[0], pid1])
        self.assertEqual(self.reach(ns1, "-", OUT_ADDR, tries=3), "REACHED", self.wall_state(ns1))
        self.in_netns(ns1, "ip", "addr", "add", "10.90.250.2/16", "dev", "eth0")
        self.assertEqual(self.reach(ns1, "10.90.250.2", OUT_ADDR), "BLOCKED")
        self.assertEqual(self.reach(ns1, "-", node_ll), "BLOCKED")
        self.assertEqual(self.reach(ns1, "-", "10.90.0.1"), "BLOCKED")  # the node, by the inet rules
        self.assertEqual(self.reach(ns1, "-", CLUSTER_ADDR), "BLOCKED")  # a configured range

        # egress None (gVisor without a network here; Kata and nvproxy keep a stack, which
        # the namespace stands for): nothing leaves, from any address.
        pid2, _ = self.run_pod("net-none", "moat-gvisor", annotations={"moat.dev/network": "none"})
        self.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pid2), timeout=10)
        self.assertTrue(self.walled_chains(pid2)[0].startswith("none/"), self.wall_chains())
        ns2 = self.netns(pid2)
        self.in_netns(ns2, "ip", "addr", "add", "10.90.250.3/16", "dev", "eth0")
        for src, dst in (("-", OUT_ADDR), ("10.90.250.3", OUT_ADDR), ("-", node_ll),
                         ("-", OUT_HOST)):
            self.assertEqual(self.reach(ns2, src, dst), "BLOCKED", f"{src} -> {dst}")

        # A restarted moat-cri keeps them walled; a deleted netdev table is back within the
        # bound (5 s), with its chains.
        self.assertEqual(self.shim.stop(), 0)
        self.restart_shim()
        self.assertEqual(self.reach(ns2, "-", OUT_ADDR), "BLOCKED")
        self.assertEqual(self.reach(ns1, "10.90.250.2", OUT_ADDR), "BLOCKED")
        subprocess.run(["nft", "delete", "table", "netdev", WALL_TABLE], check=True)
        deadline = time.time() + 8
        while len([c for c in self.wall_chains() if c.endswith((pid1, pid2))]) < 2:
            self.assertLess(time.time(), deadline, "the deleted netdev table never came back")
            time.sleep(0.2)
        self.assertEqual(self.reach(ns2, "-", OUT_ADDR), "BLOCKED")
        self.assertEqual(self.reach(ns1, "10.90.250.2", OUT_ADDR), "BLOCKED")
        # The forged source's ARP for the gateway was dropped (as it must be): the pod's
        # neighbour entry may be left FAILED, and the kernel then waits it out before it asks
        # again from the pod's own address. Flushed, as a pod's next connection would find it.
        self.in_netns(ns1, "ip", "neigh", "flush", "all")
        self.assertEqual(self.reach(ns1, "-", OUT_ADDR, tries=3), "REACHED",
                         self.wall_state(ns1))

        # Removed through the shim: its chains go.
        for p in (pid1, pid2):
            self.rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=p), timeout=60)
            self.rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=p), timeout=60)
        deadline = time.time() + 5
        while [c for c in self.wall_chains() if c.endswith((pid1, pid2))]:
            self.assertLess(time.time(), deadline, self.wall_chains())
            time.sleep(0.1)

    def test_sigterm_drains_the_call_in_flight(self):
        pid, cfg = self.run_pod("drain")
        cid = self.start_container(pid, cfg, ["sleep", "60"])
        got = {}

        def long_call():
            t0 = time.monotonic()
            try:
                got["answer"] = self.rt.ExecSync(api.ExecSyncRequest(
                    container_id=cid, cmd=["sleep", "3"], timeout=10), timeout=15)
            except grpc.RpcError as e:
                got["error"] = f"{e.code()}: {e.details()}"
            got["took"] = time.monotonic() - t0
        t = threading.Thread(target=long_call)
        try:
            t.start()
            # in flight once its command runs (a runc container's processes are the host's)
            deadline = time.time() + 10
            while not self.host_runs(b"sleep\x003\x00"):
                self.assertLess(time.time(), deadline, "the exec's command never ran")
                time.sleep(0.05)
            self.shim.proc.send_signal(signal.SIGTERM)
            t.join(20)
            self.assertFalse(t.is_alive(), "the call in flight never ended")
            self.assertEqual(self.shim.proc.wait(15), 0)
            self.assertFalse(os.path.exists(SHIM_SOCK), "the socket file outlived the shim")
            self.assertNotIn("error", got, f"the call in flight, after {got['took']:.2f} s")
            self.assertEqual(got["answer"].exit_code, 0)
            self.assertGreater(got["took"], 2.5)
        finally:
            if self.shim.proc.poll() is None:
                self.shim.proc.kill()
                self.shim.proc.wait(5)
            self.restart_shim()

    def test_socket_mode(self):
        st = os.stat(SHIM_SOCK)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(oct(stat.S_IMODE(st.st_mode)), oct(0o660))


if __name__ == "__main__":
    unittest.main(verbosity=2)
