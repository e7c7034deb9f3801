#!/usr/bin/env python3
"""moat-init, the real static binary ($MOAT_INIT), on this machine: no cluster.

exec: exit statuses, stdout and stderr apart, stdin to its end, --timeout and a client that
goes away (nothing of the command's process group left, checked in /proc), a command whose
main process exits before its children, signals, the terminal. init: zombies reaped, SIGTERM
forwarded, the stop without a command (also as PID 1 of a PID namespace, where unshare(1)
can make one). Files: 0 B, 1 MiB and 100 MiB of random bytes written and read back through
pipes, a write that a reader never sees half of, stat and list, mkdir, remove, errors.
"""
import fcntl
import hashlib
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import threading
import time
import unittest

MOAT_INIT = os.environ.get("MOAT_INIT", "")
MIB = 1024 * 1024


def proc_stat(pid):
    """(state, ppid, pgrp, tpgid) of pid from /proc, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[5])


def processes():
    """{pid: (state, ppid, pgrp, tpgid)} of every process now."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                out[int(name)] = st
    return out


def group_members(pgid):
    return {pid: st for pid, st in processes().items() if st[2] == pgid}


def children(pid):
    return {p: st for p, st in processes().items() if st[1] == pid}


def wait_until(cond, timeout, step=0.02):
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() >= end:
            return value
        time.sleep(step)


