"""Sessions on the cluster in $KUBECONFIG (Moat installed: e2e/cluster/cluster.sh here),
beside the same operations on a plain runc Pod in the same run:

  - exec round trip of `true` over the Kubernetes API (pods/exec, v5.channel.k8s.io): a new
    TLS connection, the WebSocket upgrade, the command, its exit status; p50/p99 of N, on
    a gVisor Session through Moat's helper (`/.moat/moat-init exec -- true`), the same
    without the helper, and a runc Pod (baseline) with and without it;
  - file write and read of 1 MiB and 100 MiB through the helper (stdin to
    `moat-init write`, `moat-init read` to stdout), MB/s, Session and runc Pod;
  - what the helper adds to cold start: create -> Ready of a Session (its helper from an
    image volume) against a Run Sandbox of the same image running `sleep` (no volume),
    and for the alternative, runc Pods with the helper's image volume against an init
    container copying it into an emptyDir, and against neither.

    bench/session_bench.py [N=200] [COLD=8]

The WebSocket client is written out here (RFC 6455, masked client frames; the v5 channel
protocol: one byte of channel, 255 closes one): no client library's own costs in the
figures, and each exec is timed from the TCP connect to the Status on channel 3.
"""
import base64
import hashlib
import json
import os
import socket
import ssl
import statistics
import struct
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from e2e_bench import Api, kubectl, pct  # noqa: E402
from kube import get_json, wait_for  # noqa: E402

IMAGE = os.environ.get("MOAT_E2E_IMAGE", "moat.local/busybox:1.35")
HELPER = "/.moat/moat-init"
HELPER_IMAGE = os.environ.get("MOAT_HELPER_IMAGE", "moat.local/moat-node:0.1.0")
MIB = 1024 * 1024


