"""Files in a sandbox, through Moat's helper: binary-safe, streamed, writes atomic."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from ._exec import (HELPER, STATUS, STDERR, STDOUT, close_stdin, drain, exit_code, open_exec,
                    send)
from .errors import ConnectionLost, FileError

if TYPE_CHECKING:
    from .sandbox import Sandbox

CHUNK = 256 * 1024


@dataclass(frozen=True)
class FileInfo:
    name: str
    path: str
    type: str  # "file", "dir", "symlink" or "other"
    size: int
    mode: str
    mtime: str
    target: str | None = None


class Files:
    """`sandbox.files`: read, write, list, stat, mkdir, remove, exists."""

    def __init__(self, sandbox: "Sandbox"):
        self._sb = sandbox

    def _helper(self, args: list[str], stdin: bytes | IO[bytes] | None = None,
                sink: IO[bytes] | None = None) -> bytes:
        """Runs `moat-init <args>`; stdout (or its byte count into sink). FileError from its
        JSON error line; ConnectionLost when the connection breaks or ends without an exit
        status (a write then wrote nothing: moat-init write --size)."""
        ns, pod = self._sb.namespace, self._sb.pod_name
        what = f"moat-init {args[0]} {args[1]}"
        ws = open_exec(self._sb._core, ns, pod, [HELPER, *args])
        out, err = bytearray(), bytearray()
        try:
            if stdin is not None:
                if isinstance(stdin, (bytes, bytearray)):
                    for i in range(0, len(stdin), CHUNK):
                        send(ws, bytes(stdin[i:i + CHUNK]), what)
                else:
                    while chunk := stdin.read(CHUNK):
                        send(ws, chunk, what)
            close_stdin(ws, what)
            for ch, data in drain(ws, (STDOUT, STDERR), what):
                if ch == STDERR:
                    err += data
                elif sink is not None:
                    sink.write(data)
                else:
                    out += data
            code = exit_code(ws._channels.pop(STATUS, b"") or None)
        finally:
            ws.close()
        if code is None:
            raise ConnectionLost(f"{what}: the stream ended without its exit status")
        if code != 0:
            line = err.decode(errors="replace").strip().splitlines()[-1:] or ["{}"]
            try:
                e = json.loads(line[0])
            except ValueError:
                e = {"message": line[0]}
            raise FileError(e.get("op", args[0]), e.get("path", args[-1]),
                            e.get("error", f"exit {code}"), e.get("message", ""))
        return bytes(out)

    def write(self, path: str, data: bytes | str | IO[bytes], *, mode: int | None = None,
              parents: bool = True) -> int:
        """Writes path atomically (a reader sees the old file or the new one); returns its
        size. A file object is streamed and must be seekable to announce its size."""
        if isinstance(data, str):
            data = data.encode()
        if isinstance(data, (bytes, bytearray)):
            size = len(data)
        else:
            here = data.tell()
            size = data.seek(0, os.SEEK_END) - here
            data.seek(here)
        args = ["write", path, "--size", str(size)]
        if mode is not None:
            args += ["--mode", f"{mode:o}"]
        if parents:
            args.append("--parents")
        return int(json.loads(self._helper(args, stdin=data))["size"])

    def write_from(self, path: str, f: IO[bytes], **kw) -> int:
        return self.write(path, f, **kw)

    def read(self, path: str) -> bytes:
        return self._helper(["read", path])

    def read_to(self, path: str, f: IO[bytes]) -> None:
        """Streams path into f, never whole in memory. On ConnectionLost f holds only a part
        of the file."""
        self._helper(["read", path], sink=f)

    def stat(self, path: str) -> FileInfo:
        return FileInfo(**json.loads(self._helper(["stat", path])))

    def list(self, path: str, depth: int = 1) -> list[FileInfo]:
        out = self._helper(["list", path, "--depth", str(depth)])
        return [FileInfo(**json.loads(line)) for line in out.splitlines() if line.strip()]

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
            return True
        except FileError as e:
            if e.errno in ("ENOENT", "ENOTDIR"):
                return False
            raise

    def mkdir(self, path: str, parents: bool = True) -> None:
        self._helper(["mkdir", path] + (["--parents"] if parents else []))

    def remove(self, path: str, recursive: bool = False) -> None:
        self._helper(["remove", path] + (["--recursive"] if recursive else []))
