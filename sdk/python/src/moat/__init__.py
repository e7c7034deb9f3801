"""Moat's Python SDK: sandboxes for untrusted code in your own Kubernetes clusters.

    from moat import Sandbox
    with Sandbox.create(image="moat.local/python:3.11") as sb:
        print(sb.isolation.runtime, sb.isolation.reason)
        print(sb.exec(["python3", "-c", "print(2 + 2)"]).stdout)
"""
from ._exec import Keepalive, Output, set_keepalive
from .errors import (CommandTimeout, ConnectionLost, FileError, MoatError, SandboxError,
                     SpecRejected, VMUnavailable)
from .files import FileInfo, Files
from .sandbox import CommandResult, Isolation, Sandbox

__all__ = ["Sandbox", "CommandResult", "Isolation", "Output", "Files", "FileInfo", "MoatError",
           "SandboxError", "SpecRejected", "VMUnavailable", "CommandTimeout", "ConnectionLost",
           "FileError", "Keepalive", "set_keepalive"]
__version__ = "0.1.0"
