"""Bad input: every hostile client gets QEMU's error or a clean close, the
daemon keeps serving everyone else, and nothing leaks."""

import os
import resource
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emud_harness import EmudTestCase, Qmp, connect  # noqa: E402


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


class Malformed(EmudTestCase):
    def test_envelope_errors(self):
        cases = [
            ('{"execute": }', "GenericError", "JSON parse error"),
            ("[1, 2]", "GenericError", "QMP input must be a JSON object"),
            ('"just a string"', "GenericError", "QMP input must be a JSON object"),
            ("42\n", "GenericError", "QMP input must be a JSON object"),
            ("}", "GenericError", "JSON parse error"),
            ('{"arguments": {}}', "GenericError", "QMP input lacks member 'execute'"),
            ('{"execute": 1}', "GenericError", "QMP input member 'execute' must be a string"),
            ('{"execute": "query-status", "arguments": []}', "GenericError",
             "QMP input member 'arguments' must be an object"),
            ('{"execute": "query-status", "bogus": 1}', "GenericError", "QMP input member 'bogus' is unexpected"),
            ('{"execute": "no-such-cmd"}', "CommandNotFound", "The command no-such-cmd has not been found"),
            ('{"execute": "query-status", "arguments": {"x": 1}}', "GenericError", "Parameter 'x' is unexpected"),
            ('{"execute": "human-monitor-command", "arguments": {}}', "GenericError",
             "Parameter 'command-line' is missing"),
            ('{"execute": "human-monitor-command", "arguments": {"command-line": "info status", "cpu-index": "0"}}',
             "GenericError", "Invalid parameter type for 'cpu-index', expected: integer"),
            # As QEMU: argument types are checked before the negotiation state.
            ('{"execute": "qmp_capabilities", "arguments": {"enable": "oob"}}', "GenericError",
             "Invalid parameter type for 'enable', expected: array"),
            ('{"execute": "qmp_capabilities", "arguments": {"enable": []}}', "CommandNotFound", "already"),
        ]
        self.emud.create_vm({"machine": {"type": "none"}, "name": "v"})
        with Qmp(self.emud.vm_socket("v")) as q:
            for text, cls, desc in cases:
                q.send_raw(text + "\n")
                r = q.reply()
                self.assertIn("error", r, text)
                self.assertEqual(r["error"]["class"], cls, text)
                self.assertIn(desc, r["error"]["desc"], text)
            # The session is still fine afterwards.
            self.assertEqual(q.ok("query-status")["status"], "running")

    def test_invalid_utf8_and_binary_garbage(self):
        with self.emud.qmp() as q:
            q.send_raw(b'{"execute": "query-version", "id": "\xff\xfe"}\n')
            r = q.reply()
            self.assertIn("error", r)
            q.send_raw(bytes(range(1, 32)) + b"\x7f\x80\n")
            # Garbage produces errors or nothing, never a crash.
            q.send_raw(b'{"execute": "query-target", "id": "after"}\n')
            while True:
                r = q.reply()
                if r.get("id") == "after":
                    break
            self.assertEqual(r["return"], {"arch": "x86_64"})

    def test_oversize_message_is_refused_and_closed(self):
        q = self.emud.qmp()
        payload = b'{"execute": "query-status", "arguments": {"x": "' + b"A" * (9 << 20)
        try:
            q.send_raw(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = q.reply()
        self.assertEqual(r["error"]["class"], "GenericError")
        self.assertIn("exceeds", r["error"]["desc"])
        with self.assertRaises((EOFError, ConnectionError)):
            q.read_message()
        q.close()
        with self.emud.qmp() as other:
            other.ok("query-version")

    def test_deep_nesting(self):
        # As QEMU: an error, the rest of that value skipped, the session goes on.
        q = self.emud.qmp()
        q.send_raw(b"[" * 5000 + b"]" * 5000 + b'{"execute": "query-target", "id": 2}')
        r = q.reply()
        self.assertEqual(r["error"], {"class": "GenericError", "desc": "JSON nesting depth limit exceeded"})
        self.assertEqual(q.reply(), {"return": {"arch": "x86_64"}, "id": 2})
        q.close()


class Misbehaving(EmudTestCase):
    def test_stalled_half_message_does_not_block_others(self):
        stalled = self.emud.qmp()
        stalled.send_raw('{"execute": "query-ver')
        with self.emud.qmp() as q:
            for _ in range(20):
                q.ok("query-version")
        stalled.send_raw('sion", "id": 9}\n')
        self.assertEqual(stalled.reply()["id"], 9)
        stalled.close()

    def test_client_vanishes_mid_command(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "v"})
        for _ in range(50):
            s = connect(self.emud.vm_socket("v"))
            s.sendall(b'{"execute":"qmp_capabilities"}{"execute":"query-qmp-schema"}{"execute":"stop"}'
                      b'{"execute":"cont"}')
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # RST with replies in flight
        with Qmp(self.emud.vm_socket("v")) as q:
            self.assertIn(q.ok("query-status")["status"], ("running", "paused"))

    def test_client_that_never_reads(self):
        self.emud.create_vm({"machine": {"type": "none"}, "name": "v"})
        s = connect(self.emud.vm_socket("v"))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b'{"execute":"qmp_capabilities"}')
        # Ask for large replies and never read them: emud must cap its backlog.
        req = b'{"execute":"query-qmp-schema"}' * 200
        s.settimeout(10)
        try:
            for _ in range(200):
                s.sendall(req)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        with self.emud.qmp() as q:
            q.ok("query-version")
        self.assertLess(self.emud.rss_kib(), 200 * 1024)
        s.close()


