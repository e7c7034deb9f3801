"""Leader election with a Lease against the real API server: two candidates, one leader;
kill it and the other leads within the lease duration; pause the leader (SIGSTOP) past
its lease and, when it runs again, it stops working before it writes anything."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from kube import create_namespace, delete_namespace, get_json  # noqa: E402

DRIVER = os.environ["MOAT_LEASE_DRIVER"]
LEASE_DURATION = 15  # the library's default, which the driver uses
RETRY_PERIOD = 2


class Candidate:
    def __init__(self, ns, identity):
        self.id = identity
        self.proc = subprocess.Popen([DRIVER, ns, "election", identity],
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines, self.lock = [], threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(json.loads(line))

    def events(self, op):
        with self.lock:
            return [e for e in self.lines if e["op"] == op]

    def leading(self):
        return len(self.events("leading")) > len(self.events("stopped"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s: {what}")


class LeaderElectionTest(unittest.TestCase):
    def setUp(self):
        self.ns = create_namespace("moat-leader")
        self.candidates = []

    def tearDown(self):
        for c in self.candidates:
            c.stop()
        delete_namespace(self.ns)

    def start(self, identity):
        c = Candidate(self.ns, identity)
        self.candidates.append(c)
        return c

    def holder(self):
        return get_json("configmap", "election-work", "-n", self.ns)["data"]["holder"]

    def test_one_leader_failover_and_pause(self):
        a, b = self.start("a"), self.start("b")
        first = wait(lambda: next((c for c in (a, b) if c.leading()), None), 20,
                     "a first leader")
        other = b if first is a else a
        time.sleep(3)
        self.assertFalse(other.leading(), "two leaders at once")
        self.assertEqual(other.events("wrote"), [], "a follower did work")
        self.assertEqual(self.holder(), first.id)

        # Kill the leader: the other leads within the lease duration (plus a retry period,
        # and its requests' time on a loaded machine).
        killed_at = time.time()
        first.proc.kill()
        wait(other.leading, LEASE_DURATION + RETRY_PERIOD + 6, "the follower to take over")
        self.assertLessEqual(time.time() - killed_at, LEASE_DURATION + RETRY_PERIOD + 6)
        wait(lambda: self.holder() == other.id, 5, "the new leader's work")

        # Pause the leader past its lease: a new candidate takes over; when the paused one
        # resumes it stops leading and writes nothing more.
        c = self.start("c")
        time.sleep(1)
        other.proc.send_signal(signal.SIGSTOP)
        paused_at = time.time()
        wait(c.leading, LEASE_DURATION + RETRY_PERIOD + 5, "a new leader while paused")
        time.sleep(1)
        self.assertGreater(time.time() - paused_at, 10)  # the renew deadline has passed
        other.proc.send_signal(signal.SIGCONT)
        wait(lambda: not other.leading(), 5, "the resumed leader to stop")
        stopped_at = other.events("stopped")[-1]["t"]
        time.sleep(2)
        late = [e for e in other.events("wrote") if e["t"] > stopped_at]
        self.assertEqual(late, [], "the old leader kept working after it stopped")
        self.assertTrue(c.leading())
        self.assertEqual(self.holder(), "c")


if __name__ == "__main__":
    unittest.main(verbosity=2)
