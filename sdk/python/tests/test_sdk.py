"""The SDK against the real cluster in $KUBECONFIG with Moat installed (the local cluster:
e2e/cluster/cluster.sh), every call and every exception provoked for real."""
import contextlib
import hashlib
import io
import os
import shutil
import socket
import subprocess
import threading
import time
import tracemalloc
import urllib.parse

import pytest
from kubernetes import client, config
from websocket import WebSocketException

from moat import (CommandTimeout, ConnectionLost, FileError, Output, Sandbox, SandboxError,
                  SpecRejected, VMUnavailable, set_keepalive)

BUSYBOX = "moat.local/busybox:1.35"
PYTHON = "moat.local/python:3.11"
SMALL = {"cpu": "100m", "memory": "128Mi"}
PROCS = ["ps", "-o", "args"]  # every process with its whole command line


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
    for ev in sb.exec_stream(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 2; done"]):
        seen.append((ev.stream, ev.data, time.monotonic() - t0))
    lines = b"".join(d for _, d, _ in seen).split()
    assert lines == [b"1", b"2", b"3"]
    assert seen[0][2] < seen[-1][2] - 2  # the first line long before the last (4 s)


def test_leaving_exec_stream_early_kills_the_command(sb):
    for ev in sb.exec_stream(["sh", "-c", "echo started; sleep 3605"]):
        assert ev.data == b"started\n"
        assert "sleep 3605" in sb.exec(PROCS).stdout
        break  # the generator is dropped: its connection closes
    assert _gone(sb, "sleep 3605"), "the command outlived the loop that left it"


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
        Sandbox.create(image=BUSYBOX, name="vm-here", namespace=ns, isolation="VM", wait=60,
                       **SMALL)
    assert e.value.reason == "NoHypervisor"
    with pytest.raises(client.ApiException) as e:  # create deletes what it could not ready
        Sandbox.get("vm-here", ns)
    assert e.value.status == 404


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


def test_a_deletion_ends_the_wait(ns):
    # more CPU than the node has: Pending for ever, until deleted under the wait
    s = Sandbox.create(image=BUSYBOX, namespace=ns, wait=0, cpu="8", memory="128Mi")
    threading.Timer(1.0, s.delete).start()
    t0 = time.monotonic()
    with pytest.raises(SandboxError, match="was deleted"):
        s.wait_ready(60)
    assert time.monotonic() - t0 < 30  # told by the watch, not by the wait's end


def test_a_user_who_may_not_watch_still_waits(ns):
    """create() follows its Sandbox by a watch; a user allowed get but not watch gets the
    same result by reading it again (a ServiceAccount's token, as an agent in a Pod has)."""
    rbac, core = client.RbacAuthorizationV1Api(), client.CoreV1Api()
    core.create_namespaced_service_account(ns, {"metadata": {"name": "nowatch"}})
    rbac.create_namespaced_role(ns, {
        "metadata": {"name": "nowatch"},
        "rules": [{"apiGroups": ["moat.dev"], "resources": ["sandboxes"],
                   "verbs": ["get", "list", "create", "delete"]},
                  {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                  {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]}]})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "nowatch"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "nowatch"},
        "subjects": [{"kind": "ServiceAccount", "name": "nowatch", "namespace": ns}]})
    token = core.create_namespaced_service_account_token(
        "nowatch", ns, {"spec": {"audiences": []}}).status.token
    cfg = client.Configuration()
    config.load_kube_config(client_configuration=cfg)
    cfg.cert_file = cfg.key_file = None
    cfg.api_key = {"authorization": f"Bearer {token}"}
    api = client.ApiClient(cfg)
    with pytest.raises(client.ApiException) as e:  # the premise: watch is refused
        client.CustomObjectsApi(api).list_namespaced_custom_object(
            "moat.dev", "v1alpha1", ns, "sandboxes", watch=True, timeout_seconds=1,
            _preload_content=False)
    assert e.value.status == 403
    with Sandbox.create(image=BUSYBOX, namespace=ns, api=api, **SMALL) as s:
        assert s.isolation.runtime == "gvisor"
        assert s.exec(["echo", "polled"]).stdout == "polled\n"


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