class Exec:
    """One pods/exec call over a WebSocket (v5.channel.k8s.io)."""

    def __init__(self, api):
        self.api = api

    def run(self, ns, pod, argv, stdin=None, sink=None):
        """Runs argv; returns (exit code, stdout bytes (or the count sent to sink), stderr)."""
        q = [("command", a) for a in argv] + [("stdout", "true"), ("stderr", "true")]
        if stdin is not None:
            q.append(("stdin", "true"))
        path = f"/api/v1/namespaces/{ns}/pods/{pod}/exec?" + urllib.parse.urlencode(q)
        raw = socket.create_connection((self.api.host, self.api.port), timeout=60)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = self.api.ssl.wrap_socket(raw, server_hostname=self.api.host)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: {self.api.host}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n"
                   "\r\n").encode())
        self.buf = b""
        self.sock = s
        head = self._until(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"exec upgrade refused: {head[:200]!r} {self.buf[:300]!r}")
        if stdin is not None:
            for i in range(0, len(stdin), 256 * 1024):
                self._send(b"\x00" + stdin[i:i + 256 * 1024])
            self._send(b"\xff\x00")  # v5: close stdin
        out, err, status = (0 if sink else bytearray()), bytearray(), None
        while True:
            op, data = self._frame()
            if op == 8:  # close
                break
            if not data:
                continue
            ch, payload = data[0], data[1:]
            if ch == 1:
                if sink:
                    sink.update(payload)
                    out += len(payload)
                else:
                    out += payload
            elif ch == 2:
                err += payload
            elif ch == 3:
                status = json.loads(payload)
        s.close()
        return exit_code(status), (out if sink else bytes(out)), bytes(err)

    def _until(self, marker):
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("exec: connection closed during the upgrade")
            self.buf += chunk
        head, self.buf = self.buf.split(marker, 1)
        return head

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise RuntimeError("exec: connection closed mid-frame")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def _send(self, payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x82])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        m = (int.from_bytes(mask * (n // 4 + 1), "big") >> (8 * (4 - n % 4) if n % 4 else 0))
        body = (int.from_bytes(payload, "big") ^ m).to_bytes(n, "big") if n else b""
        self.sock.sendall(head + mask + body)


def exit_code(status):
    if not status:
        return -1
    if status.get("status") == "Success":
        return 0
    for c in status.get("details", {}).get("causes", []):
        if c.get("reason") == "ExitCode":
            return int(c["message"])
    return -1


def ready(obj):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in obj.get("status", {}).get("conditions", []))


def runc_pod(name, volume=None):
    """A plain Pod (runc: no RuntimeClass), idle; volume: "image" (the helper's image volume,
    as a Session gets it), "copy" (an init container copies it into an emptyDir) or None."""
    c = {"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
         "command": ["sleep", "3600"],
         "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "512Mi"}}}
    spec = {"containers": [c], "terminationGracePeriodSeconds": 0}
    if volume == "image":
        spec["volumes"] = [{"name": "moat-init", "image": {"reference": HELPER_IMAGE,
                                                           "pullPolicy": "IfNotPresent"}}]
        c["volumeMounts"] = [{"name": "moat-init", "mountPath": "/.moat",
                              "subPath": "moat-init", "readOnly": True}]
    elif volume == "copy":
        spec["volumes"] = [{"name": "moat-init", "emptyDir": {}}]
        # the node image has no shell and no cp: the helper copies itself
        spec["initContainers"] = [{"name": "copy", "image": HELPER_IMAGE,
                                   "imagePullPolicy": "IfNotPresent",
                                   "command": ["/moat-init/moat-init", "write", "/.moat/moat-init",
                                               "--mode", "0755", "--from", "/moat-init/moat-init"],
                                   "volumeMounts": [{"name": "moat-init", "mountPath": "/.moat"}]}]
        c["volumeMounts"] = [{"name": "moat-init", "mountPath": "/.moat"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def sandbox(name, session, cpu="1"):
    """A Session (1 CPU, the default: exec's bursts are not throttled) or a Run."""
    spec = {"image": IMAGE, "isolation": "GVisor", "resources": {"cpu": cpu, "memory": "512Mi"}}
    if session:
        spec.update(mode="Session", idleTimeout="30m")
    else:
        spec.update(command=["sleep", "3600"], timeout="30m")
    return {"apiVersion": "moat.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": name},
            "spec": spec}


def cold_start(ns, make, kind, n):
    """create -> Ready, sequentially, n times (each deleted before the next)."""
    times = []
    for i in range(n):
        obj = make(f"cold-{i}")
        t0 = time.monotonic()
        kubectl("create", "-n", ns, "-f", "-", stdin=json.dumps(obj))
        if kind == "sandbox":
            wait_for(lambda: ready(get_json("sandbox", obj["metadata"]["name"], "-n", ns)), 120,
                     what="ready")
        else:
            wait_for(lambda: ready(get_json("pod", obj["metadata"]["name"], "-n", ns)), 120,
                     what="ready")
        times.append(time.monotonic() - t0)
        kubectl("delete", kind, obj["metadata"]["name"], "-n", ns, "--wait=true")
    return times


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    cold = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    api = Api(os.environ["KUBECONFIG"])  # the kubeconfig's client certificate
    ns = f"session-bench-{os.getpid()}"
    kubectl("create", "namespace", ns)
    try:
        kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List",
             "items": [sandbox("sess", True), runc_pod("runc", "image")]}))
        wait_for(lambda: ready(get_json("sandbox", "sess", "-n", ns))
                 and ready(get_json("pod", "runc", "-n", ns)),
                 180, what="the session and the runc pod")
        ex = Exec(api)
        cases = [("gVisor Session, helper", "sess", [HELPER, "exec", "--", "true"]),
                 ("gVisor Session, direct", "sess", ["true"]),
                 ("runc Pod, helper", "runc", [HELPER, "exec", "--", "true"]),
                 ("runc Pod, direct", "runc", ["true"])]
        for label, pod, argv in cases:
            for _ in range(5):  # warm the paths once
                ex.run(ns, pod, argv)
        # round robin: a drift of the machine (another pod starting, a GC) hits every case
        res = {label: [] for label, _, _ in cases}
        for _ in range(n):
            for label, pod, argv in cases:
                t0 = time.perf_counter()
                rc, _, err = ex.run(ns, pod, argv)
                res[label].append(time.perf_counter() - t0)
                if rc != 0:
                    raise RuntimeError(f"{label}: exit {rc}: {err!r}")
        for label, _, _ in cases:
            xs = res[label]
            print(f"exec `true` {label:26s} p50 {pct(xs, 50) * 1000:6.1f} ms"
                  f"  p99 {pct(xs, 99) * 1000:6.1f} ms  (n={n})", flush=True)
        ratio = pct(res["gVisor Session, helper"], 50) / pct(res["runc Pod, direct"], 50)
        print(f"exec p50: Session through the helper / runc Pod direct = {ratio:.2f}x "
              f"(goal <= 1.3x and <= 50 ms)", flush=True)

        for size in (MIB, 100 * MIB):
            data = os.urandom(size)
            want = hashlib.sha256(data).hexdigest()
            for label, pod in (("gVisor Session", "sess"), ("runc Pod", "runc")):
                t0 = time.perf_counter()
                rc, out, err = ex.run(ns, pod, [HELPER, "write", "/tmp/bench"], stdin=data)
                tw = time.perf_counter() - t0
                if rc != 0:
                    raise RuntimeError(f"write: {rc} {err!r}")
                h = hashlib.sha256()
                t0 = time.perf_counter()
                rc, got, err = ex.run(ns, pod, [HELPER, "read", "/tmp/bench"], sink=h)
                tr = time.perf_counter() - t0
                if rc != 0 or got != size or h.hexdigest() != want:
                    raise RuntimeError(f"read back {got} bytes, rc {rc}: {err!r}")
                print(f"file {size // MIB:3d} MiB {label:15s} write {size / tw / 1e6:7.1f} MB/s"
                      f"  read {size / tr / 1e6:7.1f} MB/s  (goal >= 50 MB/s)", flush=True)

        if cold > 0:
            s = cold_start(ns, lambda nm: sandbox(nm, True, "100m"), "sandbox", cold)
            r = cold_start(ns, lambda nm: sandbox(nm, False, "100m"), "sandbox", cold)
            print(f"cold start create->Ready (n={cold}): Session (helper volume) p50 "
                  f"{statistics.median(s):.3f} s | Run, no volume p50 {statistics.median(r):.3f}"
                  f" s | the helper adds {statistics.median(s) - statistics.median(r):+.3f} s",
                  flush=True)
            vols = {v: cold_start(ns, lambda nm, v=v: runc_pod(nm, v), "pod", cold)
                    for v in ("image", "copy", None)}
            print(f"cold start runc Pods (n={cold}): image volume p50 "
                  f"{statistics.median(vols['image']):.3f} s | init container + emptyDir p50 "
                  f"{statistics.median(vols['copy']):.3f} s | neither p50 "
                  f"{statistics.median(vols[None]):.3f} s", flush=True)
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")


if __name__ == "__main__":
    main()
