"""A Moat Sandbox from Python: create, exec, files, and what isolation really ran."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

from . import _exec
from .errors import SandboxError, SpecRejected, VMUnavailable
from .files import Files

GROUP, VERSION, PLURAL = "moat.dev", "v1alpha1", "sandboxes"
FINAL = ("Succeeded", "Failed", "Expired")
# how long Sandbox.run waits, after the end, for the node's report of what ran it
REPORT_WAIT_S = 10.0

_config_lock = threading.Lock()


def _api_client(api: client.ApiClient | None) -> client.ApiClient:
    """The given client, or one from the kubeconfig as kubectl finds it (KUBECONFIG,
    ~/.kube/config), else the in-cluster service account."""
    if api is not None:
        return api
    with _config_lock:
        cfg = client.Configuration()
        try:
            config.load_kube_config(client_configuration=cfg)
        except config.ConfigException:
            config.load_incluster_config(client_configuration=cfg)
    return client.ApiClient(cfg)


@dataclass(frozen=True)
class Isolation:
    """What the node reported it ran: runtime "gvisor" or "kata" ("" until reported),
    the containerd handler, why, and whether it is the runtime's own record."""

    runtime: str
    handler: str
    reason: str
    verified: bool


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes
    stderr_bytes: bytes


class Sandbox:
    """One Sandbox. Sandbox.create() makes a Session (commands and files until its timeout or
    idle timeout); as a context manager it is deleted on leaving the block."""

    def __init__(self, name: str, namespace: str, api: client.ApiClient):
        self.name, self.namespace = name, namespace
        self._api = api
        self._co = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._obj: dict[str, Any] = {}
        self.files = Files(self)

    # ---- making and finding ----
    @classmethod
    def create(cls, image: str, *, name: str | None = None, namespace: str = "default",
               isolation: str = "Auto", egress: str = "None", timeout: str | None = None,
               idle_timeout: str | None = None, cpu: str | None = None,
               memory: str | None = None, env: dict[str, str] | None = None,
               command: list[str] | None = None, wait: float = 120,
               api: client.ApiClient | None = None) -> "Sandbox":
        """Creates a Session and waits until a command can run in it (Ready). SpecRejected
        when the API server refuses the spec (its message names the field); VMUnavailable
        when isolation VM cannot be placed; SandboxError when it fails before it is ready or
        is not ready in `wait` seconds. When it raises after making the Sandbox, it has
        deleted it."""
        spec: dict[str, Any] = {"image": image, "mode": "Session", "isolation": isolation,
                                "network": {"egress": egress}}
        if timeout:
            spec["timeout"] = timeout
        if idle_timeout:
            spec["idleTimeout"] = idle_timeout
        if cpu or memory:
            spec["resources"] = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
        if env:
            spec["env"] = [{"name": k, "value": v} for k, v in env.items()]
        if command:
            spec["command"] = command
        sb = cls._make(name or f"sbx-{uuid.uuid4().hex[:10]}", namespace, spec, api)
        try:
            if wait:
                sb.wait_ready(wait)
            _exec.check()  # moat.aio: its caller has gone
        except BaseException:
            sb.delete()  # the caller gets no handle to it: nothing is left behind
            raise
        return sb

    @classmethod
    def run(cls, image: str, command: list[str], *, namespace: str = "default",
            timeout: float = 300, api: client.ApiClient | None = None,
            **spec: Any) -> tuple[CommandResult, Isolation]:
        """One Run-mode Sandbox to its end: its output (the pod's log), exit code and the
        isolation it got; the Sandbox is deleted afterwards. A program that ends at once can
        end before the node has reported what ran it: the report is waited for up to
        REPORT_WAIT_S more (Isolation.runtime "" when the node never said)."""
        body = {"image": image, "command": command, **spec}
        sb = cls._make(f"run-{uuid.uuid4().hex[:10]}", namespace, body, api)
        try:
            start = time.monotonic()
            st = sb.wait(timeout)
            if not sb._reported():  # wait() read it last: no second look when it is in
                try:
                    sb._follow(sb._reported,
                               min(REPORT_WAIT_S, timeout - (time.monotonic() - start)),
                               "no isolation report")
                except SandboxError:
                    pass  # returned as it is: not verified, runtime "" (sdk/python/README.md)
            log = sb.logs()
            code = int(st.get("exitCode", -1))
            return (CommandResult(code, log, "", log.encode(), b""), sb.isolation)
        finally:
            sb.delete()

    @classmethod
    def get(cls, name: str, namespace: str = "default",
            api: client.ApiClient | None = None) -> "Sandbox":
        sb = cls(name, namespace, _api_client(api))
        sb.refresh()
        return sb

    @classmethod
    def list(cls, namespace: str = "default",
             api: client.ApiClient | None = None) -> list["Sandbox"]:
        a = _api_client(api)
        items = client.CustomObjectsApi(a).list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL)["items"]
        out = []
        for o in items:
            sb = cls(o["metadata"]["name"], namespace, a)
            sb._obj = o
            out.append(sb)
        return out

    @classmethod
    def _make(cls, name: str, namespace: str, spec: dict[str, Any],
              api: client.ApiClient | None) -> "Sandbox":
        sb = cls(name, namespace, _api_client(api))
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Sandbox",
                "metadata": {"name": name}, "spec": spec}
        try:
            # Strict: an older CRD never silently drops a field set here
            sb._obj = sb._co.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, field_validation="Strict")
        except ApiException as e:
            if e.status in (400, 422):
                raise SpecRejected(_status_message(e)) from None
            raise
        return sb

    # ---- its state ----
    def refresh(self) -> dict[str, Any]:
        self._obj = self._co.get_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                          PLURAL, self.name)
        return self._obj

    @property
    def status(self) -> dict[str, Any]:
        return self._obj.get("status", {})

    @property
    def phase(self) -> str:
        return self.status.get("phase", "Pending")

    @property
    def pod_name(self) -> str:
        """The Pod as the Sandbox's status names it (never assumed from its name)."""
        pod = self.status.get("podName") or self.refresh().get("status", {}).get("podName")
        if not pod:
            raise SandboxError(self.name, "has no pod yet", self.phase)
        return pod

    @property
    def isolation(self) -> Isolation:
        i = self.status.get("isolation", {})
        return Isolation(i.get("runtime", ""), i.get("handler", ""), i.get("reason", ""),
                         bool(i.get("verified", False)))

    def _condition(self, kind: str) -> dict[str, Any]:
        return next((c for c in self.status.get("conditions", []) if c["type"] == kind), {})

    def _raise_if_ended(self) -> None:
        sc = self._condition("Scheduled")
        if sc.get("reason") in ("NoHypervisor", "NoGPUPassthroughNode"):
            raise VMUnavailable(self.name, sc.get("message", sc["reason"]), self.phase,
                                sc["reason"])
        if self.phase in FINAL:
            fin = self._condition("Finished")
            raise SandboxError(self.name, self.status.get("message") or self.phase, self.phase,
                               fin.get("reason"))

    def _reported(self) -> bool:
        """The node has said what really runs it (Isolated True or False)."""
        return self._condition("Isolated").get("status") in ("True", "False")

    def wait_ready(self, timeout: float = 120) -> "Sandbox":
        """Until Ready (a command can run) and its isolation reported. VMUnavailable,
        SandboxError as create()."""
        def ready() -> bool:
            # Ready, and the node has said what really runs it (Isolated True or False)
            if (self.phase == "Running" and self._condition("Ready").get("status") == "True"
                    and self._reported()):
                return True
            self._raise_if_ended()
            return False
        self._follow(ready, timeout, "not ready")
        return self

    def wait(self, timeout: float = 300) -> dict[str, Any]:
        """Until a final phase; returns the status (VMUnavailable as create())."""
        def ended() -> bool:
            if self.phase in FINAL:
                return True
            sc = self._condition("Scheduled")
            if sc.get("reason") == "NoHypervisor":
                raise VMUnavailable(self.name, sc.get("message", ""), self.phase, "NoHypervisor")
            return False
        self._follow(ended, timeout, "not finished")
        return self.status

    def _follow(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Until done() holds for the Sandbox as the API server has it (done may raise to end
        the wait), each change seen as it happens: a watch on this one object from the
        resourceVersion last read, started again where it ends, read again after 410 Gone.
        SandboxError "<what> after <timeout>s", or when the Sandbox is deleted meanwhile."""
        end = time.monotonic() + timeout
        rv: str | None = None
        poll = False  # a user who may get Sandboxes but not watch them: every 0.2 s
        while True:
            if rv is None or poll:
                try:
                    self.refresh()
                except ApiException as e:
                    if e.status == 404:
                        raise SandboxError(self.name, "was deleted", self.phase) from None
                    raise
                rv = self._obj.get("metadata", {}).get("resourceVersion")
            if done():
                return
            left = end - time.monotonic()
            if left <= 0:
                raise SandboxError(self.name, f"{what} after {timeout:g}s", self.phase)
            if poll:
                _exec.pause(0.2)
                continue
            _exec.check()
            try:
                rv = self._watch(rv, done, left)
            except ApiException as e:
                if e.status == 403:
                    poll = True
                elif e.status in (410, 429) or e.status >= 500:
                    _exec.pause(0.2)  # the watch cache is behind or busy: read it again
                    rv = None
                else:
                    raise
            except (OSError, HTTPError, ValueError):
                _exec.check()  # cancelled: the wait's connection was shut
                _exec.pause(0.2)  # the stream broke: read the object again
                rv = None

    def _watch(self, rv: str | None, done: Callable[[], bool], seconds: float) -> str | None:
        """One watch request from rv, for at most `seconds`; returns the resourceVersion to
        go on from (None: read the object again), or as soon as done()."""
        resp = self._co.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, watch=True, resource_version=rv,
            field_selector=f"metadata.name={self.name}", allow_watch_bookmarks=True,
            timeout_seconds=max(1, min(int(seconds), 60)), _preload_content=False,
            _request_timeout=(10, min(seconds, 60) + 15))
        # a cancel shuts the response under a blocked read (urllib3 >= 2.3)
        _exec.attach_closer(resp.shutdown)
        try:
            for line in iter_resp_lines(resp):  # the client's own splitting of a watch
                if not line.strip():
                    continue
                ev = json.loads(line)
                obj = ev.get("object") or {}
                if ev.get("type") == "ERROR":
                    if obj.get("code") != 410:  # not only expired: not at once again
                        _exec.pause(0.2)
                    return None  # read it again
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                if ev.get("type") == "BOOKMARK":
                    continue
                self._obj = obj
                if ev.get("type") == "DELETED":
                    raise SandboxError(self.name, "was deleted", self.phase)
                if done():
                    return rv
            return rv
        finally:
            _exec.attach_closer(None)  # before the connection goes back to the pool
            resp.release_conn()

    def logs(self) -> str:
        return self._core.read_namespaced_pod_log(self.pod_name, self.namespace)

    def delete(self) -> None:
        try:
            self._co.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                     self.name)
        except ApiException as e:
            if e.status != 404:
                raise

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    # ---- commands ----
    def exec_stream(self, argv: list[str], *, stdin: _exec.Stdin = None,
                    timeout: float | None = None, cwd: str | None = None,
                    env: dict[str, str] | None = None) -> Iterator[_exec.Output]:
        """Output as it is printed; the exit code is .exit_code of the generator's return
        (StopIteration.value). CommandTimeout, ConnectionLost as exec()."""
        for item in _exec.run_stream(self._core, self.namespace, self.pod_name, argv,
                                     stdin=stdin, timeout=timeout, cwd=cwd, env=env):
            if isinstance(item, int):
                return item
            yield item
        return None

    def exec(self, argv: list[str], *, stdin: _exec.Stdin = None, timeout: float | None = None,
             cwd: str | None = None, env: dict[str, str] | None = None) -> CommandResult:
        """Runs argv in the sandbox (under Moat's helper: its process group dies with this
        call's connection). CommandTimeout past timeout (the group killed); ConnectionLost
        when the stream ends without the exit status."""
        out, err = bytearray(), bytearray()
        code = -1
        for item in _exec.run_stream(self._core, self.namespace, self.pod_name, argv,
                                     stdin=stdin, timeout=timeout, cwd=cwd, env=env):
            if isinstance(item, int):
                code = item
            elif item.stream == "stdout":
                out += item.data
            else:
                err += item.data
        return CommandResult(code, out.decode(errors="replace"), err.decode(errors="replace"),
                             bytes(out), bytes(err))


def _status_message(e: ApiException) -> str:
    import json
    try:
        return json.loads(e.body).get("message", str(e))
    except (TypeError, ValueError):
        return str(e)