class Concurrency(EmudTestCase):
    def test_1000_concurrent_connections_and_no_leaks(self):
        raise_fd_limit(4096)
        self.emud.create_vm({"machine": {"type": "none"}, "name": "v"})
        # Warm up allocator pools, then measure.
        with Qmp(self.emud.vm_socket("v")) as q:
            q.ok("query-qmp-schema")
        fds_before = self.emud.settled_fd_count()
        rss_before = self.emud.rss_kib()

        for round_ in range(2):
            socks = []
            for i in range(1000):
                path = self.emud.socket if i % 2 else self.emud.vm_socket("v")
                socks.append(connect(path))
            # Every client gets its greeting and can talk.
            for s in socks:
                s.sendall(b'{"execute":"qmp_capabilities"}\n{"execute":"query-version","id":1}\n')
            for s in socks:
                data = b""
                while data.count(b"\n") < 3:
                    chunk = s.recv(65536)
                    self.assertTrue(chunk, "connection closed early")
                    data += chunk
                self.assertIn(b'"id":1', data)
            self.assertGreaterEqual(self.emud.fd_count(), fds_before + 1000)
            for s in socks:
                s.close()
            deadline = time.time() + 10
            while self.emud.fd_count() > fds_before and time.time() < deadline:
                time.sleep(0.05)
            self.assertEqual(self.emud.fd_count(), fds_before, "file descriptors leaked")
        # Memory returns close to where it was (allocator slack allowed).
        self.assertLess(self.emud.rss_kib() - rss_before, 8 * 1024)

    def test_vm_churn_leaks_nothing(self):
        with self.emud.qmp() as d:
            d.ok("__org.emud_vm-create", {"config": {"machine": {"type": "none"}, "name": "warm"}})
            d.ok("__org.emud_vm-destroy", {"name": "warm"})
            fds = self.emud.settled_fd_count()
            rss = self.emud.rss_kib()
            for i in range(200):
                d.ok("__org.emud_vm-create", {"config": {"machine": {"type": "none"}, "name": "c%d" % i}})
                with Qmp(self.emud.vm_socket("c%d" % i)) as q:
                    q.ok("stop")
                d.ok("__org.emud_vm-destroy", {"name": "c%d" % i})
            self.assertEqual(self.emud.settled_fd_count(), fds)
            self.assertLess(self.emud.rss_kib() - rss, 4 * 1024)
            self.assertEqual(os.listdir(os.path.join(self.emud.state_dir, "vms")), [])


if __name__ == "__main__":
    unittest.main()
