"""Test harness: starts the real emud binary and speaks real QMP over real sockets.

Only the Python standard library is used. Paths to the built binaries come from
the environment that ctest sets (EMUD, EMUCTL, EMUD_SOURCE_DIR), with fallbacks
for running a file by hand from the build tree.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("EMUD_SOURCE_DIR", os.path.normpath(os.path.join(HERE, "..", "..")))
BUILD_DIR = os.environ.get("EMUD_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
EMUD = os.environ.get("EMUD", os.path.join(BUILD_DIR, "daemon", "emud"))
EMUCTL = os.environ.get("EMUCTL", os.path.join(BUILD_DIR, "clients", "emuctl"))


class QmpError(Exception):
    pass


class Qmp:
    """A QMP client on one socket. Events are queued while waiting for replies."""

    def __init__(self, address, negotiate=True, timeout=10.0):
        self.sock = connect(address, timeout)
        self.buf = b""
        self.events = []
        self.greeting = self.read_message()
        if negotiate:
            reply = self.cmd("qmp_capabilities")
            assert reply == {"return": {}}, reply

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def read_line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def read_message(self):
        """The next message on the wire (reply or event), decoded."""
        line = self.read_line()
        assert line.endswith(b"\r"), "QMP lines end in CRLF: %r" % line
        return json.loads(line)

    def reply(self):
        """The next reply, queueing any events that come first."""
        while True:
            msg = self.read_message()
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def cmd(self, name, args=None, **extra):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        msg.update(extra)
        self.send_raw(json.dumps(msg) + "\n")
        return self.reply()

    def ok(self, name, args=None):
        reply = self.cmd(name, args)
        if "error" in reply:
            raise QmpError("%s: %s" % (name, reply["error"]))
        return reply["return"]

    def event(self, name, timeout=10.0):
        """Waits for an event by name (queued ones first)."""
        for i, ev in enumerate(self.events):
            if ev["event"] == name:
                return self.events.pop(i)
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                msg = self.read_message()
            except socket.timeout:
                break
            finally:
                self.sock.settimeout(timeout)
            if "event" in msg and msg["event"] == name:
                return msg
            self.events.append(msg)
        raise AssertionError("no %s event within %.1fs (got %r)" % (name, timeout, self.events))


def connect(address, timeout=10.0):
    if address.startswith("unix:"):
        address = address[5:]
    if address.startswith("tcp:"):
        host, port = address[4:].rsplit(":", 1)
        s = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(address)
    return s


def wait_for_socket(path, proc=None, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("process exited with %s before %s appeared" % (proc.returncode, path))
        if os.path.exists(path):
            try:
                connect(path, 1.0).close()
                return
            except OSError:
                pass
        time.sleep(0.02)
    raise AssertionError("%s did not appear within %.1fs" % (path, timeout))


class Emud:
    """One emud process with its own state directory."""

    def __init__(self, extra_args=(), check_returns=True, log_level="info"):
        self.dir = tempfile.mkdtemp(prefix="emud-test-")
        self.state_dir = os.path.join(self.dir, "state")
        self.socket = os.path.join(self.state_dir, "emud.sock")
        self.log_path = os.path.join(self.dir, "emud.log")
        args = [EMUD, "--state-dir", self.state_dir, "--log-level", log_level]
        if check_returns:
            args.append("--check-returns")
        args += list(extra_args)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_socket(self.socket, self.proc)

    @property
    def pid(self):
        return self.proc.pid

    def qmp(self, negotiate=True):
        return Qmp(self.socket, negotiate)

    def vm_socket(self, vm, kind="qmp"):
        return os.path.join(self.state_dir, "vms", vm, kind + ".sock")

    def create_vm(self, config=None, start=True):
        with self.qmp() as q:
            return q.ok("__org.emud_vm-create", {"config": config or {}, "start": start})

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def settled_fd_count(self, timeout=5.0):
        """The fd count once it stopped changing (closes complete asynchronously)."""
        last, stable_since, deadline = self.fd_count(), time.time(), time.time() + timeout
        while time.time() < deadline:
            time.sleep(0.02)
            now = self.fd_count()
            if now != last:
                last, stable_since = now, time.time()
            elif time.time() - stable_since > 0.2:
                break
        return last

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


class EmudTestCase(unittest.TestCase):
    """Starts one emud per test; fails the test if emud died or logged a crash."""

    emud_args = ()

    def setUp(self):
        self.emud = Emud(self.emud_args)

    def tearDown(self):
        alive = self.emud.alive()
        log = self.emud.log_text()
        code = self.emud.stop()
        self.assertTrue(alive, "emud died during the test:\n" + log)
        self.assertEqual(code, 0, "emud exited with %s on SIGTERM:\n%s" % (code, log))
