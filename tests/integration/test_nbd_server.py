"""The daemon's NBD server: a VM's drive exported with nbd-server-start/-add
(QEMU 2.10) and block-export-add (QEMU 5.2), read by real clients (nbdinfo,
nbdcopy, qemu-img) over unix sockets, TCP and TLS (certificates made by the
openssl command); read-only exports, nbd-server-remove safe and hard with a
client connected, an export ending with its CD-ROM's medium, the VM ending
under a client, the HMP twins, and QEMU's errors. The VMs are created paused
(as with -S, with tests/baremetal's multiboot kernel, which never runs): the
drive's backend serves the clients alone.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import test_nbd
from emud_harness import BUILD_DIR, EmudTestCase, Qmp
from test_nbd import NBDCOPY, NBDINFO, OPENSSL, QEMU_IMG, QEMU_NBD, RawClient, extents, free_port, read_bytes, run

MiB = 1024 * 1024
SIZE = 4 * MiB
# Machine 'pc' needs a kernel; the VMs stay paused, so this one never runs.
KERNEL = os.path.join(BUILD_DIR, "tests", "baremetal", "mb_smoke.bin")


def make_certs(directory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client one,
    as test_nbd makes them."""
    os.makedirs(directory, exist_ok=True)
    test_nbd.NbdTest.make_certs(directory)