def blocks(pid, sig):
    """Whether pid has sig blocked (moat-init blocks its signals before it is ready)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigBlk:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except FileNotFoundError:
        pass
    return False


def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def finish(p):
    """Cleanup of a Popen: killed if it still runs, reaped, its pipes closed."""
    if p.poll() is None:
        p.kill()
    p.wait()
    for stream in (p.stdin, p.stdout, p.stderr):
        if stream and not stream.closed:
            stream.close()


def run(*args, stdin=b"", timeout=30):
    return subprocess.run([MOAT_INIT, *args], input=stdin, capture_output=True, timeout=timeout)


# execvp says EACCES, not ENOENT, for a command found nowhere when a directory of PATH may not
# be searched (a test run as nobody with root's PATH): the not-found cases get a plain PATH.
PLAIN_PATH = {**os.environ, "PATH": "/usr/local/bin:/usr/bin:/bin"}


def error_line(stderr):
    """The one JSON error line moat-init wrote."""
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, f"not one line: {stderr!r}"
    return json.loads(lines[0])


class Base(unittest.TestCase):
    def setUp(self):
        if not MOAT_INIT or not os.access(MOAT_INIT, os.X_OK):
            self.fail("MOAT_INIT must name the moat-init binary")

    def assertGroupGone(self, pgid, timeout=3.0):
        left = wait_until(lambda: not group_members(pgid), timeout)
        self.assertTrue(left, f"process group {pgid} still has {group_members(pgid)}")


class Binary(Base):
    def test_static_and_version(self):
        with open(MOAT_INIT, "rb") as f:
            elf = f.read()
        # ELF64 little-endian: no PT_INTERP program header, so no dynamic loader
        self.assertEqual(elf[:6], b"\x7fELF\x02\x01")
        phoff, = struct.unpack_from("<Q", elf, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
        types = [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]
        self.assertNotIn(3, types, "moat-init must be linked statically")
        self.assertNotIn(b"AddressSanitizer", elf, "moat-init must be built without ASan")
        self.assertNotIn(b"__ubsan_handle", elf, "moat-init must be built without UBSan")
        r = run("version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.decode(), r"^moat-init \d+\.\d+\.\d+\n$")

    def test_usage_errors(self):
        for args in (["bogus"], ["exec"], ["exec", "--timeout", "x", "true"], ["read"],
                     ["stat", "/a", "/b"], ["list", "/", "--mode", "644"]):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            err = error_line(r.stderr)
            self.assertEqual(err["error"], "EUSAGE", args)
            self.assertTrue(err["message"], args)


class Exec(Base):
    def test_exit_statuses(self):
        self.assertEqual(run("exec", "--", "true").returncode, 0)
        self.assertEqual(run("exec", "sh", "-c", "exit 3").returncode, 3)
        self.assertEqual(run("exec", "--", "sh", "-c", "kill -9 $$").returncode, 137)
        self.assertEqual(run("exec", "--", "sh", "-c", "kill -TERM $$").returncode, 143)

        r = subprocess.run([MOAT_INIT, "exec", "--", "moat-init-no-such-command", "x"],
                           capture_output=True, timeout=10, env=PLAIN_PATH)
        self.assertEqual(r.returncode, 127)
        self.assertEqual(error_line(r.stderr), {
            "error": "ENOENT", "op": "exec", "path": "moat-init-no-such-command",
            "message": "No such file or directory"})
        r = run("exec", "--", "/dev/null")
        self.assertEqual(r.returncode, 126)
        self.assertEqual(error_line(r.stderr)["error"], "EACCES")
        r = run("exec", "--cwd", "/nonexistent-moat", "--", "true")
        self.assertEqual(r.returncode, 125)
        self.assertEqual(error_line(r.stderr)["error"], "ENOENT")

    def test_stdout_stderr_apart(self):
        r = run("exec", "--", "sh", "-c", "echo out; echo err >&2; echo out2; exit 4")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (4, b"out\nout2\n", b"err\n"))

    def test_stdin_to_its_end(self):
        data = os.urandom(MIB + 17)
        r = run("exec", "--", "cat", stdin=data)
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout, data)
        # the end of stdin is no disconnect: the command goes on after it
        r = run("exec", "--", "sh", "-c", "cat >/dev/null; sleep 0.3; echo after", stdin=b"x")
        self.assertEqual((r.returncode, r.stdout), (0, b"after\n"))

    def test_env_and_cwd(self):
        with tempfile.TemporaryDirectory() as d:
            r = run("exec", "--cwd", d, "--env", "MOAT_A=1 2", "--env=MOAT_B=", "--",
                    "sh", "-c", 'echo "$MOAT_A|${MOAT_B-unset}|$(pwd)"')
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.decode(), f"1 2||{os.path.realpath(d)}\n")

    def start(self, *args, **kw):
        """moat-init exec of a command that prints its process group first."""
        p = subprocess.Popen([MOAT_INIT, "exec", *args], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
        self.addCleanup(finish, p)
        line = p.stdout.readline()
        self.assertTrue(line, "the command printed nothing")
        return p, int(line)

    def test_timeout_kills_the_group(self):
        t0 = time.monotonic()
        p, pgid = self.start("--timeout", "1", "--", "sh", "-c", "echo $$; sleep 100 & sleep 100")
        self.assertTrue(wait_until(lambda: len(group_members(pgid)) == 3, 2))  # sh, 2 sleeps
        out, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 124)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(error_line(err), {
            "error": "ETIMEDOUT", "op": "exec",
            "message": "timed out after 1s; process group killed"})
        self.assertEqual(group_members(pgid), {})  # gone, zombies included, right away

        p, pgid = self.start("--timeout", "0.3", "--", "sh", "-c", "echo $$; exec sleep 100")
        p.communicate(timeout=10)
        self.assertEqual(p.returncode, 124)

    def test_client_goes_away(self):
        for close in ("both", "stdout"):
            with self.subTest(close=close):
                p, pgid = self.start("--", "sh", "-c", "echo $$; sleep 100 & sleep 100")
                self.assertTrue(wait_until(lambda: len(group_members(pgid)) == 3, 2))
                p.stdout.close()
                if close == "both":
                    p.stderr.close()
                p.wait(timeout=3 + 2)  # SIGTERM, at most 2 s of grace, SIGKILL
                self.assertEqual(p.returncode, 129)
                self.assertGroupGone(pgid)
                if close == "stdout":
                    p.stderr.close()

    def test_framed_stdin(self):
        frame = lambda b: struct.pack(">I", len(b)) + b  # noqa: E731
        # input in frames, a 0-length frame ends it; stdin stays open until the exit
        p = subprocess.Popen([MOAT_INIT, "exec", "--framed-stdin", "--", "sh", "-c",
                              "cat; echo end=$?"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(finish, p)
        data = os.urandom(3 * MIB)

        def feed():  # beside the reader: cat's output fills its pipe long before 3 MiB
            p.stdin.write(b"".join(frame(data[i:i + 70000]) for i in range(0, len(data), 70000)))
            p.stdin.write(frame(b""))
            p.stdin.flush()
        feeder = threading.Thread(target=feed)
        feeder.start()
        out = p.stdout.read()
        feeder.join()
        p.wait(timeout=10)
        self.assertEqual((p.returncode, out), (0, data + b"end=0\n"))
        # the end of moat-init's stdin is the client's going: the group is killed
        p = subprocess.Popen([MOAT_INIT, "exec", "--framed-stdin", "--", "sh", "-c",
                              "echo $$; sleep 100 & sleep 100"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(finish, p)
        pgid = int(p.stdout.readline())
        self.assertTrue(wait_until(lambda: len(group_members(pgid)) == 3, 2))
        p.stdin.close()
        p.wait(timeout=5)
        self.assertEqual(p.returncode, 129)
        self.assertGroupGone(pgid)
        # a command that wants no input still ends by itself
        r = run("exec", "--framed-stdin", "--", "echo", "hi", stdin=b"")
        self.assertIn(r.returncode, (0, 129))  # stdin ended at once: either may win
        t0 = time.monotonic()
        r = subprocess.run([MOAT_INIT, "exec", "--framed-stdin", "--", "sleep", "30"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 129)  # an empty stdin: the client is gone
        self.assertLess(time.monotonic() - t0, 5)

    def test_framed_stdin_read_to_its_end_after_an_early_exit(self):
        # A command that exits without reading its input: the rest of the client's frames
        # are still read (and dropped) up to the end frame, so the exec's stream closes
        # with nothing unread (else the connection is reset and the client loses the exit
        # status sent just before): the client's writes all go through.
        frame = lambda b: struct.pack(">I", len(b)) + b  # noqa: E731
        p = subprocess.Popen([MOAT_INIT, "exec", "--framed-stdin", "--", "sh", "-c", "exit 4"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(finish, p)
        chunk = frame(os.urandom(64 * 1024))
        for _ in range(300):  # 19 MiB, far past what the pipe holds
            p.stdin.write(chunk)
        p.stdin.write(frame(b""))
        p.stdin.flush()
        self.assertEqual(p.wait(timeout=10), 4)

    def test_client_goes_away_command_ignores_sigterm(self):
        t0 = time.monotonic()
        p, pgid = self.start("--", "sh", "-c", "trap '' TERM; echo $$; sleep 100 & sleep 100")
        p.stdout.close()
        p.stderr.close()
        p.wait(timeout=6)
        self.assertEqual(p.returncode, 129)
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)  # the grace, then SIGKILL
        self.assertGroupGone(pgid)

    def test_signals_to_moat_init(self):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with self.subTest(sig=sig.name):
                p, pgid = self.start("--", "sh", "-c", "echo $$; sleep 100 & sleep 100")
                p.send_signal(sig)
                p.communicate(timeout=5)
                self.assertEqual(p.returncode, 128 + sig)
                self.assertGroupGone(pgid)
        # SIGUSR1 is only passed on: the command decides
        p, pgid = self.start("--", "sh", "-c", "trap 'echo usr1; exit 9' USR1; echo $$; "
                                               "while :; do sleep 0.05; done")
        p.send_signal(signal.SIGUSR1)
        out, _ = p.communicate(timeout=5)
        self.assertEqual((p.returncode, out), (9, b"usr1\n"))

    def test_main_process_exits_first(self):
        t0 = time.monotonic()
        p, pgid = self.start("--", "sh", "-c", "echo $$; sleep 100 & sleep 100 & exit 0")
        p.communicate(timeout=5)
        self.assertEqual(p.returncode, 0)
        self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual(group_members(pgid), {})

    def test_orphan_in_a_session_of_its_own(self):
        if not shutil.which("setsid"):
            self.skipTest("no setsid(1)")
        # setsid leaves the group: only being moat-init's orphan finds it
        p, _ = self.start("--", "sh", "-c", "echo $$; setsid sleep 100 & echo $!; sleep 0.3")
        escaped = int(p.stdout.readline())
        p.communicate(timeout=5)
        self.assertEqual(p.returncode, 0)
        self.assertIsNone(proc_stat(escaped), "the command's orphan outlived it")

    def test_terminal(self):
        master, slave = pty.openpty()
        self.addCleanup(lambda: master is not None and os.close(master))

        def controlling_tty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        # the command gets the terminal (its group is the foreground one): it reads from it
        # without being stopped (SIGTTIN), and Ctrl-C reaches it. One process, so that the
        # Ctrl-C cannot fall between two commands of a shell (dash defers it there).
        p = subprocess.Popen([MOAT_INIT, "exec", "--", "cat", "/proc/self/stat", "-"],
                             stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_tty)
        os.close(slave)
        self.addCleanup(finish, p)
        buf = b""
        while not re.search(rb"\).*\n", buf) and select.select([master], [], [], 5)[0]:
            buf += os.read(master, 4096)
        text = buf.decode(errors="replace")
        stat = text[text.rindex(")") + 2:].split()
        pgrp, tpgid = int(stat[2]), int(stat[5])
        self.assertEqual(pgrp, tpgid, "the command is not the terminal's foreground group")
        self.assertNotEqual(pgrp, p.pid)
        os.write(master, b"\x03")
        p.wait(timeout=5)
        self.assertEqual(p.returncode, 130)
        self.assertGroupGone(pgrp)

    def test_terminal_hangup(self):
        master, slave = pty.openpty()

        def controlling_tty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        p = subprocess.Popen([MOAT_INIT, "exec", "--", "sh", "-c",
                              "trap '' HUP; echo $$; sleep 100"],
                             stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_tty)
        os.close(slave)
        self.addCleanup(finish, p)
        buf = b""
        while b"\n" not in buf and select.select([master], [], [], 5)[0]:
            buf += os.read(master, 4096)
        pgid = int(buf.split()[0])
        os.close(master)  # the client's terminal is gone
        p.wait(timeout=5)
        self.assertEqual(p.returncode, 129)
        self.assertGroupGone(pgid)


class Init(Base):
    def test_reaps_zombies_and_forwards_sigterm(self):
        # each ( sleep & ) leaves an orphan that moat-init, the subreaper, inherits and that
        # exits 2 s later (time for a loaded machine's test to see them come): a zombie of
        # moat-init's unless it reaps it
        p = subprocess.Popen([MOAT_INIT, "init", "--", "sh", "-c",
                              "for i in 1 2 3 4 5; do (sleep 2 &); done; echo ready; "
                              "exec sleep 100"], stdout=subprocess.PIPE)
        self.addCleanup(finish, p)
        self.assertEqual(p.stdout.readline(), b"ready\n")
        self.assertTrue(wait_until(lambda: len(children(p.pid)) > 1, 2),
                        "the orphans never came to moat-init")
        wait_until(lambda: len(children(p.pid)) == 1, 10)  # the orphans' 2 s, under load
        kids = children(p.pid)
        self.assertEqual([st[0] for st in kids.values()].count("Z"), 0, f"zombies: {kids}")
        self.assertEqual(len(kids), 1, kids)  # only the command
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=5)
        self.assertEqual(p.returncode, 143)  # the command's own end, by the forwarded signal

    def test_command_status(self):
        r = subprocess.run([MOAT_INIT, "init", "--", "sh", "-c", "exit 5"], timeout=10)
        self.assertEqual(r.returncode, 5)
        r = subprocess.run([MOAT_INIT, "--", "sh", "-c", "kill -9 $$"], timeout=10)
        self.assertEqual(r.returncode, 137)
        r = subprocess.run([MOAT_INIT, "init", "moat-init-no-such-command"],
                           capture_output=True, timeout=10, env=PLAIN_PATH)
        self.assertEqual(r.returncode, 127)
        self.assertEqual(error_line(r.stderr)["error"], "ENOENT")

    def test_leftovers_killed_when_not_pid1(self):
        p = subprocess.Popen([MOAT_INIT, "init", "--", "sh", "-c",
                              "echo $$; sleep 100 & setsid sleep 100 & echo $!; sleep 0.3"],
                             stdout=subprocess.PIPE)
        self.addCleanup(finish, p)
        pgid, escaped = int(p.stdout.readline()), int(p.stdout.readline())
        p.wait(timeout=5)
        self.assertEqual(p.returncode, 0)
        self.assertEqual(group_members(pgid), {})
        self.assertIsNone(proc_stat(escaped))

    def test_without_command(self):
        for argv, sig in (([MOAT_INIT], signal.SIGTERM), ([MOAT_INIT, "init"], signal.SIGINT)):
            with self.subTest(argv=argv):
                p = subprocess.Popen(argv)
                self.addCleanup(finish, p)
                self.assertTrue(wait_until(lambda: blocks(p.pid, sig), 5))
                time.sleep(0.2)
                self.assertIsNone(p.poll(), "moat-init without a command must keep running")
                p.send_signal(signal.SIGHUP)  # nothing to forward it to: ignored
                p.send_signal(sig)
                p.wait(timeout=2)
                self.assertEqual(p.returncode, 0)

    def test_pid1_stops_everyone(self):
        ns = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]
        try:
            ok = subprocess.run([*ns, "true"], capture_output=True, timeout=10).returncode == 0
        except (FileNotFoundError, subprocess.TimeoutExpired):
            ok = False
        if not ok:
            self.skipTest("unshare(1) cannot make a PID namespace here")
        # PID 1 of a new PID namespace, with two processes beside it: one that stops on
        # SIGTERM and one that ignores it (SIGKILL after the grace)
        script = f"sleep 100 & (trap '' TERM; sleep 100) & sleep 0.3; echo ready; exec {MOAT_INIT}"
        p = subprocess.Popen([*ns, "sh", "-c", script], stdout=subprocess.PIPE)
        self.addCleanup(finish, p)
        self.assertEqual(p.stdout.readline(), b"ready\n")
        init = wait_until(lambda: [c for c, st in children(p.pid).items()
                                   if exe(c) == os.path.realpath(MOAT_INIT)], 5)
        self.assertTrue(init, "moat-init did not start as the namespace's PID 1")
        ns_init = init[0]
        self.assertTrue(wait_until(lambda: blocks(ns_init, signal.SIGTERM), 5))
        inside = {pid for pid, st in processes().items() if st[1] == ns_init}
        self.assertGreaterEqual(len(inside), 2, "the sleeps are PID 1's children")
        t0 = time.monotonic()
        os.kill(ns_init, signal.SIGTERM)
        p.wait(timeout=6)
        self.assertEqual(p.returncode, 0)
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 1.9)  # the one ignoring SIGTERM waited for SIGKILL
        self.assertLess(took, 4)
        for pid in inside:
            self.assertIsNone(proc_stat(pid))


class Files(Base):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="moat-init-test.")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def write(self, path, size, *extra, chunk=MIB, pace=0.0):
        """Streams size random bytes into moat-init write; returns (result JSON, sha256)."""
        p = subprocess.Popen([MOAT_INIT, "write", path, *extra], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(finish, p)
        h = hashlib.sha256()
        left = size
        while left > 0:
            block = os.urandom(min(chunk, left))
            h.update(block)
            p.stdin.write(block)
            left -= len(block)
            if pace:
                time.sleep(pace)
        out, err = p.communicate(timeout=60)  # closes stdin: the end of the input
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(err, b"")
        return json.loads(out), h.hexdigest()

    def read_sha(self, path):
        p = subprocess.Popen([MOAT_INIT, "read", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(finish, p)
        h = hashlib.sha256()
        n = 0
        while True:
            block = p.stdout.read(MIB)
            if not block:
                break
            h.update(block)
            n += len(block)
        _, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        return h.hexdigest(), n

    def test_write_from_a_file(self):
        src = self.path("src")
        with open(src, "wb") as f:
            f.write(b"\x00copied\xff")
        r = run("write", self.path("dst"), "--mode", "0755", "--from", src)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.path("dst"), "rb") as f:
            self.assertEqual(f.read(), b"\x00copied\xff")
        self.assertEqual(os.stat(self.path("dst")).st_mode & 0o7777, 0o755)
        r = run("write", self.path("dst2"), "--from", self.path("missing"))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(error_line(r.stderr)["error"], "ENOENT")
        self.assertFalse(os.path.exists(self.path("dst2")))

    def test_write_size_announced(self):
        # the bytes a writer announced, or nothing: a writer gone mid-stream ends stdin too
        self.assertEqual(run("write", self.path("f"), stdin=b"old").returncode, 0)
        r = run("write", self.path("f"), "--size", "10", stdin=b"12345")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(error_line(r.stderr)["error"], "EIO")
        with open(self.path("f"), "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(sorted(os.listdir(self.dir)), ["f"])  # no temporary left
        r = run("write", self.path("f"), "--size", "5", stdin=b"12345")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(run("write", self.path("f"), "--size", "x", stdin=b"").returncode, 2)

    def test_roundtrip(self):
        for size in (0, MIB, 100 * MIB):
            with self.subTest(size=size):
                path = self.path(f"blob-{size}")
                result, sha = self.write(path, size)
                self.assertEqual(result, {"path": os.path.realpath(path), "size": size})
                self.assertEqual(self.read_sha(path), (sha, size))
                self.assertEqual(os.stat(path).st_mode & 0o7777, 0o644)
        self.assertEqual(sorted(os.listdir(self.dir)),
                         sorted(["blob-0", f"blob-{MIB}", f"blob-{100 * MIB}"]))  # no temporary

    def test_atomic_replace(self):
        path = self.path("target")
        _, old = self.write(path, MIB, "--mode", "600")
        seen, stop = [], threading.Event()

        def reader():
            while not stop.is_set():
                with open(path, "rb") as f:
                    h = hashlib.sha256()
                    for block in iter(lambda: f.read(MIB), b""):
                        h.update(block)
                seen.append(h.hexdigest())

        t = threading.Thread(target=reader)
        t.start()
        try:
            _, new = self.write(path, 100 * MIB, pace=0.002)
            n_during = len(seen)
            wait_until(lambda: len(seen) >= n_during + 2, 10)
        finally:
            stop.set()
            t.join()
        self.assertTrue(set(seen) <= {old, new}, "a reader saw a part of a file")
        self.assertIn(old, seen[:n_during], "the reader never ran during the write")
        self.assertEqual(seen[-1], new)
        self.assertEqual(os.stat(path).st_mode & 0o7777, 0o600)  # the replaced file's mode
        self.assertEqual(os.listdir(self.dir), ["target"])

    def test_stat_and_list(self):
        self.assertEqual(run("mkdir", self.path("d", "sub"), "--parents").returncode, 0)
        self.write(self.path("d", "b.txt"), 3, "--mode", "640")
        self.write(self.path("d", "sub", "deep"), 1)
        self.write(self.path("d", "a\"q\n"), 0)
        os.symlink("sub", self.path("d", "link"))
        mtime = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

        r = run("stat", self.path("d", "b.txt"))
        self.assertEqual(r.returncode, 0, r.stderr)
        st = json.loads(r.stdout)
        self.assertRegex(st.pop("mtime"), mtime)
        self.assertEqual(st, {"name": "b.txt", "path": self.path("d", "b.txt"), "type": "file",
                              "size": 3, "mode": "0640"})
        st = json.loads(run("stat", self.path("d", "link")).stdout)
        self.assertEqual((st["type"], st["target"]), ("symlink", "sub"))
        st = json.loads(run("stat", self.path("d") + "/").stdout)
        self.assertEqual((st["name"], st["type"], st["mode"]), ("d", "dir", "0755"))

        r = run("list", self.path("d"))
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [json.loads(line) for line in r.stdout.decode().splitlines()]
        self.assertEqual([e["name"] for e in lines], ["a\"q\n", "b.txt", "link", "sub"])
        self.assertEqual([e["type"] for e in lines], ["file", "file", "symlink", "dir"])
        for e in lines:
            self.assertRegex(e["mtime"], mtime)
            self.assertEqual(e["path"], self.path("d", e["name"]))
        r = run("list", self.path("d"), "--depth", "2")
        names = [json.loads(line)["path"] for line in r.stdout.decode().splitlines()]
        self.assertEqual(names, [self.path("d", n) for n in
                                 ("a\"q\n", "b.txt", "link", "sub", "sub/deep")])

    def test_mkdir_and_remove(self):
        deep = self.path("x", "y", "z")
        r = run("mkdir", deep)
        self.assertEqual((r.returncode, error_line(r.stderr)["error"]), (1, "ENOENT"))
        self.assertEqual(run("mkdir", deep, "--parents").returncode, 0)
        self.assertTrue(os.path.isdir(deep))
        self.assertEqual(run("mkdir", "--parents", deep).returncode, 0)  # there: fine
        r = run("mkdir", deep)
        self.assertEqual((r.returncode, error_line(r.stderr)["error"]), (1, "EEXIST"))

        # a symlink to a directory outside: removed, not followed
        outside = self.path("outside")
        os.mkdir(outside)
        self.write(os.path.join(outside, "keep"), 10)
        os.symlink(outside, self.path("x", "y", "out"))
        self.write(self.path("x", "y", "z", "f"), 10)
        r = run("remove", self.path("x"))
        self.assertEqual((r.returncode, error_line(r.stderr)["error"]), (1, "ENOTEMPTY"))
        r = run("remove", self.path("x"), "--recursive")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, b"", b""))
        self.assertFalse(os.path.lexists(self.path("x")))
        self.assertTrue(os.path.exists(os.path.join(outside, "keep")))
        self.assertEqual(run("remove", os.path.join(outside, "keep")).returncode, 0)
        self.assertEqual(run("exists", outside).returncode, 0)
        self.assertEqual(run("exists", os.path.join(outside, "keep")).returncode, 1)
        os.symlink("nowhere", self.path("dangling"))
        self.assertEqual(run("exists", self.path("dangling")).returncode, 0)

    def test_errors(self):
        missing = self.path("missing")
        r = run("stat", missing)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, b"")
        self.assertEqual(error_line(r.stderr), {"error": "ENOENT", "op": "stat", "path": missing,
                                                "message": "No such file or directory"})
        r = run("read", self.dir)
        self.assertEqual((r.returncode, error_line(r.stderr)["error"]), (1, "EISDIR"))
        r = run("list", missing)
        self.assertEqual((r.returncode, error_line(r.stderr)["error"]), (1, "ENOENT"))
        r = run("exists", missing)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (1, b"", b""))

        # into a missing directory without --parents: ENOENT, and no temporary file anywhere
        before = os.listdir(self.dir)
        r = run("write", self.path("nodir", "f"), stdin=os.urandom(MIB))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(error_line(r.stderr)["error"], "ENOENT")
        self.assertEqual(os.listdir(self.dir), before)
        r = run("write", self.dir, stdin=b"x")
        self.assertEqual((r.returncode, error_line(r.stderr)["error"]), (1, "EISDIR"))
        r = run("write", self.path("nodir", "f"), "--parents", stdin=b"ok")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["size"], 2)

    def test_failed_write_reads_its_input_to_the_end(self):
        # a write that fails at once still reads the input still coming (and drops it): the
        # exec's stream then closes with nothing unread, and the client gets the error
        # rather than a reset connection; here, every write of the client goes through
        p = subprocess.Popen([MOAT_INIT, "write", self.path("nodir", "f")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(finish, p)
        chunk = os.urandom(MIB)
        for _ in range(20):
            p.stdin.write(chunk)
        p.stdin.close()
        self.assertEqual(p.wait(timeout=10), 1)
        self.assertEqual(error_line(p.stderr.read())["error"], "ENOENT")

    def test_write_without_proc(self):
        # without /proc (so without O_TMPFILE, which is linked through /proc/self/fd) the
        # temporary file has a name from the start: it must still never be left behind
        ns = ["unshare", "--mount", "--map-root-user", "sh", "-c",
              'mount -t tmpfs none /proc && exec "$0" "$@"', MOAT_INIT]
        try:
            ok = subprocess.run([*ns, "version"], capture_output=True, timeout=10).returncode == 0
        except (FileNotFoundError, subprocess.TimeoutExpired):
            ok = False
        if not ok:
            self.skipTest("unshare(1) cannot make a mount namespace here")
        data = os.urandom(MIB)
        r = subprocess.run([*ns, "write", self.path("f")], input=data, capture_output=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.path("f"), "rb") as f:
            self.assertEqual(f.read(), data)
        fd = os.open(self.dir, os.O_RDONLY)  # an input that fails: read(2) says EISDIR
        try:
            r = subprocess.run([*ns, "write", self.path("g")], stdin=fd, capture_output=True,
                               timeout=30)
        finally:
            os.close(fd)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(error_line(r.stderr)["error"], "EISDIR")
        self.assertEqual(os.listdir(self.dir), ["f"])

    def test_read_reader_goes_away(self):
        path = self.path("big")
        self.write(path, 20 * MIB)
        p = subprocess.Popen([MOAT_INIT, "read", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(finish, p)
        self.assertEqual(len(p.stdout.read(10)), 10)
        p.stdout.close()
        err = p.stderr.read()
        p.wait(timeout=5)
        self.assertEqual((p.returncode, err), (1, b""))


if __name__ == "__main__":
    unittest.main(verbosity=2)
