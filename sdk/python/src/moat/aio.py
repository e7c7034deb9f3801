"""Moat's SDK for asyncio programs, backed by threads.

    from moat.aio import AsyncSandbox
    async with await AsyncSandbox.create(image="moat.local/python:3.11") as sb:
        r = await sb.exec(["python3", "-c", "print(2 + 2)"])
        async for ev in sb.exec_stream(["sh", "-c", "echo 1; sleep 1; echo 2"]):
            print(ev.stream, ev.data)

The PyPI kubernetes client has no asyncio (its exec is a blocking WebSocket), so this is not
a second client: every call runs the sync SDK (moat.Sandbox) in a thread with
asyncio.to_thread, which uses the loop's default executor (min(32, CPUs + 4) threads unless
the program sets another with loop.set_default_executor; calls beyond that wait for a
thread). exec_stream runs its command in a thread of its own for the command's life, never
one of the executor's, and hands the output to the loop through a bounded queue.

Cancelling a call (task.cancel(), asyncio.wait_for, a TaskGroup failing) stops its thread
too: a command's or file transfer's connection is shut, so the command's process group is
killed in the sandbox (a write then writes nothing); a wait (create, wait_ready, wait, run)
stops within 0.2 s, and create and run delete the Sandbox they made. A single request to
the API server already sent (get, list, refresh, logs, delete) completes in its thread, its
result dropped.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import IO, Any, TypeVar

from kubernetes import client

from . import _exec
from ._exec import Output, Stdin
from .errors import ConnectionLost
from .files import FileInfo, Files
from .sandbox import CommandResult, Isolation, Sandbox

T = TypeVar("T")


def _cancellable(cancel: _exec.Cancel, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    # to_thread runs this in a copy of the task's context: CANCEL is set for this call only
    _exec.CANCEL.set(cancel)
    return fn(*args, **kw)


async def _call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """fn(*args, **kw) in a thread; if the awaiting task is cancelled, the connections fn has
    open (or opens) are shut."""
    cancel = _exec.Cancel()
    try:
        return await asyncio.to_thread(_cancellable, cancel, fn, *args, **kw)
    except asyncio.CancelledError:
        cancel()
        raise


def _delete_orphan(made: asyncio.Future) -> None:
    if made.cancelled() or made.exception() is not None:  # (the exception retrieved)
        return
    threading.Thread(target=made.result().delete, name="moat-delete", daemon=True).start()


class AsyncSandbox:
    """A Sandbox for asyncio. `sync` is the moat.Sandbox underneath; its state (name,
    namespace, status, phase, isolation) is read as it was last fetched, without I/O."""

    def __init__(self, sandbox: Sandbox):
        self.sync = sandbox
        self.files = AsyncFiles(sandbox.files)

    # ---- making and finding ----
    @classmethod
    async def create(cls, image: str, **kw: Any) -> "AsyncSandbox":
        """Sandbox.create in a thread (the same arguments, the same exceptions). Cancelled,
        it deletes the Sandbox it made."""
        cancel = _exec.Cancel()
        made = asyncio.ensure_future(
            asyncio.to_thread(_cancellable, cancel, Sandbox.create, image, **kw))
        try:
            return cls(await asyncio.shield(made))
        except asyncio.CancelledError:
            cancel()  # its wait stops, and it deletes the Sandbox...
            made.add_done_callback(_delete_orphan)  # ...or it had just returned it
            raise

    @classmethod
    async def run(cls, image: str, command: list[str], **kw: Any
                  ) -> tuple[CommandResult, Isolation]:
        """Sandbox.run in a thread: one Run-mode Sandbox to its end, deleted afterwards
        (cancelled too)."""
        return await _call(Sandbox.run, image, command, **kw)

    @classmethod
    async def get(cls, name: str, namespace: str = "default",
                  api: client.ApiClient | None = None) -> "AsyncSandbox":
        return cls(await _call(Sandbox.get, name, namespace, api))

    @classmethod
    async def list(cls, namespace: str = "default",
                   api: client.ApiClient | None = None) -> list["AsyncSandbox"]:
        return [cls(s) for s in await _call(Sandbox.list, namespace, api)]

    # ---- its state ----
    @property
    def name(self) -> str:
        return self.sync.name

    @property
    def namespace(self) -> str:
        return self.sync.namespace

    @property
    def status(self) -> dict[str, Any]:
        return self.sync.status

    @property
    def phase(self) -> str:
        return self.sync.phase

    @property
    def isolation(self) -> Isolation:
        return self.sync.isolation

    async def refresh(self) -> dict[str, Any]:
        return await _call(self.sync.refresh)

    async def wait_ready(self, timeout: float = 120) -> "AsyncSandbox":
        await _call(self.sync.wait_ready, timeout)
        return self

    async def wait(self, timeout: float = 300) -> dict[str, Any]:
        return await _call(self.sync.wait, timeout)

    async def logs(self) -> str:
        return await _call(self.sync.logs)

    async def delete(self) -> None:
        await _call(self.sync.delete)

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.delete()

    # ---- commands ----
    async def exec(self, argv: list[str], *, stdin: Stdin = None,
                   timeout: float | None = None, cwd: str | None = None,
                   env: dict[str, str] | None = None) -> CommandResult:
        """Sandbox.exec in a thread (the same exceptions). Cancelling it kills the command."""
        return await _call(self.sync.exec, argv, stdin=stdin, timeout=timeout, cwd=cwd,
                           env=env)

    def exec_stream(self, argv: list[str], *, stdin: Stdin = None,
                    timeout: float | None = None, cwd: str | None = None,
                    env: dict[str, str] | None = None) -> "AsyncCommandStream":
        """Output pieces as they are printed (`async for`); .exit_code once it has ended.
        The command starts at the first step of the iteration. CommandTimeout,
        ConnectionLost as exec()."""
        return AsyncCommandStream(self.sync, argv,
                                  {"stdin": stdin, "timeout": timeout, "cwd": cwd, "env": env})


class AsyncCommandStream:
    """One command's output, read in a thread of its own and handed to the loop through a
    queue of at most SLOTS pieces (a slow consumer holds the command's output back, as a
    slow reader of the sync stream does). exit_code is set once the command has ended.

    Stopping early (break out of `async for`, aclose(), leaving `async with`, cancelling the
    consuming task inside `async with`, or dropping the object) shuts its connection: the
    command's process group is killed in the sandbox and the thread ends."""

    SLOTS = 16

    def __init__(self, sandbox: Sandbox, argv: list[str], kw: dict[str, Any]):
        self._sb, self._argv, self._kw = sandbox, argv, kw
        self.exit_code: int | None = None
        self._pump: _Pump | None = None
        self._thread: threading.Thread | None = None
        self._done = False

    def __aiter__(self) -> "AsyncCommandStream":
        return self

    async def __anext__(self) -> Output:
        if self._done:
            raise StopAsyncIteration
        if self._pump is None:
            # the thread holds the pump, never this object: dropping this stops it
            self._pump = _Pump(asyncio.get_running_loop(), self.SLOTS)
            self._thread = threading.Thread(
                target=self._pump.run, args=(self._sb, self._argv, self._kw), daemon=True,
                name=f"moat-exec-stream {self._argv[0]}")
            self._thread.start()
        item = await self._pump.queue.get()
        if isinstance(item, Output):
            self._pump.slots.release()
            return item
        self._done = True
        if isinstance(item, int):
            self.exit_code = item
            raise StopAsyncIteration
        raise item

    async def aclose(self) -> None:
        """Stops the command if it is still running; returns once its thread has ended."""
        self._done = True
        if self._pump is not None:
            self._pump.stop()
        while self._thread is not None and self._thread.is_alive():
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> "AsyncCommandStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if self._pump is not None:
            self._pump.stop()


