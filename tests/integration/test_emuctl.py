"""emuctl, the command-line client, driven for real against the real emud.

`emuctl run` and `emuctl console`/`monitor` put the terminal in raw mode and
read Ctrl-a escapes, so those tests run emuctl on a pseudo-terminal that is
its controlling terminal (as an interactive shell would give it) and type into
the pty's master side. The other subcommands run with plain pipes.

Machine type `none` has no CPU and no serial device: the console stream is
silent and swallows input, but the console socket, the monitor and the whole
VM lifecycle work, which is what these tests look at.
"""

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emud_harness import EMUCTL, EmudTestCase, Qmp, wait_for_socket  # noqa: E402

CTRL_A = b"\x01"
TIMEOUT = 5.0  # for anything that should happen at once


def until(predicate, timeout=TIMEOUT, what="condition"):
    """Polls PREDICATE until it returns a true value, which is returned."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("%s not met within %.1fs" % (what, timeout))
        time.sleep(0.01)


def emuctl(socket_path, *args, stdin_text=None, timeout=10.0):
    """Runs emuctl to completion with pipes; returns the CompletedProcess (text)."""
    return subprocess.run([EMUCTL, "--socket", socket_path] + list(args), input=stdin_text,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=None if stdin_text is not None else subprocess.DEVNULL)


def reap(proc):
    """Kills PROC if it still runs and closes its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream:
            stream.close()


