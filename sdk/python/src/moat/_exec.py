"""Commands through pods/exec and Moat's helper (`/.moat/moat-init`), over the Kubernetes
client's WebSocket (v5.channel.k8s.io: stdin can be closed).

Every command runs under `moat-init exec --framed-stdin`: its stdin goes as frames (a 4-byte
big-endian length, then the bytes; a 0-length frame ends it) and the exec's own stdin stays
open for the command's life, so a client that goes away (this process killed, the network
cut) ends the command's process group in the sandbox. A stream that ends without the exit
status raises ConnectionLost: output is never returned as complete when it may not be.
"""
from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Union

from kubernetes import client
from kubernetes.stream import stream, ws_client

from .errors import CommandTimeout, ConnectionLost

HELPER = "/.moat/moat-init"
STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3
FRAME = 256 * 1024
TIMEOUT_EXIT = 124  # moat-init exec: --timeout ran out, the process group was killed

Stdin = Union[bytes, str, IO[bytes], None]


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
    ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, command=argv,
                stdin=True, stdout=True, stderr=True, tty=False, binary=True,
                _preload_content=False)
    # The client keeps every byte of output a second time for read_all() unless told not to,
    # and kubernetes 37's stream() does not pass capture_all through: its own no-op writer.
    ws._all = ws_client._IgnoredIO()
    return ws


def drain(ws, channels: tuple[int, ...]) -> Iterator[tuple[int, bytes]]:
    """Until the stream closes: (channel, bytes) frame by frame as they arrive; the Status
    (channel 3) is kept in ws._channels for the caller. One frame at a time from the socket
    (the client's update() takes in every frame already there before it returns, so a fast
    command's output would pile up in memory), so memory stays flat for any size."""
    from websocket import ABNF

    while ws.is_open():
        op, frame = ws.sock.recv_data_frame(True)
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
    CommandTimeout past timeout, ConnectionLost when the stream ends without a status."""
    ws = open_exec(core, namespace, pod, helper_argv(argv, timeout, cwd, env))
    out, err = bytearray(), bytearray()
    failed: list[BaseException] = []

    def feed() -> None:  # beside the reader: a command echoing its input fills its pipes
        try:
            for frame in _frames(stdin):
                ws.write_stdin(frame)
        except Exception as e:  # noqa: BLE001 - the stream's end says more; kept for it
            failed.append(e)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        for ch, data in drain(ws, (STDOUT, STDERR)):
            (out if ch == STDOUT else err).extend(data)
            yield Output("stdout" if ch == STDOUT else "stderr", data)
        code = exit_code(ws._channels.pop(STATUS, b"") or None)
    finally:
        ws.close()
        feeder.join(5)
    if code is None:
        raise ConnectionLost(f"the stream of {argv[0]!r} ended without its exit status"
                             + (f" ({failed[0]})" if failed else ""))
    if timeout is not None and code == TIMEOUT_EXIT and b'"ETIMEDOUT"' in err:
        raise CommandTimeout(argv, timeout, bytes(out), bytes(err))
    yield code