class _Pump:
    """The thread's side of an AsyncCommandStream: runs the sync stream, posts each item
    (an Output, then the exit code or the exception) to the loop's queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, slots: int):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.slots = threading.Semaphore(slots)
        self.stopped = threading.Event()
        self.cancel = _exec.Cancel()

    def stop(self) -> None:
        self.stopped.set()
        self.cancel()  # wakes the thread if it waits on the connection

    def post(self, item: object) -> bool:
        if self.stopped.is_set():
            return False
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
            return True
        except RuntimeError:  # the loop is closed: nobody is reading
            return False

    def run(self, sb: Sandbox, argv: list[str], kw: dict[str, Any]) -> None:
        _exec.CANCEL.set(self.cancel)  # this thread's own context
        items = None
        try:
            items = _exec.run_stream(sb._core, sb.namespace, sb.pod_name, argv, **kw)
            for item in items:
                while not self.slots.acquire(timeout=0.1):
                    if self.stopped.is_set():
                        return
                if not self.post(item):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            if not (self.stopped.is_set() and isinstance(e, ConnectionLost)):
                self.post(e)
        finally:
            if items is not None:
                items.close()  # shuts its connection if it is still open


class AsyncFiles:
    """`AsyncSandbox.files`: Files' calls in threads. Cancelling one shuts its connection
    (a write then writes nothing; read_to's file holds a part)."""

    def __init__(self, files: Files):
        self.sync = files

    async def write(self, path: str, data: bytes | str | IO[bytes], **kw: Any) -> int:
        return await _call(self.sync.write, path, data, **kw)

    async def write_from(self, path: str, f: IO[bytes], **kw: Any) -> int:
        return await _call(self.sync.write_from, path, f, **kw)

    async def read(self, path: str) -> bytes:
        return await _call(self.sync.read, path)

    async def read_to(self, path: str, f: IO[bytes]) -> None:
        await _call(self.sync.read_to, path, f)

    async def stat(self, path: str) -> FileInfo:
        return await _call(self.sync.stat, path)

    async def list(self, path: str, depth: int = 1) -> list[FileInfo]:
        return await _call(self.sync.list, path, depth)

    async def exists(self, path: str) -> bool:
        return await _call(self.sync.exists, path)

    async def mkdir(self, path: str, parents: bool = True) -> None:
        await _call(self.sync.mkdir, path, parents)

    async def remove(self, path: str, recursive: bool = False) -> None:
        await _call(self.sync.remove, path, recursive)