def test_one_sandbox_from_threads_at_once(sb):
    """Commands and reads of the same Sandbox (one API client) from threads at once: the
    kubernetes client's stream() swaps a method on the client it is given for each exec."""
    errors, outs = [], {}

    def execs(i):
        try:
            for j in range(3):
                outs[(i, j)] = sb.exec(["echo", f"{i}.{j}"]).stdout
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    def reads():
        try:
            for _ in range(20):
                assert sb.refresh()["metadata"]["name"] == sb.name
                time.sleep(0.02)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)
    threads = ([threading.Thread(target=execs, args=(i,)) for i in range(4)]
               + [threading.Thread(target=reads) for _ in range(2)])
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert outs == {(i, j): f"{i}.{j}\n" for i in range(4) for j in range(3)}
    assert sb.refresh()["metadata"]["name"] == sb.name  # the client still works


def test_example_agent_loop_runs_to_success(ns):
    import subprocess
    import sys
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    p = subprocess.run([sys.executable, os.path.join(root, "examples", "agent_loop.py"),
                        "--namespace", ns], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "attempt 3: exit 0" in p.stdout and "tests pass" in p.stdout


def test_stdin_that_fails_to_read_raises_itself_and_kills_the_command(sb):
    class Broken(io.RawIOBase):
        reads = 0

        def readable(self):
            return True

        def read(self, n=-1):
            self.reads += 1
            if self.reads == 1:
                return b"x"
            time.sleep(2)  # the command has started its sleep by now
            raise OSError("the disk went away")
    with pytest.raises(OSError, match="the disk went away"):
        sb.exec(["sh", "-c", "sleep 3603 & cat >/dev/null; wait"], stdin=Broken())
    assert _gone(sb, "sleep 3603"), "the command outlived its failed input"


class Relay:
    """A loopback TCP relay to the API server, between the SDK and the real server: TLS passes
    through untouched (the server's certificate names 127.0.0.1), and cut() breaks every
    connection at once (both sockets of each closed), as a lost network path would."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return  # closed
            up = socket.create_connection(self.upstream)
            with self.lock:
                self.socks += [down, up]
            for a, b in ((down, up), (up, down)):
                t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                t.start()
                self.threads.append(t)

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket):
        try:
            while data := a.recv(65536):
                b.sendall(data)
            b.shutdown(socket.SHUT_WR)  # a clean end passes on as one
        except OSError:
            pass  # cut

    def cut(self):
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked on it
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()
        self.cut()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def relayed(sb):
    """The module's sandbox seen through a Relay: (relay, that Sandbox)."""
    cfg = client.Configuration()
    config.load_kube_config(client_configuration=cfg)
    u = urllib.parse.urlsplit(cfg.host)
    relay = Relay((u.hostname, u.port or 443))
    cfg.host = f"https://127.0.0.1:{relay.port}"
    assert cfg.verify_ssl  # the server's certificate is checked through the relay
    yield relay, Sandbox.get(sb.name, sb.namespace, api=client.ApiClient(cfg))
    relay.close()


def _running(sb, marker: str) -> bool:
    return any(marker in line for line in sb.exec(PROCS).stdout.splitlines())


def _gone(sb, marker: str, within: float = 10) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not _running(sb, marker):
            return True
        time.sleep(0.5)
    return False


def _exec_running(sb, via, marker: str, argv: list[str]):
    """via.exec(argv) in a thread of its own, returned once `marker` runs in the sandbox:
    (the thread, [its result], [what it raised])."""
    got: list = []
    caught: list[BaseException] = []

    def run():
        try:
            got.append(via.exec(argv))
        except BaseException as e:  # noqa: BLE001 - the caller asserts it
            caught.append(e)
    t = threading.Thread(target=run)
    t.start()
    end = time.monotonic() + 30
    while not _running(sb, marker):
        assert time.monotonic() < end, "the command never started"
        time.sleep(0.2)
    return t, got, caught


def _is_socket_error(e: BaseException) -> bool:
    return isinstance(e, (WebSocketException, OSError))


def test_cut_connection_mid_stream_raises_and_kills_the_command(sb, relayed):
    relay, via = relayed
    marker = "sleep 3601"
    it = via.exec_stream(["sh", "-c", f"echo started; {marker}"])
    assert next(it) == Output("stdout", b"started\n")
    assert _running(sb, marker)
    relay.cut()
    t0 = time.monotonic()
    with pytest.raises(ConnectionLost) as e:
        for _ in it:
            pass
    assert time.monotonic() - t0 < 5
    assert _is_socket_error(e.value.__cause__), repr(e.value.__cause__)
    assert _gone(sb, marker), "the command outlived its client"


@contextlib.contextmanager
def _silenced(port: int):
    """Every packet to or from the loopback port dropped (an nftables table of the test's
    own, removed after): a path gone silent, with no FIN and no RST."""
    table = f"moat_sdk_silence_{os.getpid()}"

    def nft(script: str) -> None:
        subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True,
                       capture_output=True, timeout=30)
    nft(f"add table inet {table}\n"
        f"add chain inet {table} out {{ type filter hook output priority 0; }}\n"
        f"add rule inet {table} out tcp dport {port} drop\n"
        f"add rule inet {table} out tcp sport {port} drop\n")
    try:
        yield
    finally:
        nft(f"delete table inet {table}\n")


