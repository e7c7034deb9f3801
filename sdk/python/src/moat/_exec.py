"""Commands through pods/exec and Moat's helper (`/.moat/moat-init`), over the Kubernetes
client's WebSocket (v5.channel.k8s.io: stdin can be closed).

Every command runs under `moat-init exec --framed-stdin`: its stdin goes as frames (a 4-byte
big-endian length, then the bytes; a 0-length frame ends it) and the exec's own stdin stays
open for the command's life, so a client that goes away (this process killed, the network
cut) ends the command's process group in the sandbox. A stream that ends without the exit
status raises ConnectionLost: output is never returned as complete when it may not be, and
the socket's own errors (websocket, ssl, OSError) never leak: they are its __cause__.
"""
from __future__ import annotations

import contextvars
import copy
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Union

from kubernetes import client
from kubernetes.stream import stream, ws_client
from websocket import ABNF, WebSocketException

from .errors import CommandTimeout, ConnectionLost

HELPER = "/.moat/moat-init"
STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3
FRAME = 256 * 1024
TIMEOUT_EXIT = 124  # moat-init exec: --timeout ran out, the process group was killed

Stdin = Union[bytes, str, IO[bytes], None]


@dataclass(frozen=True)
class Keepalive:
    """TCP keepalive on each command's connection: after `idle` seconds without a byte from
    the server, a probe every `interval` seconds; `count` unanswered ones end the connection.
    A path that went silent (no FIN, no RST: a NAT's table, a dead node) raises
    ConnectionLost within idle + interval * count seconds, while a command that prints
    nothing for hours still lives: the server's kernel answers the probes. (No
    TCP_USER_TIMEOUT: it would also end a live connection whose upload waits on a command
    that does not read its stdin yet.)"""
    idle: float = 30
    interval: float = 10
    count: int = 3


KEEPALIVE = Keepalive()


def set_keepalive(idle: float = 30, interval: float = 10, count: int = 3) -> None:
    """How soon a silent connection is given up (Keepalive), for the connections opened from
    now on; at least 1 s and one probe."""
    global KEEPALIVE
    if idle < 1 or interval < 1 or count < 1:
        raise ValueError("keepalive: idle and interval at least 1 s, count at least 1")
    KEEPALIVE = Keepalive(idle, interval, int(count))


def _keep_alive(ws) -> None:
    """KEEPALIVE on the WebSocket's TCP socket (Linux's options; elsewhere, none). The
    WebSocket is closed and ConnectionLost raised if the socket refuses them."""
    sock = getattr(ws.sock, "sock", None)
    if sock is None or not hasattr(socket, "TCP_KEEPIDLE"):
        return
    k = KEEPALIVE
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, int(k.idle))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, int(k.interval))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, k.count)
    except OSError as e:
        ws.close()
        raise ConnectionLost(f"exec: its connection refused TCP keepalive ({e})") from e
# what a broken connection raises from the client's socket: websocket-client's own exceptions,
# ssl.SSLError and the socket's OSError (ConnectionResetError, BrokenPipeError, ...)
LOST = (WebSocketException, OSError)


class Cancelled(Exception):
    """Raised in the thread of a call that Cancel stopped; its caller has gone (moat.aio)."""


