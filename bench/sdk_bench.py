"""The Python SDK (sdk/python) on the cluster in $KUBECONFIG (Moat installed:
e2e/cluster/cluster.sh here), beside the same steps on a plain runc Pod in the same run:

  - create to first command, the figure public sandbox leaderboards use: Sandbox.create()
    (a Session, gVisor, 100m CPU, 64Mi; it returns once the Sandbox is Ready and its
    isolation reported) then exec(["echo", "hi"]) until its output; p50/p95/p99 over N
    sequential (each deleted before the next, the deletion not timed) and over a burst of B
    created at once from B threads (each timed from its own create; each deletes its own
    after its command, untimed, so that the ones the node's CPU cannot hold yet can start).
    The baseline, with the kubernetes client alone and no helper: create a Pod (no
    RuntimeClass: runc; 100m, 64Mi) running `sleep`, wait for Ready (a watch), exec
    `echo hi` over the same client's stream. Each create, SDK or baseline, loads the
    kubeconfig and makes its own API client, as a program that calls Sandbox.create() does;
  - the SDK's memory while moving a file: files.write_from() then files.read_to() of 1 MiB
    and of 100 MiB, files on disk, each size in a child process of its own: the growth of
    its peak RSS (VmHWM, reset through /proc/self/clear_refs after a warm-up transfer) over
    its RSS before. Flat: about equal for both sizes. Beside it, files.read() of the same
    file, which returns it whole as bytes: the instrument must see that grow.

    "$(bash sdk/python/venv.sh)" bench/sdk_bench.py [N=50] [B=20]
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from kubernetes import client, config, watch
from kubernetes.stream import stream

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_bench import Api, fit_at_once, pct  # noqa: E402

from moat import Sandbox  # noqa: E402

IMAGE = os.environ.get("MOAT_E2E_IMAGE", "moat.local/busybox:1.35")
SIZE = {"cpu": "100m", "memory": "64Mi"}
MIB = 1024 * 1024


def new_api():
    cfg = client.Configuration()
    config.load_kube_config(client_configuration=cfg)
    return client.ApiClient(cfg)


def sdk_first_command(ns, name):
    """Sandbox.create -> exec(echo hi) returned: (seconds, the Sandbox to delete)."""
    t0 = time.perf_counter()
    sb = Sandbox.create(image=IMAGE, name=name, namespace=ns, isolation="GVisor",
                        egress="None", **SIZE)
    r = sb.exec(["echo", "hi"])
    took = time.perf_counter() - t0
    if (r.exit_code, r.stdout) != (0, "hi\n"):
        raise SystemExit(f"{name}: echo hi gave {r}")
    return took, sb.delete


def runc_pod(name):
    res = {"requests": dict(SIZE), "limits": dict(SIZE)}
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            restart_policy="Never", enable_service_links=False,
            automount_service_account_token=False, termination_grace_period_seconds=0,
            containers=[client.V1Container(name="main", image=IMAGE,
                                           image_pull_policy="Never",
                                           command=["sleep", "3600"], resources=res)]))


def runc_first_command(ns, name):
    """The same steps with the kubernetes client on a runc Pod: create, Ready (watched),
    exec echo hi (no helper) over the client's own stream."""
    t0 = time.perf_counter()
    core = client.CoreV1Api(new_api())
    core.create_namespaced_pod(ns, runc_pod(name))
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_pod, ns, field_selector=f"metadata.name={name}",
                       timeout_seconds=120):
        st = ev["object"].status
        if any(c.type == "Ready" and c.status == "True" for c in st.conditions or []):
            w.stop()
            break
        if st.phase in ("Failed", "Succeeded"):
            raise SystemExit(f"pod {name} ended {st.phase}")
    else:
        raise SystemExit(f"pod {name} not Ready in 120 s")
    out = stream(core.connect_get_namespaced_pod_exec, name, ns, command=["echo", "hi"],
                 stdin=False, stdout=True, stderr=True, tty=False)
    took = time.perf_counter() - t0
    if out != "hi\n":
        raise SystemExit(f"pod {name}: echo hi gave {out!r}")
    return took, lambda: core.delete_namespaced_pod(name, ns, grace_period_seconds=0)


def sequential(first, ns, kind, n):
    times = []
    for i in range(n):
        took, delete = first(ns, f"{kind}-seq-{i}")
        times.append(took)
        delete()
    return times


def burst(first, ns, kind, b):
    """b at once from b threads, released together; each deletes its own after its
    command (untimed). Returns each one's time from its own create."""
    times, errors, start = [], [], threading.Barrier(b)

    def one(i):
        try:
            start.wait()
            took, delete = first(ns, f"{kind}-burst-{i}")
            times.append(took)
            delete()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{kind} burst: {len(errors)} of {b} failed: {errors[0]!r}")
    return times


def line(label, xs):
    print(f"{label:34s} p50 {pct(xs, 50):6.3f} s  p95 {pct(xs, 95):6.3f} s  "
          f"p99 {pct(xs, 99):6.3f} s  (n={len(xs)})", flush=True)
    return pct(xs, 50), pct(xs, 95), pct(xs, 99)