def peer_pid(socket_path):
    """The pid of the process listening on a unix socket (SO_PEERCRED)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(TIMEOUT)
        s.connect(socket_path)
        pid, _uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                           struct.calcsize("3i")))
        return pid
    finally:
        s.close()


def pid_alive(pid):
    """False once PID is gone or a zombie (a daemon's parent may never reap it)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_daemon(pid):
    """Ends a daemonized emud that is not our child (SIGTERM, then SIGKILL)."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    try:
        until(lambda: not pid_alive(pid), what="emud %d exits on SIGTERM" % pid)
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        raise


class Terminal:
    """emuctl on a pseudo-terminal that is its controlling terminal."""

    def __init__(self, args):
        self.master, slave = pty.openpty()
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))

        def make_controlling_tty():  # runs in the child after setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([EMUCTL] + list(args), stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, preexec_fn=make_controlling_tty)
        os.close(slave)
        self.out = b""  # everything emuctl wrote
        self.pos = 0    # how far expect() has consumed self.out
        self.eof = False

    def _read(self, timeout):
        """Reads what is there within TIMEOUT; False on timeout or EOF."""
        if self.eof:
            return False
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every slave descriptor is closed
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.out += chunk
        return True

    def is_raw(self):
        # On Linux the master reports the slave side's settings.
        return not termios.tcgetattr(self.master)[3] & termios.ICANON

    def wait_raw(self, timeout=TIMEOUT):
        """Waits until emuctl has put the terminal in raw mode (it reads keys from then on)."""
        deadline = time.time() + timeout
        while not self.is_raw():
            if self.proc.poll() is not None:
                self._read(0.2)
                raise AssertionError("emuctl exited with %s before attaching:\n%s"
                                     % (self.proc.returncode, self.text()))
            if time.time() > deadline:
                raise AssertionError("emuctl did not enter raw mode within %.1fs:\n%s"
                                     % (timeout, self.text()))
            self._read(0.01)

    def send(self, data):
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def expect(self, pattern, timeout=TIMEOUT):
        """Waits for PATTERN (bytes, or a compiled bytes regex) after what was consumed;
        returns the output up to and including it."""
        deadline = time.time() + timeout
        while True:
            if isinstance(pattern, bytes):
                at = self.out.find(pattern, self.pos)
                end = -1 if at < 0 else at + len(pattern)
            else:
                match = pattern.search(self.out, self.pos)
                end = match.end() if match else -1
            if end >= 0:
                seen, self.pos = self.out[self.pos:end], end
                return seen
            if not self._read(deadline - time.time()) and (self.eof or time.time() >= deadline):
                raise AssertionError("%r not seen within %.1fs; emuctl wrote:\n%r"
                                     % (pattern, timeout, self.out[self.pos:]))

    def wait_exit(self, timeout=TIMEOUT):
        """Waits for emuctl to exit, keeping its last output; returns the exit code."""
        deadline = time.time() + timeout
        while self.proc.poll() is None:
            if time.time() > deadline:
                raise AssertionError("emuctl still runs after %.1fs; it wrote:\n%r" % (timeout, self.out))
            self._read(0.02)
        while self._read(0.05):
            pass
        return self.proc.returncode

    def hang_up(self):
        """Closes the terminal, as a terminal emulator's window closing does."""
        os.close(self.master)
        self.master = -1
        self.eof = True

    def text(self):
        return self.out.decode(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


class EmuctlTestCase(EmudTestCase):
    """One emud per test, plus helpers to run emuctl against it."""

    def ctl(self, *args, stdin_text=None, timeout=10.0):
        return emuctl(self.emud.socket, *args, stdin_text=stdin_text, timeout=timeout)

    def ctl_ok(self, *args):
        r = self.ctl(*args)
        self.assertEqual(r.returncode, 0, "emuctl %s failed: %s" % (" ".join(args), r.stderr))
        return r.stdout

    def ctl_error(self, *args):
        """Runs a command that must fail; returns stderr."""
        r = self.ctl(*args)
        self.assertEqual(r.returncode, 1, "emuctl %s: expected exit 1, got %s\nstdout: %s\nstderr: %s"
                         % (" ".join(args), r.returncode, r.stdout, r.stderr))
        self.assertTrue(r.stderr.startswith("emuctl: "), r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, "one line of error: %r" % r.stderr)
        return r.stderr

    def terminal(self, *args):
        """emuctl ARGS on a pty, closed at the end of the test."""
        t = Terminal(["--socket", self.emud.socket] + list(args))
        self.addCleanup(t.close)
        return t

    def attach_run(self, *flags):
        """`emuctl run FLAGS` in the foreground, once it reads keys."""
        t = self.terminal("run", *flags)
        t.wait_raw()
        return t

    def vm_list(self):
        """{name: status} from `emuctl list`."""
        lines = self.ctl_ok("list").splitlines()
        self.assertEqual(lines[0].split(), ["NAME", "STATUS", "MACHINE", "CPUS", "MEMORY"])
        return {row.split()[0]: row.split()[1] for row in lines[1:]}

    def vm_status(self, vm):
        with Qmp(self.emud.vm_socket(vm)) as q:
            return q.ok("query-status")["status"]

    def daemonized_vm(self, name, *flags):
        self.ctl_ok("run", "-name", name, "-machine", "none", "-daemonize", *flags)


class RunAttached(EmuctlTestCase):
    """`emuctl run … -nographic`: the terminal on the VM, Ctrl-a escapes, the VM's end."""

    def test_nographic_monitor_help_and_ctrl_a_x(self):
        t = self.attach_run("-name", "t1", "-machine", "none", "-nographic")
        self.assertEqual(self.vm_list(), {"t1": "running"})
        self.assertEqual(self.vm_status("t1"), "running")

        t.send(CTRL_A + b"c")
        t.expect(b"QEMU 2.10.1 monitor - type 'help' for more information")
        t.expect(b"(qemu) ")
        t.send("info status\r")
        t.expect(b"VM status: running")
        t.expect(b"(qemu) ")
        t.send("info name\r")
        t.expect(re.compile(rb"info name\r*\n+t1\r*\n"))
        t.expect(b"(qemu) ")

        # Back on the console, typed text goes to the (silent) console, not
        # to the monitor: no local echo before the help that follows.
        t.send(CTRL_A + b"c" + b"info status\r" + CTRL_A + b"h")
        seen = t.expect(b"C-a x    exit emulator")
        self.assertNotIn(b"info status", seen)
        for line in (b"C-a h    print this help", b"C-a c    switch between console and monitor",
                     b"C-a t    toggle console timestamps", b"C-a C-a  sends C-a"):
            self.assertIn(line, t.out)

        t.send(CTRL_A + b"x")
        t.expect(b"QEMU: Terminated")
        self.assertEqual(t.wait_exit(), 0, t.text())
        self.assertEqual(self.vm_list(), {})
        self.assertNotIn("Ctrl", t.text().replace("C-a", ""))  # no stray messages

    def test_monitor_line_editing_and_other_escapes(self):
        t = self.attach_run("-name", "t1", "-machine", "none", "-nographic")
        # Escapes that keep the session: timestamps, literal Ctrl-a, break, an unknown one.
        t.send(CTRL_A + b"t" + CTRL_A + CTRL_A + CTRL_A + b"z" + CTRL_A + b"t" + CTRL_A + b"b")
        t.expect(b"break: the VM has no serial port")
        t.send(CTRL_A + b"c")
        t.expect(b"(qemu) ")
        # Backspace (DEL and ^H) edits the line locally; Ctrl-c drops it.
        t.send(b"info statx\x7fus\r")
        t.expect(b"info statx\b \bus")
        t.expect(b"VM status: running")
        t.send(b"info nam\x03")
        t.expect(b"^C")
        t.send(b"info namx\x08e\r")
        t.expect(re.compile(rb"\n+t1\r*\n"))
        # `quit` in the monitor ends the VM and emuctl with it.
        t.expect(b"(qemu) ")
        t.send(b"quit\r")
        self.assertEqual(t.wait_exit(), 0, t.text())
        self.assertEqual(self.vm_list(), {})

    def test_start_paused_and_cont_from_another_process(self):
        t = self.attach_run("-name", "t1", "-machine", "none", "-S", "-nographic")
        self.assertEqual(self.vm_status("t1"), "prelaunch")
        self.assertEqual(self.ctl_ok("status", "t1"), "t1: prelaunch\n")
        self.assertEqual(self.ctl_ok("cont", "t1"), "")
        self.assertEqual(self.vm_status("t1"), "running")
        self.assertEqual(self.vm_list(), {"t1": "running"})
        t.send(CTRL_A + b"x")
        self.assertEqual(t.wait_exit(), 0, t.text())
        self.assertEqual(self.vm_list(), {})

    def test_ctrl_a_x_while_prelaunch(self):
        t = self.attach_run("-name", "t1", "-machine", "none", "-S", "-nographic")
        t.send(CTRL_A + b"x")
        self.assertEqual(t.wait_exit(), 0, t.text())
        self.assertEqual(self.vm_list(), {})

    def test_destroy_from_outside(self):
        t = self.attach_run("-name", "t1", "-machine", "none", "-nographic")
        self.assertEqual(self.ctl_ok("destroy", "t1"), "")
        self.assertEqual(t.wait_exit(timeout=3.0), 0, t.text())
        self.assertEqual(self.vm_list(), {})

    def test_quit_over_qmp(self):
        t = self.attach_run("-name", "t1", "-machine", "none", "-nographic")
        with Qmp(self.emud.vm_socket("t1")) as q:
            self.assertEqual(q.cmd("quit"), {"return": {}})
        self.assertEqual(t.wait_exit(timeout=3.0), 0, t.text())
        self.assertEqual(self.vm_list(), {})

    def test_sigterm_to_emuctl_ends_the_vm(self):
        t = self.attach_run("-name", "t1", "-machine", "none", "-nographic")
        t.proc.send_signal(signal.SIGTERM)
        self.assertEqual(t.wait_exit(timeout=3.0), 0, t.text())
        self.assertEqual(self.vm_list(), {})

    def test_terminal_hangup_ends_the_vm(self):
        t = self.attach_run("-name", "t1", "-machine", "none", "-nographic")
        t.hang_up()
        self.assertEqual(t.wait_exit(timeout=3.0), 0)
        self.assertEqual(self.vm_list(), {})

    def test_foreground_pidfile_is_emuctl_and_removed(self):
        pidfile = os.path.join(self.emud.dir, "vm.pid")
        t = self.attach_run("-name", "t1", "-machine", "none", "-nographic", "-pidfile", pidfile)
        with open(pidfile) as f:
            self.assertEqual(f.read(), "%d\n" % t.proc.pid)
        t.send(CTRL_A + b"x")
        self.assertEqual(t.wait_exit(), 0, t.text())
        self.assertFalse(os.path.exists(pidfile))

    def test_relative_pidfile_is_made_absolute(self):
        cwd = os.getcwd()
        os.chdir(self.emud.dir)
        self.addCleanup(os.chdir, cwd)
        t = self.attach_run("-name", "t1", "-machine", "none", "-nographic", "-pidfile", "rel.pid")
        with open(os.path.join(self.emud.dir, "rel.pid")) as f:
            self.assertEqual(int(f.read()), t.proc.pid)
        t.send(CTRL_A + b"x")
        self.assertEqual(t.wait_exit(), 0, t.text())

    def test_monitor_stdio_alone_is_the_monitor(self):
        t = self.attach_run("-name", "t1", "-machine", "none", "-monitor", "stdio")
        t.expect(b"(qemu) ")
        t.send("info status\r")
        t.expect(b"VM status: running")
        t.expect(b"(qemu) ")
        t.send("quit\r")
        self.assertEqual(t.wait_exit(), 0, t.text())
        self.assertEqual(self.vm_list(), {})

    def test_vm_without_console_runs_until_ended(self):
        # -serial null: nothing on stdio, so no terminal is attached; emuctl
        # still lives as long as the VM.
        p = subprocess.Popen([EMUCTL, "--socket", self.emud.socket, "run", "-name", "t1", "-machine", "none",
                              "-serial", "null"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(reap, p)
        until(lambda: self.vm_list().get("t1") == "running", what="t1 running")
        self.assertIsNone(p.poll())
        self.ctl_ok("destroy", "t1")
        _out, err = p.communicate(timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, err)


class Daemonize(EmuctlTestCase):
    def test_daemonize_returns_with_the_vm_running(self):
        start = time.time()
        r = self.ctl("run", "-name", "d1", "-machine", "none", "-daemonize")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""))
        self.assertLess(time.time() - start, 3.0)
        self.assertEqual(self.vm_status("d1"), "running")
        self.assertEqual(self.vm_list(), {"d1": "running"})

    def test_daemonize_with_start_paused(self):
        self.daemonized_vm("d1", "-S")
        self.assertEqual(self.vm_status("d1"), "prelaunch")

    def test_daemonize_pidfile_is_emud(self):
        pidfile = os.path.join(self.emud.dir, "d1.pid")
        self.daemonized_vm("d1", "-pidfile", pidfile)
        with open(pidfile) as f:
            self.assertEqual(f.read(), "%d\n" % self.emud.pid)
        self.assertEqual(self.vm_status("d1"), "running")


class Subcommands(EmuctlTestCase):
    def setUp(self):
        super().setUp()
        self.daemonized_vm("v1")

    def test_list(self):
        self.daemonized_vm("v2", "-S", "-m", "256")
        lines = self.ctl_ok("list").splitlines()
        self.assertEqual(len(lines), 3, lines)
        self.assertEqual(lines[0].split(), ["NAME", "STATUS", "MACHINE", "CPUS", "MEMORY"])
        rows = sorted(line.split() for line in lines[1:])
        self.assertEqual(rows, [["v1", "running", "none", "1", "128M"], ["v2", "prelaunch", "none", "1", "256M"]])

    def test_status(self):
        self.assertEqual(self.ctl_ok("status", "v1"), "v1: running\n")

    def test_stop_and_cont(self):
        with Qmp(self.emud.vm_socket("v1")) as q:
            self.assertEqual(self.ctl_ok("stop", "v1"), "")
            self.assertEqual(q.ok("query-status")["status"], "paused")
            q.event("STOP")
            self.assertEqual(self.ctl_ok("status", "v1"), "v1: paused\n")
            self.assertEqual(self.ctl_ok("cont", "v1"), "")
            self.assertEqual(q.ok("query-status")["status"], "running")
            q.event("RESUME")

    def test_reset(self):
        with Qmp(self.emud.vm_socket("v1")) as q:
            self.assertEqual(self.ctl_ok("reset", "v1"), "")
            ev = q.event("RESET")
            self.assertEqual(ev["data"]["guest"], False)

    def test_powerdown(self):
        with Qmp(self.emud.vm_socket("v1")) as q:
            self.assertEqual(self.ctl_ok("powerdown", "v1"), "")
            q.event("POWERDOWN")

    def test_destroy(self):
        self.assertEqual(self.ctl_ok("destroy", "v1"), "")
        self.assertEqual(self.vm_list(), {})
        self.assertIn("'v1' not found", self.ctl_error("destroy", "v1"))

    def test_qmp_to_a_vm(self):
        out = self.ctl_ok("qmp", "v1", '{"execute":"query-status"}')
        self.assertTrue(out.endswith("\n") and out.count("\n") == 1, out)
        self.assertEqual(json.loads(out), {"return": {"running": True, "singlestep": False, "status": "running"}})

    def test_qmp_id_is_echoed(self):
        out = self.ctl_ok("qmp", "v1", '{"execute":"query-status","id":"abc"}')
        self.assertEqual(json.loads(out)["id"], "abc")

    def test_qmp_to_the_daemon(self):
        reply = json.loads(self.ctl_ok("qmp", "-", '{"execute":"__org.emud_vm-list"}'))
        self.assertEqual([vm["name"] for vm in reply["return"]], ["v1"])
        protocols = {e["protocol"] for e in reply["return"][0]["endpoints"]}
        self.assertLessEqual({"qmp", "hmp", "console"}, protocols)

    def test_qmp_error_reply_exits_1(self):
        r = self.ctl("qmp", "v1", '{"execute":"no-such-command"}')
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stdout)["error"]["class"], "CommandNotFound")
        r = self.ctl("qmp", "-", '{"execute":"__org.emud_vm-destroy","arguments":{"name":"nosuch"}}')
        self.assertEqual(r.returncode, 1)
        self.assertIn("error", json.loads(r.stdout))

    def test_qmp_bad_input(self):
        self.assertIn("is not a JSON object", self.ctl_error("qmp", "v1", "query-status"))
        self.assertIn("is not a JSON object", self.ctl_error("qmp", "v1", "[1]"))
        self.assertIn("'nosuch' not found", self.ctl_error("qmp", "nosuch", '{"execute":"query-status"}'))

    def test_monitor_with_piped_input(self):
        # stdin stays open until the answer came, then EOF ends the session.
        p = subprocess.Popen([EMUCTL, "--socket", self.emud.socket, "monitor", "v1"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(reap, p)
        p.stdin.write(b"info status\ninfo name\n")
        p.stdin.flush()
        out, deadline = b"", time.time() + TIMEOUT
        while not re.search(rb"(\n|\(qemu\) )v1\r?\n", out):
            self.assertLess(time.time(), deadline, "no answer from the monitor: %r" % out)
            if select.select([p.stdout], [], [], 0.1)[0]:
                chunk = os.read(p.stdout.fileno(), 65536)
                self.assertTrue(chunk, "emuctl closed stdout early: %r" % out)
                out += chunk
        self.assertIn(b"QEMU 2.10.1 monitor", out)
        self.assertIn(b"VM status: running", out)
        p.stdin.close()
        self.assertEqual(p.wait(TIMEOUT), 0, p.stderr.read())

    # Regression: at EOF on stdin emuctl must let the monitor answer every
    # line already sent before it leaves.
    def test_monitor_with_piped_input_then_eof(self):
        for attempt in range(30):  # stops at the first lost answer
            read_end, write_end = os.pipe()  # input and EOF are there before emuctl starts
            os.write(write_end, b"info status\ninfo name\n")
            os.close(write_end)
            try:
                r = subprocess.run([EMUCTL, "--socket", self.emud.socket, "monitor", "v1"], stdin=read_end,
                                   capture_output=True, text=True, timeout=10)
            finally:
                os.close(read_end)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("VM status: running", r.stdout, "attempt %d" % attempt)
            self.assertRegex(r.stdout, r"(\n|\(qemu\) )v1\r?\n", "attempt %d" % attempt)

    def test_monitor_on_a_terminal_detaches(self):
        t = self.terminal("monitor", "v1")
        t.wait_raw()
        t.expect(b"(qemu) ")
        t.send("info status\r")
        t.expect(b"VM status: running")
        t.send(CTRL_A + b"x")
        t.expect(b"[detached]")
        self.assertEqual(t.wait_exit(), 0, t.text())
        self.assertEqual(self.vm_status("v1"), "running")

    def test_console_attaches_and_ctrl_a_x_detaches(self):
        t = self.terminal("console", "v1")
        t.wait_raw()
        t.expect(b"[attached to v1; Ctrl-a x detaches, Ctrl-a h helps]")
        t.send("some input for the console\r")  # goes to the silent console
        t.send(CTRL_A + b"c")
        t.expect(b"(qemu) ")
        t.send("info name\r")
        t.expect(re.compile(rb"\n+v1\r*\n"))
        t.send(CTRL_A + b"c" + CTRL_A + b"x")
        t.expect(b"[detached]")
        self.assertEqual(t.wait_exit(), 0, t.text())
        self.assertNotIn(b"QEMU: Terminated", t.out)
        self.assertEqual(self.vm_status("v1"), "running")
        self.assertEqual(self.vm_list(), {"v1": "running"})

    def test_console_ends_when_the_vm_does(self):
        t = self.terminal("console", "v1")
        t.wait_raw()
        self.ctl_ok("destroy", "v1")
        self.assertEqual(t.wait_exit(timeout=3.0), 0, t.text())

    def test_console_of_a_vm_without_one(self):
        self.daemonized_vm("v2", "-serial", "null")
        self.assertIn("v2: the VM has no console", self.ctl_error("console", "v2"))

    def test_unknown_vm(self):
        for command in ("status", "stop", "cont", "reset", "powerdown", "destroy", "monitor", "console"):
            with self.subTest(command=command):
                self.assertEqual(self.ctl_error(command, "nosuch"), "emuctl: VM 'nosuch' not found\n")
        self.assertEqual(self.vm_status("v1"), "running")


class Errors(EmuctlTestCase):
    """Bad command lines: exit code 1, one clear line on stderr, no VM left behind."""

    def test_flag_errors(self):
        cases = [
            (["-drive", "file=/nonexistent/x"],
             "emuctl: VM 'vm0': drive 'ide0-hd0': Could not open '/nonexistent/x': No such file or directory\n"),
            (["-drive", "file=x,if=scsi"], "emuctl: drive: if=scsi is not supported yet (supported: ide, virtio, none)\n"),
            (["-netdev", "user,id=n0"], "emuctl: -netdev: not supported yet (network backends)\n"),
            (["-foo"], "emuctl: -foo: invalid option\n"),
            (["--foo"], "emuctl: --foo: invalid option\n"),
            (["-m"], "emuctl: -m: requires an argument\n"),
            (["-m", "12X"], "emuctl: -m 12X: invalid size\n"),
            (["-smp", "cpus=abc"], "emuctl: -smp cpus=abc: Parameter 'cpus' expects a number\n"),
            (["-nographic", "-daemonize"], "emuctl: -nographic cannot be used with -daemonize\n"),
            (["-display", "gtk"], "emuctl: -display gtk: not supported yet\n"),
            (["-append", "console=ttyS0"], "emuctl: -append: only allowed with -kernel\n"),
        ]
        for flags, message in cases:
            with self.subTest(flags=flags):
                self.assertEqual(self.ctl_error("run", *flags), message)
        self.assertEqual(self.vm_list(), {})

    def test_unknown_machine_comes_from_the_daemon(self):
        err = self.ctl_error("run", "-name", "t1", "-machine", "nosuch", "-nographic")
        self.assertIn("unsupported machine type 'nosuch'", err)
        self.assertEqual(self.vm_list(), {})

    def test_duplicate_vm_name(self):
        self.daemonized_vm("t1")
        self.assertIn("a VM named 't1' already exists", self.ctl_error("run", "-name", "t1", "-daemonize"))
        self.assertEqual(self.vm_list(), {"t1": "running"})

    def test_command_line_errors(self):
        self.assertIn("status: expects 1 argument(s)", self.ctl_error("status"))
        self.assertIn("qmp: expects 2 argument(s)", self.ctl_error("qmp", "-"))
        self.assertIn("unknown command 'frob'", self.ctl_error("frob"))
        r = emuctl(self.emud.socket, "--bogus", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown option '--bogus'", r.stderr)

    def test_help_and_usage(self):
        r = subprocess.run([EMUCTL, "--help"], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0)
        self.assertIn("Usage: emuctl", r.stdout)
        r = subprocess.run([EMUCTL], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 2)
        self.assertIn("Usage: emuctl", r.stderr)

    def test_machine_help_asks_the_daemon(self):
        out = self.ctl_ok("run", "-machine", "help")
        self.assertIn("Supported machines are:", out)
        self.assertRegex(out, r"(?m)^none\s+empty machine")
        self.assertEqual(self.vm_list(), {})

    def test_device_help_lists_devices_and_properties(self):
        out = self.ctl_ok("run", "-device", "help")
        self.assertIn('name "isa-debug-exit", bus ISA', out)
        self.assertIn('name "virtio-blk-pci", bus PCI', out)
        self.assertIn('name "ide-hd", bus IDE', out)
        storage = out[out.index("Storage devices:"):]
        self.assertIn('name "ide-cd", bus IDE', storage.split("\n\n")[0])
        out = self.ctl_ok("run", "-device", "isa-debug-exit,help")
        self.assertIn("isa-debug-exit options:", out)
        self.assertRegex(out, r"(?m)^  iobase=<uint32> +- first I/O port \(default: 1281\)$")
        self.assertEqual(self.vm_list(), {})


class NoDaemon(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="emuctl-test-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.socket = os.path.join(self.dir, "emud.sock")

    def test_no_daemon_names_the_socket(self):
        for args in (["list"], ["status", "x"], ["run", "-name", "x", "-daemonize"]):
            with self.subTest(args=args):
                r = emuctl(self.socket, *args)
                self.assertEqual(r.returncode, 1, r)
                self.assertIn(self.socket, r.stderr)
                self.assertTrue(r.stderr.startswith("emuctl: "), r.stderr)
        self.assertEqual(os.listdir(self.dir), [])

    def test_stale_socket_file(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.socket)
        s.close()  # the file stays, nobody listens
        r = emuctl(self.socket, "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn(self.socket, r.stderr)

    def test_flag_errors_need_no_daemon(self):
        r = emuctl(self.socket, "run", "-foo")
        self.assertEqual((r.returncode, r.stderr), (1, "emuctl: -foo: invalid option\n"))


class StartDaemon(unittest.TestCase):
    """--start-daemon starts a user-level emud whose state directory holds the socket."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="emuctl-test-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.socket = os.path.join(self.dir, "emud.sock")
        self.addCleanup(self.stop_daemon)

    def stop_daemon(self):
        if os.path.exists(self.socket):
            try:
                kill_daemon(peer_pid(self.socket))
            except OSError:
                pass

    def test_start_daemon(self):
        pidfile = os.path.join(self.dir, "x.pid")
        log = os.path.join(self.dir, "emuctl.log")
        # stdout and stderr in a file, not a pipe: see the next test.
        with open(log, "w") as out:
            r = subprocess.run([EMUCTL, "--socket", self.socket, "--start-daemon", "run", "-name", "x",
                                "-machine", "none", "-daemonize", "-pidfile", pidfile],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=10)
        with open(log) as f:
            self.assertEqual(r.returncode, 0, f.read())
        with open(pidfile) as f:
            pid = int(f.read())
        self.assertEqual(peer_pid(self.socket), pid)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            self.assertTrue(f.read().split(b"\0")[0].endswith(b"emud"))
        with Qmp(os.path.join(self.dir, "vms", "x", "qmp.sock")) as q:
            self.assertEqual(q.ok("query-status")["status"], "running")
        # Once it runs, another --start-daemon uses it instead of starting one more.
        r = emuctl(self.socket, "--start-daemon", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([row.split()[:2] for row in r.stdout.splitlines()[1:]], [["x", "running"]])
        self.assertEqual(peer_pid(self.socket), pid)
        kill_daemon(pid)

    # Regression: a daemon started by --start-daemon must not keep the
    # caller's stderr open (out=$(emuctl --start-daemon ... 2>&1) returned only
    # when that daemon exited).
    def test_start_daemon_releases_captured_output(self):
        p = subprocess.Popen([EMUCTL, "--socket", self.socket, "--start-daemon", "list"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.assertEqual(p.wait(10), 0)
            wait_for_socket(self.socket)
            # emuctl has exited: stderr must reach EOF now that its writer is gone.
            out = b""
            deadline = time.time() + 1.0
            while time.time() < deadline:
                if select.select([p.stderr], [], [], 0.05)[0]:
                    chunk = os.read(p.stderr.fileno(), 65536)
                    if not chunk:
                        break
                    out += chunk
            else:
                self.fail("emuctl's stderr pipe is still open after emuctl exited (held by emud)")
        finally:
            reap(p)


if __name__ == "__main__":
    unittest.main()
