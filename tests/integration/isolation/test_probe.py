"""The real host probe on this machine (moat-probe), and moat-cri deciding on it.

This machine loads kvm_pvm: KVM on software page tables, CPU flags with `hypervisor` but
neither vmx nor svm. /dev/kvm passes KVM_GET_API_VERSION and KVM_CREATE_VM, yet Kata's
hypervisors with their stock guest kernel cannot run there and gVisor's KVM platform needs
VMX/SVM. So the probe must say: found kvm-pvm, not usable, with that reason; gVisor on
systrap; and moat-cri, probing for itself, must send moat-auto pods to runsc and refuse
moat-vm pods with the same reason."""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from concurrent import futures

import grpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CACHE = os.environ.get("MOAT_CACHE", "/var/cache/moat")
PROBE = os.environ.get("MOAT_PROBE", os.path.join(ROOT, "build", "isolation", "moat-probe"))
SHIM = os.environ.get("MOAT_CRI", os.path.join(ROOT, "build", "cri-shim", "moat-cri"))
RUNSC = os.path.join(CACHE, "bin", "runsc")
RUNSC_SHIM = os.path.join(CACHE, "bin", "containerd-shim-runsc-v1")
PROTO = os.path.join(CACHE, "go", "mod", "k8s.io", "cri-api@v0.35.4", "pkg", "apis", "runtime",
                     "v1", "api.proto")
WORK = tempfile.mkdtemp(prefix="moat-probe-test-")
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
PVM = os.path.isdir("/sys/module/kvm_pvm") and os.path.exists("/dev/kvm")
PVM_REASON = "kvm is kvm_pvm (no vmx/svm): Kata needs hardware virtualization"


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return line.split(":", 1)[1].split()
    return []


def probe(*args, check=True):
    p = subprocess.run([PROBE, *args], capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"moat-probe {args}: exit {p.returncode}: {p.stderr}")
    return p


def runsc_version():
    out = subprocess.run([RUNSC, "--version"], capture_output=True, text=True, timeout=30).stdout
    first = out.splitlines()[0]
    assert first.startswith("runsc version "), out
    return first[len("runsc version "):].strip()


