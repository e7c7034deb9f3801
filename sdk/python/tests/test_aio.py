"""moat.aio against the real cluster: several sandboxes driven at once from one event loop,
output streamed before the command ends, and stopping (break, cancel) ends the command and
its thread. The sandboxes are gVisor's own (100m of overhead, not Auto's 250m)."""
import asyncio
import threading
import time

import pytest

from moat import CommandTimeout
from moat.aio import AsyncSandbox

BUSYBOX = "moat.local/busybox:1.35"
SMALL = {"cpu": "100m", "memory": "128Mi", "isolation": "GVisor"}
PROCS = ["ps", "-o", "args"]  # busybox's: every process with its whole command line


def stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("moat-exec-stream")]


def threads_gone(within: float = 2) -> bool:
    end = time.monotonic() + within
    while stream_threads():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


async def running(sb: AsyncSandbox, marker: str) -> bool:
    return marker in (await sb.exec(PROCS)).stdout


async def gone(sb: AsyncSandbox, marker: str, within: float = 10) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not await running(sb, marker) and not stream_threads():
            return True
        await asyncio.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def sandboxes(ns):
    """Three sandboxes, created at once from one loop (and deleted the same way)."""
    async def make():
        return await asyncio.gather(*(AsyncSandbox.create(image=BUSYBOX, namespace=ns,
                                                          **SMALL) for _ in range(3)))
    sbs = asyncio.run(make())
    assert len({s.name for s in sbs}) == 3
    assert all(s.phase == "Running" and s.isolation.runtime == "gvisor" for s in sbs)
    yield sbs

    async def drop():
        await asyncio.gather(*(s.delete() for s in sbs))
    asyncio.run(drop())


def test_sandboxes_driven_concurrently(sandboxes):
    async def main():
        t0 = time.monotonic()
        cmds = [(s, f"{i}") for i, s in enumerate(sandboxes)] + [(sandboxes[0], "again")]
        rs = await asyncio.gather(*(s.exec(["sh", "-c", f"sleep 5; echo {w}; exit {n}"])
                                    for n, (s, w) in enumerate(cmds)))
        return rs, time.monotonic() - t0
    rs, took = asyncio.run(main())
    assert [(r.exit_code, r.stdout) for r in rs] == [(0, "0\n"), (1, "1\n"), (2, "2\n"),
                                                     (3, "again\n")]
    # one by one: 20 s and more; at once: 5 s and each exec's own costs on a busy machine
    assert took < 15, f"4 commands of 5 s took {took:.1f} s: not at once"


def test_files_and_state(sandboxes):
    async def main():
        s = sandboxes[1]
        assert await s.files.write("/tmp/aio/x", b"hello") == 5
        assert await s.files.read("/tmp/aio/x") == b"hello"
        assert (await s.files.stat("/tmp/aio/x")).size == 5
        assert [i.name for i in await s.files.list("/tmp/aio")] == ["x"]
        assert await s.files.exists("/tmp/aio/x")
        await s.files.remove("/tmp/aio", recursive=True)
        assert not await s.files.exists("/tmp/aio")
        got = await AsyncSandbox.get(s.name, s.namespace)
        assert got.name == s.name and (await got.refresh())["status"]["phase"] == "Running"
        assert s.name in [x.name for x in await AsyncSandbox.list(s.namespace)]
        with pytest.raises(CommandTimeout):
            await s.exec(["sleep", "30"], timeout=1)
    asyncio.run(main())


def test_exec_stream_arrives_before_the_end(sandboxes):
    async def main():
        seen = []
        t0 = time.monotonic()
        stream = sandboxes[2].exec_stream(["sh", "-c", "echo 1; sleep 4; echo 2 >&2; exit 5"])
        async for ev in stream:
            seen.append((ev.stream, ev.data, time.monotonic() - t0))
        return seen, time.monotonic() - t0, stream.exit_code
    seen, took, code = asyncio.run(main())
    assert [(s, d) for s, d, _ in seen] == [("stdout", b"1\n"), ("stderr", b"2\n")]
    assert seen[0][2] < took - 1.5, "the first line came only with the end"
    assert code == 5
    assert threads_gone(), "the stream's thread lived on after its end"


def test_stopping_a_stream_ends_its_thread_and_the_command(sandboxes):
    async def main():
        s = sandboxes[2]
        async for ev in s.exec_stream(["sh", "-c", "echo started; sleep 3611"]):
            assert ev.data == b"started\n"
            assert stream_threads()  # the reader is blocked on the silent command
            break  # the stream object is dropped here
        assert await gone(s, "sleep 3611"), "break: the command or its thread lived on"

        async with s.exec_stream(["sh", "-c", "echo started; sleep 3612"]) as st:
            async for ev in st:
                break
        assert not stream_threads()  # aclose() waited for it
        assert await gone(s, "sleep 3612"), "aclose: the command lived on"
    asyncio.run(main())


def test_cancelling_an_exec_kills_the_command(sandboxes):
    async def main():
        s = sandboxes[0]
        task = asyncio.create_task(s.exec(["sh", "-c", "sleep 3613"]))
        end = time.monotonic() + 30
        while not await running(s, "sleep 3613"):
            assert time.monotonic() < end, "never started"
            await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await gone(s, "sleep 3613"), "the cancelled command lived on"
    asyncio.run(main())


def test_a_cancelled_create_deletes_what_it_made(ns):
    name = f"aio-cancelled-{int(time.time())}"
    # more CPU than the node has: it stays Pending, never ready (nothing runs)
    big = {**SMALL, "cpu": "8"}  # the cluster's maximum

    async def main():
        task = asyncio.create_task(AsyncSandbox.create(image=BUSYBOX, name=name, namespace=ns,
                                                       **big))
        while name not in [s.name for s in await AsyncSandbox.list(ns)]:
            await asyncio.sleep(0.05)  # made; create is waiting for it to be ready
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        end = time.monotonic() + 5  # its wait stopped, it deleted the Sandbox
        while name in [s.name for s in await AsyncSandbox.list(ns)]:
            assert time.monotonic() < end, "the cancelled create's Sandbox was left behind"
            await asyncio.sleep(0.5)
    asyncio.run(main())
