"""libvirt as the probe's second witness, against Debian's real libvirt daemon.

The test starts libvirtd itself (`libvirtd -d`) unless one already runs (that one is left
alone), and stops the one it started. Checked first with virsh on this machine (kvm_pvm):
`virsh -c qemu:///system domcapabilities --virttype kvm` SUCCEEDS here, since QEMU's KVM
accelerator initialises on kvm_pvm's /dev/kvm; `--virttype qemu` (emulation) succeeds too.
So libvirt offers kvm where Kata cannot run: the probe must report the disagreement, and the
direct probe (not usable) wins. Without a daemon the report says "libvirt: not running"."""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PROBE = os.environ.get("MOAT_PROBE", os.path.join(ROOT, "build", "isolation", "moat-probe"))
URI = "qemu:///system"
SOCK = "/run/libvirt/libvirt-sock"
PVM = os.path.isdir("/sys/module/kvm_pvm") and os.path.exists("/dev/kvm")


def probe():
    p = subprocess.run([PROBE, "--json"], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"moat-probe: exit {p.returncode}: {p.stderr}")
    return json.loads(p.stdout), p.stderr


def virsh_offers(virttype):
    """libvirt's own answer, through its own client."""
    p = subprocess.run(["virsh", "-c", URI, "domcapabilities", "--virttype", virttype],
                       capture_output=True, text=True, timeout=120)
    return p.returncode == 0, p.stderr.strip()


def answering():
    return subprocess.run(["virsh", "-c", URI, "version"], capture_output=True,
                          timeout=30).returncode == 0


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class LibvirtTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pid = None  # the daemon this test started, if any
        cls.preexisting = answering()

    @classmethod
    def tearDownClass(cls):
        cls.stop()

    @classmethod
    def start(cls):
        if answering():
            return
        pidfile = os.path.join(tempfile.mkdtemp(prefix="moat-libvirt-"), "libvirtd.pid")
        subprocess.run(["libvirtd", "--daemon", "--pid-file", pidfile], check=True, timeout=60)
        deadline = time.monotonic() + 60
        while not (os.path.exists(pidfile) and answering()):
            if time.monotonic() > deadline:
                raise AssertionError("libvirtd did not answer within 60 s")
            time.sleep(0.2)
        with open(pidfile) as f:
            cls.pid = int(f.read().strip())

    @classmethod
    def stop(cls):
        if not cls.pid:
            return
        os.kill(cls.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while alive(cls.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(cls.pid):
            os.kill(cls.pid, signal.SIGKILL)
        cls.pid = None

    def test_1_not_running(self):
        if self.preexisting:
            self.skipTest("a libvirt daemon was already running; left alone")
        self.assertFalse(os.path.exists(SOCK) and answering())
        r, stderr = probe()
        self.assertEqual(r["libvirt"]["verdict"], "libvirt: not running")
        self.assertEqual(r["libvirt"]["status"], "not running")
        self.assertFalse(r["libvirt"]["running"])
        self.assertIsNone(r["libvirt"]["kvm"])
        self.assertIsNone(r["libvirt"]["agrees"])
        self.assertEqual(stderr, "")  # libvirt's default error handler would print here

    def test_2_running(self):
        self.start()
        kvm, kvm_err = virsh_offers("kvm")
        qemu, _ = virsh_offers("qemu")
        r, stderr = probe()
        self.assertEqual(stderr, "")
        lv, h = r["libvirt"], r["hypervisor"]
        self.assertTrue(lv["running"], lv["status"])
        self.assertEqual(lv["status"], f"connected to {URI}")
        # The probe reads libvirt's real answer, the same one virsh gets.
        self.assertTrue(qemu)
        self.assertTrue(lv["qemu"])
        self.assertEqual(lv["kvm"], kvm, kvm_err)
        if PVM:
            # What this machine's libvirt really answers under kvm_pvm (observed): kvm offered.
            self.assertTrue(kvm)
            self.assertFalse(h["usable"])
            self.assertEqual(h["found"], "kvm-pvm")
            self.assertFalse(lv["agrees"])
            self.assertEqual(
                lv["verdict"],
                "libvirt disagrees: it offers the kvm domain type, the direct probe says kvm is "
                f"not usable ({h['reason']}); the direct probe wins")
        else:
            direct_kvm = h["usable"] and h["kind"] == "kvm"
            self.assertEqual(lv["agrees"], direct_kvm == kvm)
        # The direct probe wins: the label value is the probe's, whatever libvirt says.
        self.assertEqual(h["kind"], "none" if not h["usable"] else h["kind"])

    def test_3_stopped_again(self):
        if self.preexisting:
            self.skipTest("a libvirt daemon was already running; left alone")
        self.stop()
        r, _ = probe()
        self.assertEqual(r["libvirt"]["verdict"], "libvirt: not running")


if __name__ == "__main__":
    unittest.main(verbosity=2)