class ProbeTest(unittest.TestCase):
    def report(self, *extra):
        p = probe("--json", f"--runsc={RUNSC}", f"--runsc-shim={RUNSC_SHIM}", *extra)
        self.assertEqual(p.stderr, "")  # libvirt's default handler would print here
        return json.loads(p.stdout)

    @unittest.skipUnless(PVM, "this host does not load kvm_pvm")
    def test_pvm_is_not_usable(self):
        flags = cpu_flags()
        self.assertIn("hypervisor", flags)
        self.assertNotIn("vmx", flags)
        self.assertNotIn("svm", flags)
        r = self.report("--no-libvirt")
        h = r["hypervisor"]
        self.assertFalse(h["usable"])
        self.assertEqual(h["kind"], "none")  # the value of moat.dev/hypervisor
        self.assertEqual(h["found"], "kvm-pvm")
        self.assertEqual(h["kvm_module"], "kvm_pvm")
        self.assertIn(PVM_REASON, h["reason"])
        self.assertIsNone(h["cpu"]["virtualization"])
        self.assertTrue(h["cpu"]["hypervisor_bit"])
        steps = {s["step"]: s for s in h["steps"]}
        # The device itself answers every call: it is the proof of hardware that fails.
        self.assertEqual(steps["kvm-open"]["outcome"], "pass")
        self.assertEqual(steps["kvm-api-version"]["outcome"], "pass")
        self.assertEqual(steps["kvm-api-version"]["detail"], "12")
        self.assertEqual(steps["kvm-create-vm"]["outcome"], "pass")
        self.assertEqual(steps["kvm-hardware"]["outcome"], "fail")
        self.assertEqual(steps["kvm-hardware"]["detail"], PVM_REASON)
        self.assertEqual(steps["cpu-flags"]["outcome"], "fail")
        self.assertEqual(r["libvirt"]["verdict"], "libvirt: not asked")

    def test_runtimes(self):
        r = self.report("--no-libvirt")
        g = r["runtimes"]["gvisor"]
        self.assertTrue(g["available"], g["reason"])
        self.assertTrue(g["runsc"]["found"])
        self.assertEqual(g["runsc"]["path"], RUNSC)
        self.assertEqual(g["version"], runsc_version())
        self.assertEqual(g["runsc"]["version"], runsc_version())
        self.assertTrue(g["shim"]["found"])
        self.assertIn("systrap", g["platforms"])
        self.assertIn("ptrace", g["platforms"])
        if not r["hypervisor"]["usable"]:
            self.assertNotIn("kvm", g["platforms"])
            self.assertEqual(g["platform"], "systrap")
        k = r["runtimes"]["kata"]
        self.assertFalse(k["installed"])  # no Kata on this machine
        self.assertFalse(k["available"])
        self.assertEqual(k["reason"], "no /opt/kata/bin/containerd-shim-kata-v2")
        self.assertEqual(sorted(k["configs"]), ["clh", "qemu", "qemu-nvidia-gpu"])
        self.assertEqual(r["gpu"]["mode"], "none")  # no GPU here either
        self.assertEqual(r["gpu"]["reason"], "no NVIDIA GPU")

        # Elsewhere: nothing installed at these paths.
        missing = os.path.join(WORK, "nothing")
        p = probe("--json", "--no-libvirt", f"--runsc={missing}", f"--runsc-shim={missing}")
        g = json.loads(p.stdout)["runtimes"]["gvisor"]
        self.assertFalse(g["available"])
        self.assertEqual(g["reason"], f"no {missing}")

    def test_fake_root_and_devices(self):
        # A root with a hardware host's files, but devices that do not exist: the report
        # follows the root, and says exactly which device is missing.
        root = os.path.join(WORK, "root")
        os.makedirs(os.path.join(root, "proc"))
        os.makedirs(os.path.join(root, "sys", "module", "kvm_intel", "parameters"))
        with open(os.path.join(root, "proc", "cpuinfo"), "w") as f:
            f.write("processor\t: 0\nflags\t\t: fpu vmx lm\n")
        with open(os.path.join(root, "sys", "module", "kvm_intel", "parameters", "nested"),
                  "w") as f:
            f.write("Y\n")
        h = json.loads(probe("--json", "--no-libvirt", f"--root={root}").stdout)["hypervisor"]
        self.assertEqual(h["cpu"]["virtualization"], "vmx")
        self.assertEqual(h["kvm_module"], "kvm_intel")
        self.assertTrue(h["nested"])
        self.assertFalse(h["usable"])
        self.assertEqual(h["found"], "none")
        self.assertEqual(h["reason"], f"no {root}/dev/kvm and no {root}/dev/mshv")
        # /dev/null is a device but not KVM.
        h = json.loads(probe("--json", "--no-libvirt", f"--root={root}", "--kvm=/dev/null")
                       .stdout)["hypervisor"]
        self.assertEqual(h["reason"], f"KVM_GET_API_VERSION: ENOTTY and no {root}/dev/mshv")

    def test_text_and_exit_codes(self):
        p = probe(f"--runsc={RUNSC}", f"--runsc-shim={RUNSC_SHIM}", "--no-libvirt")
        self.assertIn("hypervisor: ", p.stdout)
        self.assertIn("gvisor: available", p.stdout)
        if PVM:
            self.assertIn("hypervisor: NOT usable for a VM sandbox (kind none, found kvm-pvm)",
                          p.stdout)
            self.assertIn(PVM_REASON, p.stdout)
        self.assertEqual(probe("--bogus", check=False).returncode, 2)
        self.assertEqual(probe("--kvm=relative", check=False).returncode, 2)
        self.assertEqual(probe("--timeout=0", check=False).returncode, 2)
        self.assertEqual(probe("--help").returncode, 0)


# ---- moat-cri on the real probe ---------------------------------------------------------

def load_stubs():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import cri_stubs
    return cri_stubs.load(os.path.join(WORK, "stubs"), PROTO)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@unittest.skipUnless(PVM, "this host does not load kvm_pvm")