def status_kib(key):
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith(key + ":"))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def memory_child(ns, name, size):
    """In a child process: write_from then read_to of `size` bytes; prints the peak RSS
    growth in KiB (VmHWM after the transfer over VmRSS before it, the peak reset first),
    the RSS before, and the seconds the two took."""
    sb = Sandbox.get(name, ns)
    with tempfile.TemporaryDirectory() as d:
        src, back, warm = (os.path.join(d, x) for x in ("src", "back", "warm"))
        for path, n in ((src, size), (warm, MIB)):
            with open(path, "wb") as f:
                for _ in range(n // MIB):
                    f.write(os.urandom(MIB))
        with open(warm, "rb") as f:  # every code path and buffer used once, 1 MiB for both
            sb.files.write_from("/tmp/warm", f)
        with open(back, "wb") as f:
            sb.files.read_to("/tmp/warm", f)
        sb.files.remove("/tmp/warm")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        before = status_kib("VmRSS")
        t0 = time.perf_counter()
        with open(src, "rb") as f:
            sb.files.write_from("/tmp/moved", f)
        with open(back, "wb") as f:
            sb.files.read_to("/tmp/moved", f)
        took = time.perf_counter() - t0
        peak = status_kib("VmHWM")
        # the instrument's check: read() holds the whole file, and the growth must show it
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before_whole = status_kib("VmRSS")
        whole = sb.files.read("/tmp/moved")
        whole_growth = status_kib("VmHWM") - before_whole
        del whole
        sb.files.remove("/tmp/moved")
        if sha256(back) != sha256(src):
            raise SystemExit("the file came back different")
    print(peak - before, before, f"{took:.3f}", whole_growth)


def memory(ns):
    """(size, growth KiB, RSS before KiB, seconds, read()'s growth KiB) for 1 MiB and
    100 MiB, a child each."""
    with Sandbox.create(image=IMAGE, name="mem", namespace=ns, isolation="GVisor",
                        egress="None", cpu="100m", memory="128Mi"):
        out = []
        for size in (MIB, 100 * MIB):
            p = subprocess.run([sys.executable, __file__, "--memory-child", ns, "mem",
                                str(size)], capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                raise SystemExit(f"memory child ({size} bytes): {p.stderr[-2000:]}")
            growth, before, took, whole = p.stdout.split()
            out.append((size, int(growth), int(before), float(took), int(whole)))
        return out


def main():
    if sys.argv[1:2] == ["--memory-child"]:
        return memory_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    b = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    ns = f"sdk-bench-{os.getpid()}"
    core = client.CoreV1Api(new_api())
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        # one warm-up of each (images in the page cache, the namespace's NetworkPolicies)
        for first, kind in ((sdk_first_command, "sandbox"), (runc_first_command, "pod")):
            first(ns, f"{kind}-warm")[1]()
        api = Api(os.environ["KUBECONFIG"])
        figures = {}
        for first, kind, label in ((sdk_first_command, "sandbox", "SDK, gVisor Session"),
                                   (runc_first_command, "pod", "client, runc Pod")):
            figures[(kind, "seq")] = line(f"{label}, {n} sequential",
                                          sequential(first, ns, kind, n))
            # how many the node's CPU holds at once beside what runs now (requests and
            # the RuntimeClass overhead against allocatable): a sample of each kind
            _, delete = first(ns, f"{kind}-sample")
            pod = f"{kind}-sample"  # a Sandbox's pod is named after it
            sample = json.loads(api.get(f"/api/v1/namespaces/{ns}/pods/{pod}")[1])
            fit, per = fit_at_once(api, sample)
            delete()
            figures[(kind, "burst")] = line(f"{label}, burst of {b}",
                                            burst(first, ns, kind, b))
            # fit: how many more beside the sample, which was running
            print(f"{label}: {fit + 1} fit the node's CPU at once ({per}m each with the "
                  f"RuntimeClass overhead)" + (f": a burst of {b} runs in waves"
                                               if fit + 1 < b else ""), flush=True)
        for mode in ("seq", "burst"):
            s, p = figures[("sandbox", mode)], figures[("pod", mode)]
            print(f"SDK gVisor / runc Pod ({mode}): p50 {s[0] / p[0]:.2f}x, "
                  f"p99 {s[2] / p[2]:.2f}x", flush=True)
        s = figures[("sandbox", "seq")][0]
        print(f"goal: create to first command p50 {s:.3f} s sequential (goal <= 0.6 s cold: "
              f"{'met' if s <= 0.6 else 'missed'})", flush=True)
        mem = memory(ns)
        print("SDK peak RSS growth moving a file (write_from, then read_to), 1 MiB | 100 MiB: "
              + " | ".join(f"+{g / 1024:.2f} MiB" for _, g, _, _, _ in mem)
              + f" (RSS before {mem[0][2] / 1024:.1f} MiB; "
              + ", ".join(f"{2 * size / t / 1e6:.0f} MB/s" for size, _, _, t, _ in mem)
              + "); files.read() whole, for contrast: "
              + " | ".join(f"+{w / 1024:.2f} MiB" for *_, w in mem), flush=True)
    finally:
        core.delete_namespace(ns)


if __name__ == "__main__":
    main()
