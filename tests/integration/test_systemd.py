"""emud under systemd: the unit files, Type=notify readiness and socket activation.

No systemd runs as PID 1 here, so the tests play systemd's part themselves:
they bind the notification socket (NOTIFY_SOCKET) and the listening control
socket (LISTEN_FDS/LISTEN_PID, fd 3) exactly as systemd would, and check the
unit files offline with systemd-analyze.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emud_harness import EMUD, SOURCE_DIR, Qmp, wait_for_socket  # noqa: E402

UNIT_DIR = os.path.join(SOURCE_DIR, "systemd")
UNITS = ("emud.socket", "emud.service")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SD_LISTEN_FDS_START = 3


def parse_unit(path):
    """A unit file as {section: [(key, value), ...]}; keys may repeat."""
    sections = {}
    current = None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], [])
                continue
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def values(unit, section, key):
    return [v for k, v in unit.get(section, []) if k == key]


def start_emud(tmp, extra_env=None, listen_fd=None, args=()):
    """Starts emud the way systemd would. With listen_fd, that socket becomes
    fd 3 and LISTEN_PID names emud's own pid (sh's $$ survives the exec)."""
    state = os.path.join(tmp, "state")
    inherited = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    env.update(extra_env or {})
    log = open(os.path.join(tmp, "emud.log"), "w")
    cmd = [EMUD, "--foreground", "--state-dir", state, "--log-level", "info", "--check-returns"] + list(args)
    kwargs = {}
    if listen_fd is not None:
        env["LISTEN_FDS"] = "1"
        cmd = ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"'] + cmd

        def to_fd3():
            os.dup2(listen_fd, SD_LISTEN_FDS_START, inheritable=True)

        kwargs = {"preexec_fn": to_fd3, "pass_fds": (SD_LISTEN_FDS_START,)}
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, **kwargs)
    log.close()
    return proc, state


def stop_emud(proc, tc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            tc.fail("emud did not exit within 10 s of SIGTERM")
    return proc.returncode


class NotifySocket:
    """The datagram socket systemd listens on for sd_notify() messages."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        # Ask for the sender's credentials, as systemd does, to check who sent it.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def receive(self, timeout):
        """The next message as (fields dict, sender pid), or None on timeout."""
        self.sock.settimeout(timeout)
        try:
            data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = int.from_bytes(payload[0:4], sys.byteorder)
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        return fields, pid

    def wait_for(self, key, value, timeout, proc=None):
        deadline = time.time() + timeout
        seen = []
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None:
                break
            msg = self.receive(min(0.2, max(0.01, deadline - time.time())))
            if msg is None:
                continue
            seen.append(msg)
            if msg[0].get(key) == value:
                return msg
        raise AssertionError("no %s=%s notification within %.1fs (got %r)" % (key, value, timeout, seen))

    def close(self):
        self.sock.close()


@unittest.skipUnless(SYSTEMD_ANALYZE, "systemd-analyze is not installed")
class UnitFileTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="emud-units-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def copy_units(self, edit=None):
        """Copies the units to the temp dir with ExecStart pointing at the built
        emud (verify needs an executable there); edit(name, text) may change more."""
        paths = []
        for name in UNITS:
            with open(os.path.join(UNIT_DIR, name)) as f:
                text = f.read()
            text = re.sub(r"^ExecStart=\S+", "ExecStart=" + os.path.abspath(EMUD), text, flags=re.M)
            if edit:
                text = edit(name, text)
            path = os.path.join(self.tmp, name)
            with open(path, "w") as f:
                f.write(text)
            paths.append(path)
        return paths

    def verify(self, paths):
        env = dict(os.environ, SYSTEMD_LOG_LEVEL="info", SYSTEMD_LOG_COLOR="0")
        res = subprocess.run([SYSTEMD_ANALYZE, "verify"] + paths, cwd=self.tmp, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        # Warnings about the missing system manager are fine; anything that names
        # one of our units (unknown keys, bad values, missing binaries) is not.
        ours = [line for line in res.stdout.splitlines() if any(u in line for u in UNITS)]
        return res.returncode, ours, res.stdout

    def test_verify_passes(self):
        rc, ours, out = self.verify(self.copy_units())
        self.assertEqual(rc, 0, "systemd-analyze verify failed:\n" + out)
        self.assertEqual(ours, [], "systemd-analyze verify complains about our units:\n" + out)

    def test_verify_would_catch_a_broken_unit(self):
        # The check above must not be vacuous: a typo in a key is reported.
        def break_it(name, text):
            return text.replace("KillMode=mixed", "KillMode=mixde\nNoSuchKey=1") if name == "emud.service" else text

        rc, ours, out = self.verify(self.copy_units(break_it))
        self.assertTrue(ours, "verify did not notice a broken unit:\n" + out)

    def test_security_exposure(self):
        # Offline analysis of the sandbox; 'OK' is an exposure below 5.0 on systemd's scale.
        (service,) = [p for p in self.copy_units() if p.endswith(".service")]
        res = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=50", "--no-pager", service],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        if "Unknown option" in res.stdout or "unrecognized option" in res.stdout:
            self.skipTest("this systemd-analyze has no offline security analysis")
        self.assertEqual(res.returncode, 0, "exposure above 5.0:\n" + res.stdout[-3000:])

    def test_unit_contents(self):
        service = parse_unit(os.path.join(UNIT_DIR, "emud.service"))
        sock = parse_unit(os.path.join(UNIT_DIR, "emud.socket"))
        svc = lambda key: values(service, "Service", key)  # noqa: E731
        self.assertEqual(svc("Type"), ["notify"])
        self.assertEqual(svc("ExecStart"), ["/usr/local/bin/emud --foreground"])
        self.assertEqual(values(sock, "Socket", "ListenStream"), ["/run/emud/emud.sock"])
        self.assertEqual(values(sock, "Socket", "SocketMode"), ["0600"])
        self.assertIn("emud.socket", " ".join(values(service, "Unit", "Requires")))
        # /dev/kvm must stay reachable: an explicit allow, and no private /dev.
        self.assertIn("/dev/kvm rw", svc("DeviceAllow"))
        self.assertNotIn("yes", svc("PrivateDevices"))
        # The JIT needs W+X mappings; unix sockets must stay allowed.
        self.assertEqual(svc("MemoryDenyWriteExecute"), [])
        self.assertIn("AF_UNIX", " ".join(svc("RestrictAddressFamilies")))
        self.assertNotIn("yes", svc("PrivateNetwork"))
        # The runtime directory holds the socket-activated control socket: it
        # must survive a service restart.
        self.assertEqual(svc("RuntimeDirectory"), ["emud"])
        self.assertEqual(svc("RuntimeDirectoryPreserve"), ["yes"])
        for key, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "read-only"),
                          ("PrivateTmp", "yes")):
            self.assertEqual(svc(key), [want], key)
        rw = " ".join(svc("ReadWritePaths")).split()
        self.assertIn("/run/emud", rw)
        self.assertIn("/var/lib/emud", rw)
        self.assertGreaterEqual(int(svc("LimitNOFILE")[0]), 65536)


class NotifyTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="emud-notify-")
        self.notify = NotifySocket(os.path.join(self.tmp, "notify"))
        self.proc = None

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self):
        with open(os.path.join(self.tmp, "emud.log")) as f:
            return f.read()

    def test_ready_only_when_control_socket_serves(self):
        self.proc, state = start_emud(self.tmp, {"NOTIFY_SOCKET": self.notify.path})
        fields, pid = self.notify.wait_for("READY", "1", 10, self.proc)
        # At this very moment, with no retry, the control socket must take QMP.
        control = os.path.join(state, "emud.sock")
        with Qmp(control) as q:
            self.assertIn("QMP", q.greeting)
            self.assertIn("qemu", q.ok("query-version"))
        self.assertEqual(pid, self.proc.pid, "READY=1 must come from emud's main process (NotifyAccess=main)")
        self.assertEqual(stop_emud(self.proc, self), 0, self.log())
        # systemd learns about the shutdown too.
        self.notify.wait_for("STOPPING", "1", 5)

    def test_no_notify_socket_is_fine(self):
        self.proc, state = start_emud(self.tmp)
        wait_for_socket(os.path.join(state, "emud.sock"), self.proc)
        self.assertEqual(stop_emud(self.proc, self), 0, self.log())


class SocketActivationTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="emud-activation-")
        # The control socket as emud.socket would create it: bound, listening, 0600.
        self.path = os.path.join(self.tmp, "activated.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self.listener.listen(16)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.listener.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self):
        with open(os.path.join(self.tmp, "emud.log")) as f:
            return f.read()

    def start(self, **kw):
        proc, state = start_emud(self.tmp, listen_fd=self.listener.fileno(), **kw)
        self.procs.append(proc)
        return proc, state

    def test_qmp_through_passed_socket(self):
        # A client that connects before emud even runs waits in the backlog:
        # that is the point of socket activation.
        early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        early.settimeout(10)
        early.connect(self.path)
        notify = NotifySocket(os.path.join(self.tmp, "notify"))
        try:
            proc, state = self.start(extra_env={"NOTIFY_SOCKET": notify.path})
            notify.wait_for("READY", "1", 10, proc)
        finally:
            notify.close()
        greeting = early.makefile("rb").readline()
        self.assertTrue(greeting.startswith(b'{"QMP"'), greeting)
        early.close()

        with Qmp(self.path) as q:
            vm = q.ok("__org.emud_vm-create", {"config": {"name": "act", "machine": {"type": "none"}}})
            self.assertEqual(vm["name"], "act")
            self.assertEqual([v["name"] for v in q.ok("__org.emud_vm-list")], ["act"])
        # emud used the socket it was given and did not bind its default one.
        self.assertFalse(os.path.exists(os.path.join(state, "emud.sock")), self.log())
        self.assertIn("listening on unix:" + self.path, self.log())

        self.assertEqual(stop_emud(proc, self), 0, self.log())
        # The socket belongs to systemd: emud must leave the file in place, and a
        # restarted emud serves the same listening socket again.
        self.assertTrue(os.path.exists(self.path), "emud removed the socket that systemd owns")
        proc2, _ = self.start()
        with Qmp(self.path) as q:
            self.assertEqual(q.ok("__org.emud_vm-list"), [])
        self.assertEqual(stop_emud(proc2, self), 0, self.log())

    def test_foreign_listen_pid_is_ignored(self):
        # LISTEN_FDS meant for another process (LISTEN_PID not ours) must not be
        # taken: emud then opens its own control socket.
        proc, state = start_emud(self.tmp, {"LISTEN_FDS": "1", "LISTEN_PID": "1"})
        self.procs.append(proc)
        control = os.path.join(state, "emud.sock")
        wait_for_socket(control, proc)
        with Qmp(control) as q:
            self.assertEqual(q.ok("__org.emud_vm-list"), [])
        self.assertEqual(stop_emud(proc, self), 0, self.log())


if __name__ == "__main__":
    unittest.main()