class ShimOnRealProbeTest(unittest.TestCase):
    """moat-cri with its default probe settings (the real /dev/kvm of this machine) in front
    of a recording CRI server: what reaches the runtime is the shim's real decision."""

    @classmethod
    def setUpClass(cls):
        cls.api, rpc = load_stubs()
        api = cls.api
        cls.seen = []
        seen = cls.seen

        def run_pod_sandbox(req, ctx):
            seen.append(req)
            return api.RunPodSandboxResponse(pod_sandbox_id=f"pod-{len(seen)}")

        cls.upstream_sock = os.path.join(WORK, "upstream.sock")
        cls.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        cls.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "runtime.v1.RuntimeService", {
                "RunPodSandbox": grpc.unary_unary_rpc_method_handler(
                    run_pod_sandbox, request_deserializer=api.RunPodSandboxRequest.FromString,
                    response_serializer=api.RunPodSandboxResponse.SerializeToString)})])
        cls.server.add_insecure_port(f"unix:{cls.upstream_sock}")
        cls.server.start()

        cls.sock = os.path.join(WORK, "cri.sock")
        cls.log = open(os.path.join(WORK, "moat-cri.log"), "w+")
        cls.shim = subprocess.Popen(
            [SHIM, f"--listen={cls.sock}", f"--upstream={cls.upstream_sock}",
             f"--metrics-addr=127.0.0.1:{free_port()}", "--egress-wall=none"], stderr=cls.log)
        deadline = time.monotonic() + 30
        while not os.path.exists(cls.sock):
            if cls.shim.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("moat-cri did not start: " + open(cls.log.name).read())
            time.sleep(0.05)
        cls.channel = grpc.insecure_channel(f"unix:{cls.sock}")
        cls.rt = rpc.RuntimeServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.shim.send_signal(signal.SIGTERM)
        cls.shim.wait(timeout=30)
        cls.server.stop(0)
        cls.log.close()

    def config(self, name):
        api = self.api
        return api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name=name, uid=f"{name}-uid", namespace="moat-test"),
            annotations={"moat.dev/isolation": "Auto", "moat.dev/network": "internet",
                         "moat.dev/gpu-count": "0"})  # as the operator writes them

    def test_log_says_not_usable(self):
        with open(self.log.name) as f:
            text = f.read()
        self.assertIn("host probe: hypervisor not usable (found kvm-pvm: " + PVM_REASON, text)

    def test_sighup_probes_again(self):
        self.shim.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        want = "host probe again: hypervisor not usable (found kvm-pvm: " + PVM_REASON
        while True:
            with open(self.log.name) as f:
                if want in f.read():
                    break
            self.assertLess(time.monotonic(), deadline, "no re-probe after SIGHUP")
            time.sleep(0.05)
        self.test_auto_goes_to_runsc()  # and it still decides the same way

    def test_auto_goes_to_runsc(self):
        api = self.api
        n = len(self.seen)
        self.rt.RunPodSandbox(api.RunPodSandboxRequest(config=self.config("auto"),
                                                       runtime_handler="moat-auto"), timeout=30)
        self.assertEqual(len(self.seen), n + 1)
        req = self.seen[-1]
        self.assertEqual(req.runtime_handler, "runsc")
        ann = req.config.annotations
        self.assertEqual(ann["moat.dev/decision-runtime"], "gvisor")
        self.assertEqual(ann["moat.dev/decision-handler"], "runsc")
        self.assertIn(PVM_REASON, ann["moat.dev/decision-reason"])

    def test_vm_is_refused(self):
        api = self.api
        n = len(self.seen)
        with self.assertRaises(grpc.RpcError) as e:
            self.rt.RunPodSandbox(api.RunPodSandboxRequest(config=self.config("vm"),
                                                           runtime_handler="moat-vm"), timeout=30)
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn(PVM_REASON, e.exception.details())
        self.assertEqual(len(self.seen), n)  # never reached the runtime


if __name__ == "__main__":
    unittest.main(verbosity=2)