def test_a_silent_connection_raises_by_its_keepalive(sb, relayed):
    """A command that prints nothing, on a path that goes silent: ConnectionLost once the
    keepalive's probes go unanswered (here 1 s idle, 2 probes 1 s apart), not a read for
    ever; and the command is killed once the connection ends at the server's side."""
    if os.geteuid() != 0 or not shutil.which("nft"):
        pytest.skip("dropping a path's packets needs root and nft")
    relay, via = relayed
    marker = "sleep 3604"
    set_keepalive(1, 1, 2)
    try:
        t, _, caught = _exec_running(sb, via, marker, ["sh", "-c", marker])
        with _silenced(relay.port):
            t.join(30)
            assert not t.is_alive(), "a silent connection went unnoticed for 30 s"
    finally:
        set_keepalive()
    assert len(caught) == 1 and isinstance(caught[0], ConnectionLost), caught
    assert _is_socket_error(caught[0].__cause__), repr(caught[0].__cause__)
    relay.cut()  # the relay's side to the API server ends too
    assert _gone(sb, marker), "the command outlived its client"


def test_cut_connection_mid_exec_raises_and_kills_the_command(sb, relayed):
    relay, via = relayed
    marker = "sleep 3602"
    t, got, caught = _exec_running(sb, via, marker, ["sh", "-c", f"echo partial; {marker}"])
    relay.cut()
    t0 = time.monotonic()
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 5
    assert not got, f"a partial result returned as complete: {got}"
    assert len(caught) == 1 and isinstance(caught[0], ConnectionLost), caught
    assert _is_socket_error(caught[0].__cause__), repr(caught[0].__cause__)
    assert _gone(sb, marker), "the command outlived its client"


def test_cut_connection_mid_file_transfer(sb, relayed):
    relay, via = relayed
    size = 32 * 1024 * 1024  # more than the sockets on the way can hold
    assert sb.exec(["sh", "-c", f"head -c {size} /dev/zero > /tmp/cut-read"]).exit_code == 0

    class CutOnFirstWrite(io.RawIOBase):
        n = 0

        def writable(self):
            return True

        def write(self, b):
            if not self.n:
                relay.cut()
            self.n += len(b)
            return len(b)
    sink = CutOnFirstWrite()
    with pytest.raises(ConnectionLost) as e:
        via.files.read_to("/tmp/cut-read", sink)
    assert 0 < sink.n < size
    assert _is_socket_error(e.value.__cause__), repr(e.value.__cause__)

    class CutAfterFourReads(io.RawIOBase):
        """32 MiB of zeros, seekable (write() announces the size); the relay is cut as the
        fifth piece is read, while the helper is still waiting for the rest."""
        pos = reads = 0

        def readable(self):
            return True

        def seekable(self):
            return True

        def tell(self):
            return self.pos

        def seek(self, off, whence=io.SEEK_SET):
            self.pos = size if whence == io.SEEK_END else off
            return self.pos

        def read(self, n=-1):
            self.reads += 1
            if self.reads == 5:
                relay.cut()
            n = min(n if n >= 0 else size, size - self.pos)
            self.pos += n
            return b"\0" * n
    with pytest.raises(ConnectionLost):
        via.files.write_from("/tmp/cut-write", CutAfterFourReads())
    # moat-init write --size: a stream that ended short writes nothing, temporary file
    # included, once the helper has seen its stdin end
    assert _gone(sb, "moat-init write /tmp/cut-write")
    assert not sb.files.exists("/tmp/cut-write")
    assert [i.name for i in sb.files.list("/tmp") if "cut-write" in i.name] == []