class Cancel:
    """Stops, from another thread, the calls made in the context it is set in (CANCEL): each
    connection they open is shut (a reader blocked on it wakes, and the call raises
    ConnectionLost), so a command's process group is killed in the sandbox (its stdin ended).
    Once cancelled, a connection opened later is shut at once, and the call's waits (pause)
    raise Cancelled. moat.aio's way to stop a call it runs in a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._close: Callable[[], None] | None = None
        self.cancelled = False

    def check(self) -> None:
        """Raises Cancelled once cancelled: for a call's own waits (Sandbox.wait_ready)."""
        if self.cancelled:
            raise Cancelled("the call was cancelled")

    def attach(self, ws) -> None:
        self.attach_closer(lambda: _shut(ws))

    def attach_closer(self, close: Callable[[], None] | None) -> None:
        """close() ends the connection the call now waits on (the latest one attached);
        None once it is done with it (before it goes back to a pool, where a late close()
        would end another request's connection: under the lock, so a close() under way
        finishes first)."""
        with self._lock:
            self._close = close
            if self.cancelled and close is not None:
                _quietly(close)

    def __call__(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._close is not None:
                _quietly(self._close)


def _quietly(close: Callable[[], None]) -> None:
    """A cancel never raises: the connection it shuts may be closing already."""
    try:
        close()
    except Exception:  # noqa: BLE001 - whatever the closed connection says, it is closed
        pass


CANCEL: contextvars.ContextVar[Cancel | None] = contextvars.ContextVar("moat_cancel",
                                                                        default=None)


def check() -> None:
    """Cancelled if the call running in this context was cancelled (CANCEL)."""
    cancel = CANCEL.get()
    if cancel is not None:
        cancel.check()


def attach_closer(close: Callable[[], None] | None) -> None:
    """Lets a cancel of the call running in this context end its wait by close() (None: the
    wait is over, its connection no longer the call's to shut)."""
    cancel = CANCEL.get()
    if cancel is not None:
        cancel.attach_closer(close)


def pause(seconds: float) -> None:
    """time.sleep, unless the call was cancelled (Cancelled, before and after it)."""
    check()
    time.sleep(seconds)
    check()


def _shut(ws) -> None:
    """Shuts the TCP connection under the WebSocket, from any thread. The raw socket's
    shutdown, not SSLSocket.shutdown, which drops its SSL object under a reader (that reader
    would get a ValueError, not the end of the stream)."""
    sock = getattr(ws.sock, "sock", None)
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: nothing left to wake


@dataclass(frozen=True)
class Output:
    """A piece of a command's output as it arrives: stream is "stdout" or "stderr"."""

    stream: str
    data: bytes


def exit_code(status: str | None) -> int | None:
    """The exit code in the Status the API server sends on channel 3; None without one."""
    if not status:
        return None
    st = json.loads(status)
    if st.get("status") == "Success":
        return 0
    for cause in st.get("details", {}).get("causes", []):
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    raise ConnectionLost(f"exec failed: {st.get('message', status)}")


def _frames(stdin: Stdin) -> Iterator[bytes]:
    if stdin is None:
        pass
    elif isinstance(stdin, (bytes, bytearray, memoryview)):
        data = bytes(stdin)
        for i in range(0, len(data), FRAME):
            yield struct.pack(">I", len(data[i:i + FRAME])) + data[i:i + FRAME]
    elif isinstance(stdin, str):
        yield from _frames(stdin.encode())
    else:
        while chunk := stdin.read(FRAME):
            yield struct.pack(">I", len(chunk)) + chunk
    yield struct.pack(">I", 0)


def open_exec(core: client.CoreV1Api, namespace: str, pod: str, argv: list[str]):
    """A WebSocket to `argv` in the pod's one container (binary channels)."""
    # stream() swaps call_api on the ApiClient it is given for the length of the call
    # (kubernetes 37, stream/stream.py): on a client shared by threads, another thread's
    # request meanwhile goes out as a WebSocket, and two streams at once can leave the swap
    # in place for good. So each exec gets a shallow copy of the client (the same
    # configuration and connection pool).
    core = client.CoreV1Api(copy.copy(core.api_client))
    ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, command=argv,
                stdin=True, stdout=True, stderr=True, tty=False, binary=True,
                _preload_content=False)
    # The client keeps every byte of output a second time for read_all() unless told not to,
    # and kubernetes 37's stream() does not pass capture_all through: its own no-op writer.
    ws._all = ws_client._IgnoredIO()
    _keep_alive(ws)
    cancel = CANCEL.get()
    if cancel is not None:
        cancel.attach(ws)
    return ws


def send(ws, data: bytes, what: str) -> None:
    """Writes stdin (channel 0); ConnectionLost if the connection is gone."""
    try:
        ws.write_stdin(data)
    except LOST as e:
        raise ConnectionLost(f"{what}: the connection was lost while sending stdin ({e})") from e


