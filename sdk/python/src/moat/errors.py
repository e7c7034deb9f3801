"""The SDK's exceptions: one base, each carrying what the cluster said."""
from __future__ import annotations


class MoatError(Exception):
    """Anything the SDK raises on purpose."""


class SandboxError(MoatError):
    """A Sandbox failed, or ended before what was asked of it; the Sandbox's own message."""

    def __init__(self, name: str, message: str, phase: str | None = None,
                 reason: str | None = None):
        super().__init__(f"sandbox {name}: {message}")
        self.name, self.phase, self.reason = name, phase, reason


class SpecRejected(MoatError):
    """The API server refused the Sandbox; its message names the field."""


class VMUnavailable(SandboxError):
    """isolation VM asked, and no Moat node has a usable hypervisor (NoHypervisor)."""


class CommandTimeout(MoatError):
    """A command ran past its timeout; Moat's helper killed its process group."""

    def __init__(self, argv: list[str], timeout: float, stdout: bytes, stderr: bytes):
        super().__init__(f"{argv[0]!r} ran past its timeout of {timeout:g}s")
        self.argv, self.timeout, self.stdout, self.stderr = argv, timeout, stdout, stderr


class ConnectionLost(MoatError):
    """The stream to a command ended before its exit status: its output may be partial."""


class FileError(MoatError):
    """A file operation failed in the sandbox: errno is the name ("ENOENT")."""

    def __init__(self, op: str, path: str, errno: str, message: str):
        super().__init__(f"{op} {path}: {message} ({errno})")
        self.op, self.path, self.errno = op, path, errno