@unittest.skipUnless(QEMU_IMG, "qemu-img is not installed")
@unittest.skipUnless(os.path.exists(KERNEL), "tests/baremetal is not built (nasm)")
class NbdServerTest(EmudTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="emud-nbd-server-")
        self.clients = []
        self.q = None
        # Data and holes, so reads and block status both have something to say.
        data = bytearray(SIZE)
        for i in range(12):
            off = (i * 331 * 1024) % (SIZE - 200000)
            n = 20000 + i * 7000
            data[off:off + n] = bytes([(i * 37 + 11) & 0xff]) * n if i % 2 else os.urandom(n)
        self.data = bytes(data)
        self.ref = self.path("ref.raw")
        with open(self.ref, "wb") as f:
            f.write(self.data)
        run("fallocate", "--dig-holes", self.ref, check=False)
        self.qcow2 = self.path("disk.qcow2")
        run(QEMU_IMG, "convert", "-f", "raw", "-O", "qcow2", self.ref, self.qcow2)

    def tearDown(self):
        for c in self.clients:
            c.close()
        if self.q:
            self.q.close()
        super().tearDown()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def vm(self, name="n", drives=None):
        """A paused VM with the qcow2 on virtio0 (or the given drives); its QMP."""
        drives = drives if drives is not None else [{"file": self.qcow2, "format": "qcow2", "if": "virtio"}]
        self.emud.create_vm({"name": name, "kernel": KERNEL, "accel": [{"type": "tcg"}], "drives": drives},
                            start=False)
        self.q = Qmp(self.emud.vm_socket(name))
        return self.q

    def error(self, name, args=None):
        reply = self.q.cmd(name, args)
        self.assertIn("error", reply, f"{name} {args} should fail: {reply}")
        self.assertEqual(reply["error"]["class"], "GenericError")
        return reply["error"]["desc"]

    def start_unix(self, legacy=True):
        sock = self.path(f"nbd-{len(os.listdir(self.tmp))}.sock")
        addr = {"type": "unix", "data": {"path": sock}} if legacy else {"type": "unix", "path": sock}
        self.q.ok("nbd-server-start", {"addr": addr})
        return sock

    def start_tcp(self, **extra):
        port = free_port()
        self.q.ok("nbd-server-start", {"addr": {"type": "inet", "host": "127.0.0.1", "port": str(port)}, **extra})
        return port

    def raw_client(self, sock, name):
        c = RawClient(sock)
        self.clients.append(c)
        size, _ = c.go(name.encode())
        self.assertEqual(size, SIZE)
        return c

    def remove_once_idle(self, command, args):
        """A safe removal, retried while a client that went away is still
        being noticed by the server."""
        for _ in range(300):
            reply = self.q.cmd(command, args)
            if "error" not in reply:
                return
            self.assertIn("still in use", reply["error"]["desc"])
            time.sleep(0.01)
        self.fail(f"{command} {args}: still in use")

    def destroy(self, name="n"):
        with self.emud.qmp() as d:
            d.ok("__org.emud_vm-destroy", {"name": name})

    # --- exports read by real clients --------------------------------------------------

    @unittest.skipUnless(NBDINFO and NBDCOPY and QEMU_NBD, "libnbd-bin or qemu-nbd is not installed")
    def test_read_only_export_on_unix_socket(self):
        self.vm()
        sock = self.start_unix()
        self.q.ok("nbd-server-add", {"device": "virtio0", "description": "the VM's disk"})
        uri = f"nbd+unix:///virtio0?socket={sock}"
        listing = json.loads(run(NBDINFO, "--list", "--json", f"nbd+unix://?socket={sock}").stdout)
        self.assertEqual([(e["export-name"], e["description"], e["export-size"]) for e in listing["exports"]],
                         [("virtio0", "the VM's disk", SIZE)])
        info = json.loads(run(NBDINFO, "--json", uri).stdout)["exports"][0]
        self.assertTrue(info["is_read_only"])
        self.assertIn("base:allocation", info["contexts"])
        # Block status: the same map as qemu-nbd's of a copy of the image.
        copy = self.path("copy.qcow2")
        shutil.copy(self.qcow2, copy)
        qsock = self.path("qemu-nbd.sock")
        qemu_nbd = subprocess.Popen([QEMU_NBD, "-t", "-r", "-k", qsock, "-x", "virtio0", "-f", "qcow2", copy],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(500):
                if os.path.exists(qsock):
                    break
                time.sleep(0.01)
            self.assertEqual(extents(uri), extents(f"nbd+unix:///virtio0?socket={qsock}"))
        finally:
            qemu_nbd.terminate()
            qemu_nbd.wait(10)
        out = self.path("out.raw")
        run(NBDCOPY, uri, out)
        self.assertEqual(read_bytes(out), self.data)
        run(QEMU_IMG, "compare", "-f", "raw", self.ref, uri)
        self.assertEqual(json.loads(run(QEMU_IMG, "info", "--output=json", uri).stdout)["virtual-size"], SIZE)
        # Writes are refused, and nothing changed.
        self.assertEqual(run(NBDINFO, "--is", "read-only", uri, check=False).returncode, 0)
        p = run(QEMU_IMG, "convert", "-n", "-f", "raw", "-O", "raw", self.ref, uri, check=False)
        self.assertNotEqual(p.returncode, 0)
        p = run(NBDCOPY, out, uri, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(self.q.ok("query-block-exports"),
                         [{"id": "virtio0", "type": "nbd", "node-name": self.node_name(), "shutting-down": False}])
        self.q.ok("nbd-server-stop")
        self.assertEqual(self.q.event("BLOCK_EXPORT_DELETED")["data"], {"id": "virtio0"})
        self.assertFalse(os.path.exists(sock) and self.connects(sock))
        self.assertEqual(self.q.ok("query-block-exports"), [])

    def node_name(self, device="virtio0"):
        for b in self.q.ok("query-block"):
            if b["device"] == device:
                return b["inserted"]["node-name"]
        raise AssertionError(f"no drive {device}")

    @staticmethod
    def connects(sock):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(sock)
            return True
        except OSError:
            return False

    @unittest.skipUnless(NBDCOPY, "nbdcopy is not installed")
    def test_writable_export_over_tcp_both_ways(self):
        self.vm()
        port = self.start_tcp(**{"max-connections": 4})
        self.q.ok("nbd-server-add", {"device": "virtio0", "name": "disk", "writable": True})
        uri = f"nbd://127.0.0.1:{port}/disk"
        info = json.loads(run(NBDINFO, "--json", uri).stdout)["exports"][0] if NBDINFO else None
        if info:
            self.assertFalse(info["is_read_only"])
            self.assertTrue(info["can_multi_conn"])
        # New contents in through nbdcopy (several connections), back out, and through qemu-img.
        src = self.path("src.raw")
        with open(src, "wb") as f:
            f.write(os.urandom(SIZE // 2) + bytes(SIZE // 4) + b"\x5a" * (SIZE // 4))
        run(NBDCOPY, "--flush", "--connections=4", src, uri)
        back = self.path("back.raw")
        run(NBDCOPY, uri, back)
        self.assertEqual(read_bytes(back), read_bytes(src))
        run(QEMU_IMG, "compare", "-f", "raw", src, uri)
        run(QEMU_IMG, "convert", "-n", "-f", "raw", "-O", "raw", self.ref, uri)
        run(QEMU_IMG, "compare", "-f", "raw", self.ref, uri)
        # The writes went to the VM's qcow2, which closes clean with the VM.
        self.q.ok("nbd-server-stop")
        self.destroy()
        run(QEMU_IMG, "check", "-f", "qcow2", self.qcow2)
        run(QEMU_IMG, "compare", "-f", "raw", "-F", "qcow2", self.ref, self.qcow2)

    def test_block_export_add_and_del(self):
        self.vm()
        sock = self.start_unix(legacy=False)
        node = self.node_name()
        self.q.ok("block-export-add", {"type": "nbd", "id": "e0", "node-name": node, "writable": True})
        self.q.ok("block-export-add", {"type": "nbd", "id": "e1", "node-name": node, "name": "second"})
        self.assertEqual(self.q.ok("query-block-exports"),
                         [{"id": "e0", "type": "nbd", "node-name": node, "shutting-down": False},
                          {"id": "e1", "type": "nbd", "node-name": node, "shutting-down": False}])
        # e0's name is the node name ("#block…", no URI can hold it): a raw client.
        c = self.raw_client(sock, node)
        c.request(1, 4096, 512, b"\x77" * 512)  # NBD_CMD_WRITE
        self.assertEqual(c.simple_reply()[0], 0)
        c.close()
        expected = self.data[:4096] + b"\x77" * 512 + self.data[4096 + 512:]
        out = self.path("second.raw")
        run(QEMU_IMG, "convert", "-O", "raw", f"nbd+unix:///second?socket={sock}", out)
        self.assertEqual(read_bytes(out), expected)
        self.assertEqual(self.error("block-export-add", {"type": "nbd", "id": "e0", "node-name": node}),
                         "Block export id 'e0' is already in use")
        self.assertEqual(self.error("block-export-add", {"type": "nbd", "id": "e2", "node-name": node}),
                         f"NBD server already has export named '{node}'")
        self.assertEqual(self.error("block-export-add", {"type": "nbd", "id": "0bad", "node-name": node}),
                         "Invalid block export id")
        self.assertEqual(self.error("block-export-add", {"type": "nbd", "id": "e3", "node-name": "nope"}),
                         "Cannot find device='' nor node-name='nope'")
        self.assertIn("fuse", self.error("block-export-add", {"type": "fuse", "id": "e4", "node-name": node}))
        self.remove_once_idle("block-export-del", {"id": "e0"})
        self.assertEqual(self.q.event("BLOCK_EXPORT_DELETED")["data"], {"id": "e0"})
        self.assertEqual(self.error("block-export-del", {"id": "e0"}), "Export 'e0' is not found")
        # nbd-server-remove takes block-export-add's ids too.
        self.q.ok("nbd-server-remove", {"name": "e1"})
        self.assertEqual(self.q.event("BLOCK_EXPORT_DELETED")["data"], {"id": "e1"})
        self.assertEqual(self.q.ok("query-block-exports"), [])
        self.q.ok("nbd-server-stop")

    def test_remove_safe_refuses_while_a_client_uses_the_export_hard_disconnects(self):
        self.vm()
        sock = self.start_unix()
        self.q.ok("nbd-server-add", {"device": "virtio0"})
        client = self.raw_client(sock, "virtio0")
        self.assertEqual(self.error("nbd-server-remove", {"name": "virtio0"}), "export 'virtio0' still in use")
        self.assertEqual(self.error("nbd-server-remove", {"name": "virtio0", "mode": "safe"}),
                         "export 'virtio0' still in use")
        self.assertEqual(len(self.q.ok("query-block-exports")), 1)
        # The client still reads.
        client.request(0, 0, 4096)
        self.assertEqual(client.simple_reply()[0], 0)
        self.assertEqual(test_nbd.recv_exact(client.s, 4096), self.data[:4096])
        self.q.ok("nbd-server-remove", {"name": "virtio0", "mode": "hard"})
        self.assertEqual(self.q.event("BLOCK_EXPORT_DELETED")["data"], {"id": "virtio0"})
        self.assertTrue(client.closed())
        # A client gone, safe removal works; the server still runs.
        self.q.ok("nbd-server-add", {"device": "virtio0"})
        c2 = self.raw_client(sock, "virtio0")
        c2.request(2, 0, 0)  # NBD_CMD_DISC
        self.assertTrue(c2.closed())
        self.remove_once_idle("nbd-server-remove", {"name": "virtio0"})
        self.assertEqual(self.q.ok("query-block-exports"), [])
        # Stop disconnects the clients of every export.
        self.q.ok("nbd-server-add", {"device": "virtio0"})
        c3 = self.raw_client(sock, "virtio0")
        self.q.ok("nbd-server-stop")
        self.assertTrue(c3.closed())

    def test_eject_ends_the_export_of_the_device_not_block_export_add(self):
        iso = self.path("cd.iso")
        shutil.copy(self.ref, iso)
        self.vm(drives=[{"file": iso, "if": "ide", "index": "2", "media": "cdrom", "format": "raw"}])
        sock = self.start_unix()
        node = self.node_name("ide1-cd0")
        self.q.ok("nbd-server-add", {"device": "ide1-cd0", "writable": True})  # read-only drive: read-only export
        self.q.ok("block-export-add", {"type": "nbd", "id": "bynode", "node-name": node})
        self.assertEqual(self.error("block-export-add", {"type": "nbd", "id": "w", "node-name": node,
                                                         "name": "w", "writable": True}),
                         "Cannot export read-only node as writable")
        by_device = self.raw_client(sock, "ide1-cd0")
        by_node = self.raw_client(sock, node)
        self.q.ok("eject", {"device": "ide1-cd0"})
        self.assertEqual(self.q.event("BLOCK_EXPORT_DELETED")["data"], {"id": "ide1-cd0"})
        self.assertTrue(by_device.closed())
        # The export of the node keeps the old medium open and still serves it.
        by_node.request(0, SIZE - 4096, 4096)
        self.assertEqual(by_node.simple_reply()[0], 0)
        self.assertEqual(test_nbd.recv_exact(by_node.s, 4096), self.data[-4096:])
        self.assertEqual([e["id"] for e in self.q.ok("query-block-exports")], ["bynode"])
        self.assertEqual(self.error("nbd-server-add", {"device": "ide1-cd0"}), "Device 'ide1-cd0' has no medium")
        # A new medium can be exported again.
        self.q.ok("blockdev-change-medium", {"device": "ide1-cd0", "filename": iso, "format": "raw"})
        self.q.ok("nbd-server-add", {"device": "ide1-cd0"})
        run(QEMU_IMG, "compare", "-f", "raw", self.ref, f"nbd+unix:///ide1-cd0?socket={sock}")
        self.q.ok("nbd-server-remove", {"name": "bynode", "mode": "hard"})
        self.assertTrue(by_node.closed())

    def test_vm_ending_disconnects_its_clients(self):
        self.vm()
        sock = self.start_unix()
        self.q.ok("nbd-server-add", {"device": "virtio0", "writable": True})
        client = self.raw_client(sock, "virtio0")
        client.request(1, 0, 512, b"\xee" * 512)  # NBD_CMD_WRITE
        self.assertEqual(client.simple_reply()[0], 0)
        self.destroy()
        self.assertTrue(client.closed())
        self.assertFalse(self.connects(sock))
        run(QEMU_IMG, "check", "-f", "qcow2", self.qcow2)
        out = self.path("after.raw")
        run(QEMU_IMG, "convert", "-O", "raw", self.qcow2, out)
        self.assertEqual(read_bytes(out)[:512], b"\xee" * 512)
        self.assertEqual(read_bytes(out)[512:], self.data[512:])

    # --- TLS ------------------------------------------------------------------------------

    @unittest.skipUnless(OPENSSL, "openssl is not installed")
    def test_tls_with_x509_credentials(self):
        pki = self.path("pki")
        make_certs(pki)
        self.vm()
        # QEMU 2.10's object-add (props) and the flat form of later versions.
        self.q.ok("object-add", {"qom-type": "tls-creds-x509", "id": "tls0",
                                 "props": {"dir": pki, "endpoint": "server", "verify-peer": False}})
        self.q.ok("object-add", {"qom-type": "tls-creds-x509", "id": "cli", "dir": pki, "endpoint": "client"})
        self.assertEqual(self.error("object-add", {"qom-type": "tls-creds-x509", "id": "tls0", "dir": pki}),
                         "attempt to add duplicate property 'tls0' to object (type 'container')")
        self.assertIn("secret", self.error("object-add", {"qom-type": "secret", "id": "s0"}))
        self.assertEqual(self.error("nbd-server-start", {"addr": {"type": "inet", "host": "127.0.0.1", "port": "0"},
                                                         "tls-creds": "nope"}),
                         "No TLS credentials with id 'nope'")
        self.assertEqual(self.error("nbd-server-start", {"addr": {"type": "inet", "host": "127.0.0.1", "port": "0"},
                                                         "tls-creds": "cli"}),
                         "Expected TLS credentials for a server endpoint")
        port = self.start_tcp(**{"tls-creds": "tls0"})
        self.q.ok("nbd-server-add", {"device": "virtio0", "writable": True})
        # The server keeps its credentials after object-del, as QEMU's does.
        self.q.ok("object-del", {"id": "tls0"})
        self.assertEqual(self.error("object-del", {"id": "tls0"}), "object 'tls0' not found")
        test_nbd.check_tls_export(self, port, "virtio0", pki, self.data, self.path("tls-qemu-img.raw"))
        if NBDCOPY:
            # nbdcopy reads the export over TLS and writes it back.
            tls_uri = f"nbds://localhost:{port}/virtio0?tls-certificates={pki}"
            out = self.path("tls.raw")
            run(NBDCOPY, tls_uri, out)
            self.assertEqual(read_bytes(out), self.data)
            run(NBDCOPY, "--flush", out, tls_uri)
        self.q.ok("nbd-server-stop")

    # --- HMP and errors --------------------------------------------------------------------

    def hmp(self, line):
        return self.q.ok("human-monitor-command", {"command-line": line})

    def hmp_socket(self, name):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.emud.vm_socket(name, "hmp"))
        s.settimeout(10)
        self.hmp_buf = b""
        self.hmp_sock = s
        self.run_hmp(None)
        return s

    def run_hmp(self, line):
        if line is not None:
            self.hmp_sock.sendall(line.encode() + b"\n")
        data = b""
        while not data.endswith(b"(qemu) "):
            chunk = self.hmp_sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data[:-len(b"(qemu) ")].decode().replace("\r\n", "\n")

    def test_hmp_twins(self):
        data2 = self.path("second.qcow2")
        shutil.copy(self.qcow2, data2)
        self.vm(drives=[{"file": self.qcow2, "format": "qcow2", "if": "virtio"},
                        {"file": data2, "format": "qcow2", "if": "virtio"}])
        s = self.hmp_socket("n")
        try:
            sock = self.path("hmp.sock")
            self.assertEqual(self.run_hmp("nbd_server_stop"), "Error: NBD server not running\n")
            self.assertEqual(self.run_hmp(f"nbd_server_start -a -w unix:{sock}"), "")
            self.assertEqual(sorted(e["id"] for e in self.q.ok("query-block-exports")), ["virtio0", "virtio1"])
            self.assertEqual(self.run_hmp(f"nbd_server_start unix:{sock}"), "Error: NBD server already running\n")
            if NBDINFO:
                run(NBDINFO, "--can", "write", f"nbd+unix:///virtio1?socket={sock}")
            client = self.raw_client(sock, "virtio1")
            self.assertEqual(self.run_hmp("nbd_server_remove virtio1"), "Error: export 'virtio1' still in use\n")
            self.assertEqual(self.run_hmp("nbd_server_remove -f virtio1"), "")
            self.assertTrue(client.closed())
            self.assertEqual(self.run_hmp("nbd_server_add virtio1 again"), "")
            self.assertEqual(self.run_hmp("nbd_server_add virtio1 again"),
                             "Error: Block export id 'again' is already in use\n")
            run(QEMU_IMG, "compare", "-f", "raw", self.ref, f"nbd+unix:///again?socket={sock}")
            self.assertEqual(self.run_hmp("nbd_server_stop"), "")
            self.assertEqual(self.q.ok("query-block-exports"), [])
            # TCP, and the same through human-monitor-command.
            port = free_port()
            self.assertEqual(self.hmp(f"nbd_server_start 127.0.0.1:{port}"), "")
            self.assertEqual(self.hmp("nbd_server_add -w virtio0"), "")
            run(QEMU_IMG, "compare", "-f", "raw", self.ref, f"nbd://127.0.0.1:{port}/virtio0")
            self.assertIn("nbd_server_add", self.run_hmp("help"))
            self.assertEqual(self.hmp("nbd_server_stop"), "")
        finally:
            s.close()

    def test_errors(self):
        ro = self.path("ro.qcow2")
        shutil.copy(self.qcow2, ro)
        self.vm(drives=[{"file": self.qcow2, "format": "qcow2", "if": "virtio"},
                        {"file": ro, "format": "qcow2", "if": "virtio", "readonly": "on"}])
        for cmd, args in (("nbd-server-add", {"device": "virtio0"}), ("nbd-server-remove", {"name": "x"}),
                          ("nbd-server-stop", None),
                          ("block-export-add", {"type": "nbd", "id": "x", "node-name": self.node_name()})):
            self.assertEqual(self.error(cmd, args), "NBD server not running", cmd)
        self.assertEqual(self.error("block-export-del", {"id": "x"}), "Export 'x' is not found")
        self.assertIn("vsock", self.error("nbd-server-start", {"addr": {"type": "vsock",
                                                                         "data": {"cid": "3", "port": "1"}}}))
        reply = self.q.cmd("nbd-server-start", {"addr": {"type": "inet", "data": {"host": "127.0.0.1"}}})
        self.assertEqual(reply["error"]["desc"], "Parameter 'addr.data.port' is missing")
        reply = self.q.cmd("nbd-server-start", {})
        self.assertEqual(reply["error"]["desc"], "Parameter 'addr' is missing")
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        try:
            desc = self.error("nbd-server-start", {"addr": {"type": "inet", "host": "127.0.0.1",
                                                            "port": str(busy.getsockname()[1])}})
            self.assertIn("in use", desc)
        finally:
            busy.close()
        sock = self.start_unix()
        self.assertEqual(self.error("nbd-server-start", {"addr": {"type": "unix", "data": {"path": sock + "2"}}}),
                         "NBD server already running")
        self.assertEqual(self.error("nbd-server-add", {"device": "nope"}),
                         "Cannot find device='nope' nor node-name='nope'")
        self.assertEqual(self.error("nbd-server-add", {"device": "virtio0", "name": "a b"}), "Invalid block export id")
        self.q.ok("nbd-server-add", {"device": "virtio0", "name": "d"})
        self.assertEqual(self.error("nbd-server-add", {"device": "virtio0", "name": "d"}),
                         "Block export id 'd' is already in use")
        self.assertEqual(self.error("nbd-server-remove", {"name": "nope"}), "Export 'nope' is not found")
        # A read-only drive is exported read-only by nbd-server-add even when asked for writable.
        self.q.ok("nbd-server-add", {"device": "virtio1", "writable": True})
        c = self.raw_client(sock, "virtio1")
        c.request(1, 0, 512, b"\1" * 512)
        self.assertNotEqual(c.simple_reply()[0], 0)
        run(QEMU_IMG, "compare", "-f", "raw", self.ref, f"nbd+unix:///virtio1?socket={sock}")
        reply = self.q.cmd("nbd-server-remove", {"name": "d", "mode": "sometimes"})
        self.assertIn("error", reply)
        self.q.ok("nbd-server-stop")
        self.assertEqual(self.error("nbd-server-stop"), "NBD server not running")
        # The server starts again after a stop, on the same path.
        self.q.ok("nbd-server-start", {"addr": {"type": "unix", "data": {"path": sock}}})
        self.q.ok("nbd-server-stop")


if __name__ == "__main__":
    unittest.main()