def close_stdin(ws, what: str) -> None:
    """v5: the end of stdin (a close of channel 0); ConnectionLost if the connection is gone."""
    try:
        ws.close_channel(STDIN)
    except LOST as e:
        raise ConnectionLost(f"{what}: the connection was lost while closing stdin ({e})") from e


def drain(ws, channels: tuple[int, ...], what: str) -> Iterator[tuple[int, bytes]]:
    """Until the stream closes: (channel, bytes) frame by frame as they arrive; the Status
    (channel 3) is kept in ws._channels for the caller. One frame at a time from the socket
    (the client's update() takes in every frame already there before it returns, so a fast
    command's output would pile up in memory), so memory stays flat for any size.
    ConnectionLost (`what` names the call) when the socket fails or ends without a close."""
    while ws.is_open():
        try:
            op, frame = ws.sock.recv_data_frame(True)
        except LOST as e:
            ws._connected = False
            raise ConnectionLost(f"{what}: the connection was lost ({e or type(e).__name__})"
                                 ) from e
        if op == ABNF.OPCODE_CLOSE:
            ws._connected = False
            return
        if op not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) or not frame.data:
            continue
        ch, data = frame.data[0], frame.data[1:]
        if ch in channels and data:
            yield ch, bytes(data)
        elif ch == STATUS:
            ws._channels[STATUS] = ws._channels.get(STATUS, b"") + bytes(data)


def helper_argv(argv: list[str], timeout: float | None, cwd: str | None,
                env: dict[str, str] | None) -> list[str]:
    cmd = [HELPER, "exec", "--framed-stdin"]
    if timeout is not None:
        cmd += ["--timeout", f"{timeout:g}"]
    if cwd:
        cmd += ["--cwd", cwd]
    for k, v in (env or {}).items():
        cmd += ["--env", f"{k}={v}"]
    return cmd + ["--", *argv]


def run_stream(core: client.CoreV1Api, namespace: str, pod: str, argv: list[str], *,
               stdin: Stdin = None, timeout: float | None = None, cwd: str | None = None,
               env: dict[str, str] | None = None) -> Iterator[Output | int]:
    """Yields Output pieces as they arrive, then the exit code (an int) last. Raises
    CommandTimeout past timeout, ConnectionLost when the stream breaks or ends without a
    status; an error reading a stdin file object is raised as itself (the command killed)."""
    what = repr(argv[0])
    ws = open_exec(core, namespace, pod, helper_argv(argv, timeout, cwd, env))
    out, err = bytearray(), bytearray()
    failed: list[BaseException] = []

    def feed() -> None:  # beside the reader: a command echoing its input fills its pipes
        try:
            for frame in _frames(stdin):
                send(ws, frame, what)
        except ConnectionLost as e:  # the reader sees the same broken stream
            failed.append(e)
        except Exception as e:  # noqa: BLE001 - reading stdin failed here, raised below
            failed.append(e)
            _shut(ws)  # so the command does not wait for input forever: its group is killed
    feeder = threading.Thread(target=feed, name=f"moat-stdin {argv[0]}", daemon=True)
    feeder.start()
    try:
        for ch, data in drain(ws, (STDOUT, STDERR), what):
            (out if ch == STDOUT else err).extend(data)
            yield Output("stdout" if ch == STDOUT else "stderr", data)
        code = exit_code(ws._channels.pop(STATUS, b"") or None)
        if code is None:
            raise ConnectionLost(f"the stream of {what} ended without its exit status"
                                 + (f" ({failed[0]})" if failed else ""))
    except ConnectionLost:
        local = [e for e in failed if not isinstance(e, ConnectionLost)]
        if local:
            raise local[0] from None
        raise
    finally:
        ws.close()
        feeder.join(5)
    if timeout is not None and code == TIMEOUT_EXIT and b'"ETIMEDOUT"' in err:
        raise CommandTimeout(argv, timeout, bytes(out), bytes(err))
    yield code
