"""Character device backends (-chardev/-serial/-monitor) against the real emud.

Without a guest (machine 'none', fast): what each backend opens and how
query-chardev and `info chardev` show it, wait=on servers, the errors for bad
paths, unreachable peers and backends emud does not have, ringbuf commands'
errors, and a peer that sends garbage and vanishes.

With a guest (two VMs booted side by side, the slow part; everything that
needs a running serial port shares them):
  VM 'a': ttyS0 a unix socket server, mux=on with the human monitor (the
          shell), ttyS1 a file, ttyS2 a pty, ttyS3 a unix socket client
          (reconnect=1) to a server of this test;
  VM 'b': ttyS0 a ringbuf (the shell, driven by ringbuf-write/ringbuf-read),
          ttyS1 a TCP server on a port the kernel picks.
"""

import base64
import os
import re
import socket
import struct
import sys
import termios
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emud_harness import EmudTestCase, Qmp  # noqa: E402

BUILD = os.environ.get("EMUD_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
GUEST = os.environ.get("EMUD_GUEST_DIR", os.path.join(BUILD, "guest"))
BOOT_TIMEOUT = 240
PROMPT = b"/ # "


def guest_file(name):
    path = os.path.join(GUEST, name)
    if not os.path.exists(path):
        raise AssertionError("%s is missing: build the guest kit with scripts/make-guest.sh %s "
                             "(scripts/test.sh does)" % (path, GUEST))
    return path


def until(predicate, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("%s not met within %.0fs" % (what, timeout))


class Line:
    """A byte stream (socket or pty fd) with expect()."""

    def __init__(self, sock=None, fd=None, name="line"):
        self.sock, self.fd, self.name, self.buf = sock, fd, name, b""

    def send(self, data):
        if self.sock:
            self.sock.sendall(data)
        else:
            os.write(self.fd, data)

    def _recv(self, timeout):
        if self.sock:
            self.sock.settimeout(timeout)
            try:
                return self.sock.recv(65536)
            except socket.timeout:
                return None
        import select
        r, _, _ = select.select([self.fd], [], [], timeout)
        return os.read(self.fd, 65536) if r else None

    def expect(self, pattern, timeout=30.0):
        """Waits for bytes or a compiled regex; returns the output up to its end."""
        deadline = time.time() + timeout
        while True:
            m = pattern.search(self.buf) if hasattr(pattern, "search") else None
            end = m.end() if m else (self.buf.index(pattern) + len(pattern)
                                     if not hasattr(pattern, "search") and pattern in self.buf else -1)
            if end >= 0:
                out, self.buf = self.buf[:end], self.buf[end:]
                return out
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("%s: %r did not appear within %.0fs; last output:\n%s"
                                     % (self.name, pattern, timeout, self.buf[-1500:].decode(errors="replace")))
            data = self._recv(min(left, 1.0))
            if data == b"":
                raise AssertionError("%s closed while waiting for %r; last output:\n%s"
                                     % (self.name, pattern, self.buf[-1500:].decode(errors="replace")))
            if data:
                self.buf += data

    def drain(self, quiet=0.3):
        while self._recv(quiet):
            pass
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
        elif self.fd is not None:
            os.close(self.fd)


def unix_connect(path, timeout=10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def chardevs(q):
    return {c["label"]: c for c in q.ok("query-chardev")}


class WithoutGuest(EmudTestCase):
    def vm(self, chardevs_, serials=(), monitors=(), name="n", start=True):
        with self.emud.qmp() as q:
            return q.cmd("__org.emud_vm-create", {"config": {
                "name": name, "machine": {"type": "none"}, "chardevs": chardevs_,
                "serials": list(serials), "monitors": list(monitors)}, "start": start})

    def test_every_backend_opens_and_query_chardev_shows_it(self):
        d = self.emud.dir
        os.mkfifo(os.path.join(d, "pp.in"))
        os.mkfifo(os.path.join(d, "pp.out"))
        r = self.vm([
            {"id": "nul", "backend": "null"},
            {"id": "f", "backend": "file", "props": {"path": d + "/out.log"}},
            {"id": "fa", "backend": "file", "props": {"path": d + "/append.log", "append": "on"}},
            {"id": "pp", "backend": "pipe", "props": {"path": d + "/pp"}},
            {"id": "pt", "backend": "pty"},
            {"id": "us", "backend": "socket", "props": {"path": d + "/us.sock", "server": "on", "wait": "off"}},
            {"id": "ts", "backend": "socket", "props": {"host": "127.0.0.1", "port": "0", "server": "on",
                                                        "wait": "off", "nodelay": "on"}},
            {"id": "rb", "backend": "ringbuf", "props": {"size": "4k"}},
            {"id": "mx", "backend": "socket", "props": {"path": d + "/mx.sock", "server": "on", "wait": "off",
                                                        "mux": "on"}},
            {"id": "con", "backend": "stdio"},
        ], monitors=[{"chardev": "mx"}, {"chardev": "pp"}])
        self.assertIn("return", r, r)
        self.assertTrue(os.path.exists(d + "/out.log"))
        with Qmp(self.emud.vm_socket("n")) as q:
            info = chardevs(q)
            self.assertEqual(info["nul"]["filename"], "null")
            self.assertEqual(info["f"]["filename"], "file")
            self.assertEqual(info["pp"]["filename"], "pipe")
            self.assertRegex(info["pt"]["filename"], r"^pty:/dev/pts/\d+$")
            self.assertEqual(info["us"]["filename"], "disconnected:unix:%s/us.sock,server" % d)
            self.assertRegex(info["ts"]["filename"], r"^disconnected:tcp:127\.0\.0\.1:[1-9]\d*,server$")
            self.assertEqual(info["rb"]["filename"], "ringbuf")
            self.assertEqual(info["mx"]["filename"], "mux")
            self.assertTrue(info["mx"]["frontend-open"])
            self.assertEqual(info["mx-base"]["filename"], "disconnected:unix:%s/mx.sock,server" % d)
            self.assertEqual(info["con"]["filename"], "stdio")
            self.assertFalse(info["f"]["frontend-open"])  # no serial port on machine 'none'
            # The pty is raw: no echo, no line editing, as QEMU leaves it.
            fd = os.open(info["pt"]["filename"][4:], os.O_RDWR | os.O_NOCTTY)
            try:
                lflag = termios.tcgetattr(fd)[3]
                self.assertEqual(lflag & (termios.ECHO | termios.ICANON), 0)
            finally:
                os.close(fd)
            # The TCP server answers on the port it reports; once a client is
            # there, the filename names both ends.
            port = int(re.search(r":(\d+),server$", info["ts"]["filename"]).group(1))
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            until(lambda: "<->" in chardevs(q)["ts"]["filename"], what="tcp client listed")
            self.assertRegex(chardevs(q)["ts"]["filename"],
                             r"^tcp:127\.0\.0\.1:%d,server <-> 127\.0\.0\.1:\d+$" % port)
            c.close()
            until(lambda: chardevs(q)["ts"]["filename"].startswith("disconnected:"), what="tcp client gone")
            # The mux's monitor greets whoever connects (no serial port to share with here).
            m = Line(unix_connect(d + "/mx.sock"), name="mux monitor")
            m.expect(b"(qemu) ")
            m.send(b"info chardev\r")
            out = m.expect(b"(qemu) ").decode()
            self.assertIn("pt: filename=pty:/dev/pts/", out)
            self.assertIn("mx-base: filename=unix:%s/mx.sock,server" % d, out)
            m.close()
            # A monitor on a pipe: commands into pp.in, answers out of pp.out.
            out_fd = os.open(d + "/pp.out", os.O_RDONLY | os.O_NONBLOCK)
            in_fd = os.open(d + "/pp.in", os.O_WRONLY | os.O_NONBLOCK)
            pipe = Line(fd=out_fd, name="pipe monitor")
            pipe.expect(b"monitor - type 'help' for more information\r\n(qemu) ")
            os.write(in_fd, b"info name\n")
            pipe.expect(b"info name\r\nn\r\n(qemu) ")
            os.close(in_fd)
            pipe.close()
            # HMP over QMP: info chardev.
            text = q.ok("human-monitor-command", {"command-line": "info chardev"})
            self.assertIn("rb: filename=ringbuf\r\n", text)
            # ringbuf commands: QEMU's errors; an empty ring reads as "".
            self.assertEqual(q.ok("ringbuf-read", {"device": "rb", "size": 10}), "")
            self.assertEqual(q.ok("ringbuf-read", {"device": "rb", "size": 10, "format": "base64"}), "")
            r = q.cmd("ringbuf-read", {"device": "nope", "size": 1})
            self.assertEqual(r["error"], {"class": "DeviceNotFound", "desc": "Device 'nope' not found"})
            r = q.cmd("ringbuf-read", {"device": "f", "size": 1})
            self.assertEqual(r["error"]["desc"], "f is not a ringbuf device")
            r = q.cmd("ringbuf-read", {"device": "con", "size": 1})
            self.assertEqual(r["error"]["desc"], "con is not a ringbuf device")
            r = q.cmd("ringbuf-read", {"device": "rb", "size": 0})
            self.assertEqual(r["error"]["desc"], "size must be greater than zero")
            r = q.cmd("ringbuf-write", {"device": "rb", "data": "!!", "format": "base64"})
            self.assertEqual(r["error"]["desc"], "Base64 data is invalid")
            r = q.cmd("ringbuf-write", {"device": "rb", "data": "x", "format": "hex"})
            self.assertIn("error", r)
            self.assertIn("return", q.cmd("ringbuf-write", {"device": "rb", "data": "aGk=", "format": "base64"}))
            text = q.ok("human-monitor-command", {"command-line": "ringbuf_read f 5"})
            self.assertIn("f is not a ringbuf device", text)
        # Destroying the VM removes its socket files.
        with self.emud.qmp() as q:
            q.ok("__org.emud_vm-destroy", {"name": "n"})
        until(lambda: not os.path.exists(d + "/us.sock"), what="socket file removed")

    def test_wait_on_holds_the_start_until_a_client_connects(self):
        path = self.emud.dir + "/w.sock"
        r = self.vm([{"id": "w", "backend": "socket", "props": {"path": path, "server": "on"}}])
        self.assertEqual(r["return"]["status"], "prelaunch")
        with Qmp(self.emud.vm_socket("n")) as q:
            s = unix_connect(path)
            ev = q.event("RESUME")
            self.assertEqual(ev["event"], "RESUME")
            self.assertEqual(q.ok("query-status")["status"], "running")
            s.close()

    def test_errors_name_the_chardev_and_the_cause(self):
        d = self.emud.dir
        cases = [
            ([{"id": "f", "backend": "file", "props": {"path": "/nonexistent/dir/f.log"}}],
             "VM 'n': chardev 'f': Could not open '/nonexistent/dir/f.log': No such file or directory"),
            ([{"id": "f", "backend": "file", "props": {"path": d}}],
             "VM 'n': chardev 'f': Could not open '%s': Is a directory" % d),
            ([{"id": "p", "backend": "pipe", "props": {"path": d + "/nope"}}],
             "VM 'n': chardev 'p': Could not open '%s/nope': No such file or directory" % d),
            ([{"id": "c", "backend": "socket", "props": {"path": d + "/nobody.sock"}}],
             "VM 'n': chardev 'c': Failed to connect to unix:%s/nobody.sock: No such file or directory" % d),
            ([{"id": "s", "backend": "socket", "props": {"path": "/nonexistent/s.sock", "server": "on",
                                                         "wait": "off"}}],
             "VM 'n': chardev 's': Failed to bind socket to unix:/nonexistent/s.sock: No such file or directory"),
            ([{"id": "x", "backend": "warp"}], "chardev 'x': backend 'warp' is unknown"),
            ([{"id": "u", "backend": "udp", "props": {"port": "4555"}}],
             "chardev 'u': backend 'udp' is not supported: UDP sockets are not supported"),
            ([{"id": "v", "backend": "vc"}], "chardev 'v': backend 'vc' is not supported: "),
            ([{"id": "r", "backend": "ringbuf", "props": {"size": "1000"}}],
             "chardev 'r': size of ringbuf chardev must be power of two"),
        ]
        for config, message in cases:
            with self.subTest(message=message):
                r = self.vm(config)
                self.assertIn("error", r, r)
                self.assertTrue(r["error"]["desc"].startswith(message), r["error"]["desc"])
        # A client with reconnect does not need its server yet.
        r = self.vm([{"id": "c", "backend": "socket", "props": {"path": d + "/later.sock", "reconnect": "1"}}])
        self.assertIn("return", r, r)
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(d + "/later.sock")
        srv.listen(1)
        srv.settimeout(10)
        conn, _ = srv.accept()  # within a reconnect period or two
        with Qmp(self.emud.vm_socket("n")) as q:
            until(lambda: chardevs(q)["c"]["filename"] == "unix:%s/later.sock" % d, what="client listed")
            conn.close()
            until(lambda: chardevs(q)["c"]["filename"].startswith("disconnected:"), what="client gone")
            conn, _ = srv.accept()  # and it comes back
            conn.close()
        srv.close()
        # A live server's socket is not stolen.
        with self.emud.qmp() as q:
            q.ok("__org.emud_vm-destroy", {"name": "n"})
        keeper = socket.socket(socket.AF_UNIX)
        keeper.bind(d + "/taken.sock")
        keeper.listen(1)
        r = self.vm([{"id": "s", "backend": "socket", "props": {"path": d + "/taken.sock", "server": "on",
                                                                "wait": "off"}}])
        self.assertIn("another server is listening there", r["error"]["desc"])
        keeper.close()
        self.assertTrue(self.emud.alive())

    def test_a_peer_that_sends_garbage_and_vanishes(self):
        path = self.emud.dir + "/g.sock"
        r = self.vm([{"id": "g", "backend": "socket", "props": {"path": path, "server": "on", "wait": "off",
                                                                "mux": "on"}}],
                    monitors=[{"chardev": "g"}])
        self.assertIn("return", r, r)
        for i in range(3):
            s = unix_connect(path)
            s.sendall(os.urandom(200000) + b"\x01x" if i == 2 else os.urandom(100000))
            # Reset the connection (no FIN): the daemon sees ECONNRESET.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        time.sleep(0.3)
        self.assertTrue(self.emud.alive())
        with self.emud.qmp() as q:
            names = [v["name"] for v in q.ok("__org.emud_vm-list")]
        # Random bytes may well have contained Ctrl-a x, which ends the VM; the
        # daemon goes on either way.
        if "n" in names:
            m = Line(unix_connect(path), name="monitor")
            m.send(b"\x03\r")
            m.expect(b"(qemu) ")
            m.close()


@unittest.skipUnless(os.path.exists(os.path.join(GUEST, "vmlinux")), "no guest kit in %s" % GUEST)
class WithGuest(EmudTestCase):
    def guest(self, name, chardevs_, serials, monitors=()):
        return {"name": name, "kernel": guest_file("vmlinux"), "initrd": guest_file("initramfs.cpio.gz"),
                "append": "console=ttyS0 panic=-1 emu_mode=shell", "memory": {"size": 256 << 20},
                "chardevs": chardevs_, "serials": serials, "monitors": list(monitors)}

    def shell(self, line, command, expect, timeout=30):
        line.send(command.encode() + b"\n")
        return line.expect(expect, timeout)

    def test_two_guests_every_backend(self):
        d = self.emud.dir
        # The server the socket client of VM 'a' connects to.
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(d + "/srv.sock")
        srv.listen(1)
        srv.settimeout(20)
        a = self.emud.create_vm(self.guest("a", [
            {"id": "s0", "backend": "socket", "props": {"path": d + "/s0.sock", "server": "on", "wait": "off",
                                                        "mux": "on"}},
            {"id": "f1", "backend": "file", "props": {"path": d + "/ttyS1.log"}},
            {"id": "p2", "backend": "pty"},
            {"id": "c3", "backend": "socket", "props": {"path": d + "/srv.sock", "reconnect": "1"}},
        ], ["s0", "f1", "p2", "c3"], [{"chardev": "s0"}]))
        self.assertEqual(a["status"], "running")
        b = self.emud.create_vm(self.guest("b", [
            {"id": "r0", "backend": "ringbuf", "props": {"size": "1M"}},
            {"id": "t1", "backend": "socket", "props": {"host": "127.0.0.1", "port": "0", "server": "on",
                                                        "wait": "off", "nodelay": "on"}},
        ], ["r0", "t1"]))
        self.assertEqual(b["status"], "running")
        qa, qb = Qmp(self.emud.vm_socket("a")), Qmp(self.emud.vm_socket("b"))
        client, _ = srv.accept()
        c3 = Line(client, name="socket client ttyS3")
        s0 = Line(unix_connect(d + "/s0.sock"), name="mux ttyS0")

        # VM 'b': the shell on a ringbuf, read over QMP while it boots.
        ring = [b""]

        def ring_has(pattern):
            ring[0] += qb.ok("ringbuf-read", {"device": "r0", "size": 65536}).encode("utf-8", "surrogateescape")
            return pattern in ring[0]

        # VM 'a': guest output reaches the socket server.
        s0.expect(b"EMU-BOOT-OK", BOOT_TIMEOUT)
        s0.expect(PROMPT, 60)
        until(lambda: ring_has(b"EMU-BOOT-OK"), BOOT_TIMEOUT, "VM b's boot marker in the ring")
        until(lambda: ring_has(PROMPT), 60, "VM b's prompt in the ring")

        with self.subTest("typing into the socket server"):
            self.shell(s0, "echo $((6*7))-A", b"42-A")
            s0.expect(PROMPT)

        with self.subTest("file"):
            self.shell(s0, "echo FILE-$((2+3)) > /dev/ttyS1", PROMPT)
            def file_has(pattern):
                with open(d + "/ttyS1.log", "rb") as f:
                    return pattern in f.read()
            until(lambda: file_has(b"FILE-5"), what="file output")

        with self.subTest("pty"):
            pty = chardevs(qa)["p2"]["filename"]
            self.assertRegex(pty, r"^pty:/dev/pts/\d+$")
            p2 = Line(fd=os.open(pty[4:], os.O_RDWR | os.O_NOCTTY), name="pty ttyS2")
            time.sleep(0.6)  # the daemon notices a reader within 200 ms
            self.shell(s0, "echo PTY-$((3*3)) > /dev/ttyS2", PROMPT)
            p2.expect(b"PTY-9")
            self.shell(s0, "(read -r l < /dev/ttyS2; echo \"PTY-IN:$l\") &", PROMPT)
            time.sleep(0.5)
            p2.send(b"typed-into-pty\n")
            s0.expect(b"PTY-IN:typed-into-pty")
            p2.close()

        with self.subTest("socket client"):
            self.shell(s0, "echo CLIENT-$((4*4)) > /dev/ttyS3", PROMPT)
            c3.expect(b"CLIENT-16")
            self.shell(s0, "(read -r l < /dev/ttyS3; echo \"CLIENT-IN:$l\") &", PROMPT)
            time.sleep(0.5)
            c3.send(b"typed-into-client\n")
            s0.expect(b"CLIENT-IN:typed-into-client")
            # The server goes away; reconnect=1 brings the client back.
            c3.close()
            client, _ = srv.accept()
            c3 = Line(client, name="socket client ttyS3, again")
            time.sleep(0.3)
            self.shell(s0, "echo AGAIN > /dev/ttyS3", PROMPT)
            c3.expect(b"AGAIN")

        with self.subTest("mux: Ctrl-a c to the monitor and back"):
            s0.drain()
            s0.send(b"\x01c")
            s0.expect(b"QEMU 2.10.1 monitor - type 'help' for more information")
            s0.expect(b"(qemu) ")
            s0.send(b"info status\r")
            s0.expect(b"VM status: running")
            s0.expect(b"(qemu) ")
            s0.send(b"info chardev\r")
            out = s0.expect(b"(qemu) ")
            self.assertIn(b"p2: filename=pty:/dev/pts/", out)
            s0.send(b"\x01h")
            s0.expect(b"Ctrl-a c")
            s0.send(b"\x01c")
            self.shell(s0, "echo back-in-the-$((1+1))nd", b"back-in-the-2nd")
            s0.expect(PROMPT)

        with self.subTest("mux: Ctrl-a t timestamps, Ctrl-a s"):
            s0.send(b"\x01t")
            self.shell(s0, "echo stamped", re.compile(rb"\[\d\d:\d\d:\d\d\.\d{3}\] stamped"))
            s0.send(b"\x01t")
            s0.expect(PROMPT)
            s0.send(b"\x01s")
            s0.expect(b"No disks to write back")

        with self.subTest("mux: Ctrl-a b is a break (magic SysRq)"):
            s0.drain()
            self.shell(s0, "echo 1 > /proc/sys/kernel/sysrq", PROMPT)
            s0.send(b"\x01b")
            time.sleep(0.2)
            s0.send(b"h")
            s0.expect(b"sysrq: HELP")

        with self.subTest("ringbuf-write into the shell, ringbuf-read of its output"):
            ring[0] = b""
            qb.ok("ringbuf-write", {"device": "r0", "data": "echo RING-$((6*7))\n"})
            until(lambda: ring_has(b"RING-42"), 30, "RING-42 in the ring")
            data = base64.b64encode(b"echo B64-$((5*5))\n").decode()
            qb.ok("ringbuf-write", {"device": "r0", "data": data, "format": "base64"})
            until(lambda: ring_has(b"B64-25"), 30, "B64-25 in the ring")
            qb.ok("human-monitor-command", {"command-line": "ringbuf_write r0 \"echo HMP-$((7*7))\\n\""})
            text = [""]

            def hmp_read_has(pattern):
                text[0] += qb.ok("human-monitor-command", {"command-line": "ringbuf_read r0 4096"})
                return pattern in text[0]
            until(lambda: hmp_read_has("HMP-49"), 30, "HMP-49 through ringbuf_read")
            self.assertIn("\\u000D", text[0])  # control characters shown escaped

        with self.subTest("TCP server: output, input, a second client after the first"):
            port = int(re.search(r":(\d+),server", chardevs(qb)["t1"]["filename"]).group(1))
            t1 = Line(socket.create_connection(("127.0.0.1", port), timeout=10), name="tcp ttyS1")
            until(lambda: "<->" in chardevs(qb)["t1"]["filename"], what="tcp client")
            qb.ok("ringbuf-write", {"device": "r0", "data": "echo TCP-$((8*8)) > /dev/ttyS1\n"})
            t1.expect(b"TCP-64")
            qb.ok("ringbuf-write", {"device": "r0",
                                    "data": "(read -r l < /dev/ttyS1; echo \"TCP-IN:$l\" > /dev/ttyS1) &\n"})
            time.sleep(1.0)
            t1.send(b"from-tcp\n")
            t1.expect(b"TCP-IN:from-tcp")
            t1.close()
            until(lambda: chardevs(qb)["t1"]["filename"].startswith("disconnected:"), what="tcp client gone")

        with self.subTest("a peer that vanishes mid-stream; the next one is served"):
            s0.send(b"seq 1 30000\n")
            s0.expect(b"1000")
            s0.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s0.close()
            time.sleep(0.5)
            s0 = Line(unix_connect(d + "/s0.sock"), name="mux ttyS0, second client")
            until(lambda: not chardevs(qa)["s0-base"]["filename"].startswith("disconnected:"), what="reconnected")
            time.sleep(3)  # let seq finish into nowhere
            s0.drain()
            self.shell(s0, "echo ALIVE-$((9*9))", b"ALIVE-81")
            self.assertTrue(self.emud.alive())

        with self.subTest("Ctrl-a x ends the VM"):
            s0.send(b"\x01x")
            s0.expect(b"QEMU: Terminated")
            ev = qa.event("SHUTDOWN", timeout=10)
            self.assertEqual(ev["data"], {"guest": False, "reason": "host-ui"})

        qb.ok("quit")
        for x in (qa, qb, s0, c3):
            x.close()
        srv.close()


if __name__ == "__main__":
    unittest.main()
