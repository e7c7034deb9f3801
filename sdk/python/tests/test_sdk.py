"""The SDK against the real cluster in $KUBECONFIG with Moat installed (the local cluster:
e2e/cluster/cluster.sh), every call and every exception provoked for real."""
import hashlib
import io
import os
import threading
import time
import tracemalloc
import uuid

import pytest
from kubernetes import client, config

from moat import (CommandTimeout, FileError, Sandbox, SandboxError, SpecRejected,
                  VMUnavailable)

BUSYBOX = "moat.local/busybox:1.35"
PYTHON = "moat.local/python:3.11"
SMALL = {"cpu": "100m", "memory": "128Mi"}


@pytest.fixture(scope="module")
def ns():
    config.load_kube_config()
    core = client.CoreV1Api()
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def sb(ns):
    with Sandbox.create(image=PYTHON, namespace=ns, egress="None", timeout="30m",
                        **SMALL) as s:
        yield s


def test_create_exec_and_what_really_ran(sb):
    iso = sb.isolation
    assert (iso.runtime, iso.verified) == ("gvisor", True)
    assert "hypervisor" in iso.reason
    r = sb.exec(["python3", "-c", "print(2 + 2)"])
    assert (r.exit_code, r.stdout, r.stderr) == (0, "4\n", "")
    r = sb.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert sb.pod_name == sb.status["podName"]


def test_stdin_bytes_and_file_objects(sb):
    data = os.urandom(700 * 1024)
    r = sb.exec(["sha256sum"], stdin=data)
    assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    r = sb.exec(["wc", "-c"], stdin=io.BytesIO(data))
    assert r.stdout.strip() == str(len(data))
    assert sb.exec(["cat"], stdin="").stdout == ""


def test_exec_stream_arrives_as_printed(sb):
    seen = []
    t0 = time.monotonic()
    for ev in sb.exec_stream(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 1; done"]):
        seen.append((ev.stream, ev.data, time.monotonic() - t0))
    lines = b"".join(d for _, d, _ in seen).split()
    assert lines == [b"1", b"2", b"3"]
    assert seen[0][2] < seen[-1][2] - 1.5  # the first line long before the last


def test_command_timeout(sb):
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout) as e:
        sb.exec(["sh", "-c", "echo started; sleep 300 & sleep 301"], timeout=2)
    assert time.monotonic() - t0 < 30
    assert e.value.stdout == b"started\n"
    assert "sleep 30" not in sb.exec(["ps"]).stdout


def test_files(sb):
    f = sb.files
    assert f.write("/tmp/a.py", b"print('hi')") == 11
    assert f.read("/tmp/a.py") == b"print('hi')"
    assert sb.exec(["python3", "/tmp/a.py"]).stdout == "hi\n"
    f.mkdir("/tmp/d/e")
    f.write("/tmp/d/e/x", "x", mode=0o600)
    st = f.stat("/tmp/d/e/x")
    assert (st.type, st.size, st.mode) == ("file", 1, "0600")
    assert [i.path for i in f.list("/tmp/d", depth=2)] == ["/tmp/d/e", "/tmp/d/e/x"]
    assert f.exists("/tmp/d/e/x") and not f.exists("/tmp/nope")
    f.remove("/tmp/d", recursive=True)
    with pytest.raises(FileError) as e:
        f.read("/tmp/d/e/x")
    assert e.value.errno == "ENOENT"


def test_large_file_streams_with_flat_memory(sb, tmp_path):
    src = tmp_path / "big"
    with open(src, "wb") as out:
        for _ in range(100):
            out.write(os.urandom(1024 * 1024))
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    tracemalloc.start()
    with open(src, "rb") as fh:
        assert sb.files.write_from("/tmp/big", fh) == 100 * 1024 * 1024
    dst = tmp_path / "back"
    with open(dst, "wb") as fh:
        sb.files.read_to("/tmp/big", fh)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert hashlib.sha256(dst.read_bytes()).hexdigest() == want
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes while moving 100 MiB"


def test_spec_refused_names_the_field(ns):
    with pytest.raises(SpecRejected) as e:
        Sandbox.create(image=BUSYBOX, namespace=ns, timeout="forever", wait=0)
    assert "spec.timeout" in str(e.value)


def test_vm_unavailable_here(ns):
    with pytest.raises(VMUnavailable) as e:
        Sandbox.create(image=BUSYBOX, namespace=ns, isolation="VM", wait=60, **SMALL)
    assert e.value.reason == "NoHypervisor"


def test_run_get_list_delete(ns):
    result, iso = Sandbox.run(image=BUSYBOX, command=["sh", "-c", "echo ran; exit 0"],
                              namespace=ns, resources=SMALL)
    assert (result.exit_code, result.stdout, iso.runtime) == (0, "ran\n", "gvisor")
    with Sandbox.create(image=BUSYBOX, namespace=ns, **SMALL) as s:
        assert Sandbox.get(s.name, ns).phase == "Running"
        assert s.name in [x.name for x in Sandbox.list(ns)]
    with pytest.raises(Exception):
        Sandbox.get(s.name, ns).refresh()  # deleted on leaving the block


def test_an_ended_sandbox_raises_its_message(ns):
    s = Sandbox.create(image=BUSYBOX, namespace=ns, command=["sh", "-c", "exit 4"], wait=0,
                       **SMALL)
    assert s.wait(60)["phase"] == "Failed"
    with pytest.raises(SandboxError) as e:
        s.wait_ready(5)
    assert (e.value.phase, e.value.reason) == ("Failed", "Exited")
    s.delete()


def test_many_sandboxes_from_threads(ns):
    results, errors = {}, []

    def one(i):
        try:
            with Sandbox.create(image=BUSYBOX, namespace=ns, **SMALL) as s:
                results[i] = s.exec(["echo", str(i)]).stdout
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert results == {i: f"{i}\n" for i in range(4)}


def test_example_agent_loop_runs_to_success(ns):
    import subprocess
    import sys
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    p = subprocess.run([sys.executable, os.path.join(root, "examples", "agent_loop.py"),
                        "--namespace", ns], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "attempt 3: exit 0" in p.stdout and "tests pass" in p.stdout
