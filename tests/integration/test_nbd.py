"""NBD against real peers: emu-nbd serving nbdinfo, nbdcopy and qemu-img
(TCP, unix sockets, TLS with certificates made by the openssl command,
read-only exports, several clients); emu-img's nbd protocol driver reading and
writing qemu-nbd and nbdkit exports; hostile input over raw sockets (garbage
handshakes, oversize options, requests past the end, disconnects in the middle
of a request, a flood of connections) after which the server still serves.
Images are a few MiB so the file runs in well under a minute.
"""

import json
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest

BUILD = os.environ.get("EMUD_BUILD_DIR",
                       os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
EMU_NBD = os.environ.get("EMU_NBD", os.path.join(BUILD, "clients", "emu-nbd"))
EMU_IMG = os.environ.get("EMU_IMG", os.path.join(BUILD, "clients", "emu-img"))
QEMU_IMG = shutil.which("qemu-img")
QEMU_NBD = shutil.which("qemu-nbd")
NBDINFO = shutil.which("nbdinfo")
NBDCOPY = shutil.which("nbdcopy")
NBDKIT = shutil.which("nbdkit")
OPENSSL = shutil.which("openssl")
MiB = 1024 * 1024
SIZE = 6 * MiB

IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698


def run(*args, check=True, timeout=60, **kw):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def extents(uri):
    """nbdinfo --map of an export, adjacent runs of one type merged."""
    merged = []
    for e in json.loads(run(NBDINFO, "--map", "--json", uri).stdout):
        if merged and merged[-1][2] == e["type"]:
            merged[-1][1] += e["length"]
        else:
            merged.append([e["offset"], e["length"], e["type"]])
    return merged


def check_tls_export(test, port, name, certs, data, scratch):
    """A TLS-only export on localhost:PORT holds `data`: qemu-img reads it
    with tls-creds-x509 from `certs` (into the file `scratch`), plaintext is
    refused (NBD_REP_ERR_TLS_REQD), nbdinfo sees TLS."""
    client_obj = f"tls-creds-x509,id=tls0,dir={certs},endpoint=client"
    opts = f"driver=nbd,host=localhost,port={port},export={name},tls-creds=tls0"
    info = run(QEMU_IMG, "info", "--output=json", "--object", client_obj, "--image-opts", opts)
    test.assertEqual(json.loads(info.stdout)["virtual-size"], len(data))
    run(QEMU_IMG, "convert", "--object", client_obj, "--image-opts", opts, "-O", "raw", scratch)
    test.assertEqual(read_bytes(scratch), data)
    p = run(QEMU_IMG, "info", f"nbd://localhost:{port}/{name}", check=False)
    test.assertNotEqual(p.returncode, 0)
    test.assertIn("TLS", p.stderr)
    if NBDINFO:
        tls_uri = f"nbds://localhost:{port}/{name}?tls-certificates={certs}"
        test.assertEqual(json.loads(run(NBDINFO, "--json", tls_uri).stdout)["TLS"], True)


class RawClient:
    """A bare NBD client over a socket: handshake and simple requests."""

    def __init__(self, sock_path=None, port=None):
        if sock_path:
            self.s = socket.socket(socket.AF_UNIX)
            self.s.connect(sock_path)
        else:
            self.s = socket.create_connection(("127.0.0.1", port))
        self.s.settimeout(10)
        magic, opt, flags = struct.unpack(">QQH", recv_exact(self.s, 18))
        assert magic == 0x4E42444D41474943 and opt == IHAVEOPT and flags & 1
        self.s.sendall(struct.pack(">I", 3))

    def option(self, code, data=b""):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, code, len(data)) + data)

    def reply(self):
        magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(self.s, 20))
        assert magic == REPLY_MAGIC
        return opt, rtype, recv_exact(self.s, length)

    def go(self, name=b""):
        self.option(7, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
        size = flags = None
        while True:
            _, rtype, data = self.reply()
            if rtype == 3 and struct.unpack(">H", data[:2])[0] == 0:
                size, flags = struct.unpack(">QH", data[2:])
            elif rtype == 1:
                return size, flags
            elif rtype & 0x80000000:
                raise AssertionError(f"GO refused: {rtype:#x} {data!r}")

    def request(self, cmd, offset, length, payload=b"", flags=0, cookie=1):
        self.s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie, offset, length) + payload)

    def simple_reply(self):
        magic, error, cookie = struct.unpack(">IIQ", recv_exact(self.s, 16))
        assert magic == SIMPLE_MAGIC, hex(magic)
        return error, cookie

    def closed(self):
        """Has the server closed the connection (EOF or reset)?"""
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return True

    def close(self):
        self.s.close()


@unittest.skipUnless(os.path.exists(EMU_NBD), "emu-nbd is not built")
@unittest.skipUnless(QEMU_IMG, "qemu-img is not installed")
class NbdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cls_dir = tempfile.mkdtemp(prefix="emu-nbd-certs-")
        cls.certs = None
        if OPENSSL:
            cls.certs = os.path.join(cls.cls_dir, "pki")
            os.mkdir(cls.certs)
            cls.make_certs(cls.certs)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.cls_dir, ignore_errors=True)

    @staticmethod
    def make_certs(d):
        """A CA, a server certificate for localhost/127.0.0.1 and a client
        certificate, with the key usages gnutls (qemu-img) checks."""
        def ssl(*args):
            run(OPENSSL, *args, cwd=d)
        with open(os.path.join(d, "ca.ext"), "w") as f:
            f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
        with open(os.path.join(d, "server.ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
        with open(os.path.join(d, "client.ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=clientAuth\n")
        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca-cert.pem",
            "-days", "2", "-subj", "/CN=emu test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        for who in ("server", "client"):
            ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}-key.pem", "-out", f"{who}.csr",
                "-subj", f"/CN=localhost/O=emu {who}")
            ssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}-cert.pem")

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="emu-nbd-test-")
        self.procs = []
        self.rng = random.Random(7)
        self.raw = self.path("disk.raw")
        data = bytearray(SIZE)
        for i in range(40):
            off = self.rng.randrange(SIZE)
            n = self.rng.randrange(1, 150000)
            end = min(SIZE, off + n)
            data[off:end] = self.rng.randbytes(end - off) if i % 2 else bytes([i + 1]) * (end - off)
        with open(self.raw, "wb") as f:
            f.write(data)
        # Punch holes where the data is zero, so block status has something to say.
        run("fallocate", "--dig-holes", self.raw, check=False)
        self.data = bytes(data)
        # The served image is locked (as by qemu-nbd): comparisons use a copy.
        self.ref = self.path("ref.raw")
        shutil.copy(self.raw, self.ref)

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    # --- servers -------------------------------------------------------------------

    def wait_ready(self, proc, sock=None, port=None):
        for _ in range(500):
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if sock:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(sock)
                        return
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.01)
        raise AssertionError("server did not start")

    def start(self, *args, sock=None, port=None, program=None, ready=True):
        """Starts emu-nbd (or another server) listening on a unix socket or a
        TCP port; a probe connection checks it listens (persistent servers only)."""
        cmd = [program or EMU_NBD, *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        if ready:
            self.wait_ready(proc, sock=sock, port=port)
        return proc

    def emu_nbd_unix(self, *args, image=None, name="disk"):
        sock = self.path(f"{name}-{len(self.procs)}.sock")
        self.start("-t", "-k", sock, "-x", name, *args, image or self.raw, sock=sock)
        return sock, f"nbd+unix:///{name}?socket={sock}"

    def emu_nbd_tcp(self, *args, image=None, name="disk"):
        port = free_port()
        self.start("-t", "-b", "127.0.0.1", "-p", str(port), "-x", name, *args, image or self.raw, port=port)
        return port, f"nbd://127.0.0.1:{port}/{name}"

    def stop(self, proc):
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0, proc.stderr.read())

    # --- real clients against emu-nbd ---------------------------------------------------

    @unittest.skipUnless(NBDINFO, "nbdinfo is not installed")
    def test_nbdinfo_list_and_details(self):
        sock, uri = self.emu_nbd_unix("-D", "a test disk", "-f", "raw")
        listing = json.loads(run(NBDINFO, "--list", "--json", uri).stdout)
        exports = listing["exports"]
        self.assertEqual(len(exports), 1)
        self.assertEqual(exports[0]["export-name"], "disk")
        self.assertEqual(exports[0]["description"], "a test disk")
        self.assertEqual(exports[0]["export-size"], SIZE)
        info = json.loads(run(NBDINFO, "--json", uri).stdout)
        self.assertEqual(info["protocol"], "newstyle-fixed")
        self.assertTrue(info["TLS"] is False)
        e = info["exports"][0]
        self.assertFalse(e["is_read_only"])
        self.assertTrue(e["can_flush"] and e["can_fua"] and e["can_trim"] and e["can_zero"] and e["can_df"])
        self.assertTrue(e["can_fast_zero"] and e["can_cache"])
        self.assertFalse(e["can_multi_conn"])  # -e 1: one client at a time
        self.assertEqual(e["block_size_maximum"], 32 * MiB)
        self.assertIn("base:allocation", e["contexts"])

    @unittest.skipUnless(QEMU_NBD, "qemu-nbd is not installed")
    def test_list_as_qemu_nbd_lists(self):
        sock, _ = self.emu_nbd_unix("-D", "a test disk", "-f", "raw", "-e", "0")
        self.assertEqual(run(EMU_NBD, "-L", "-k", sock).stdout, run(QEMU_NBD, "-L", "-k", sock).stdout)
        qsock = self.path("list.sock")
        self.start("-t", "-e", "4", "-k", qsock, "-x", "q", "-D", "qemu's", "-f", "raw", "-r", self.ref,
                   program=QEMU_NBD, sock=qsock)
        self.assertEqual(run(EMU_NBD, "-L", "-k", qsock).stdout, run(QEMU_NBD, "-L", "-k", qsock).stdout)

    @unittest.skipUnless(NBDINFO and QEMU_NBD, "nbdinfo or qemu-nbd is not installed")
    def test_nbdinfo_map_matches_qemu_nbd(self):
        qcow2 = self.path("disk.qcow2")
        run(QEMU_IMG, "convert", "-O", "qcow2", self.raw, qcow2)
        for image, fmt in ((self.raw, "raw"), (qcow2, "qcow2")):
            with self.subTest(format=fmt):
                _, ours = self.emu_nbd_unix("-r", "-f", fmt, image=image)
                qsock = self.path(f"q-{fmt}.sock")
                self.start("-t", "-r", "-k", qsock, "-x", "disk", "-f", fmt, image, program=QEMU_NBD, sock=qsock)
                theirs = f"nbd+unix:///disk?socket={qsock}"
                self.assertEqual(extents(ours), extents(theirs))

    @unittest.skipUnless(NBDCOPY, "nbdcopy is not installed")
    def test_nbdcopy_both_ways_raw_and_qcow2(self):
        _, uri = self.emu_nbd_unix("-f", "raw", "-e", "4")
        out = self.path("copy.raw")
        run(NBDCOPY, uri, out)
        self.assertEqual(read_bytes(out), self.data)
        for fmt in ("raw", "qcow2"):
            with self.subTest(format=fmt):
                target = self.path(f"target.{fmt}")
                run(QEMU_IMG, "create", "-q", "-f", fmt, target, str(SIZE))
                _, turi = self.emu_nbd_unix("-f", fmt, "-e", "0", "--discard=unmap", image=target, name=fmt)
                run(NBDCOPY, "--flush", self.ref, turi)
                self.stop(self.procs[-1])
                run(QEMU_IMG, "compare", "-f", "raw", "-F", fmt, self.ref, target)
                run(QEMU_IMG, "check", "-f", fmt, target) if fmt == "qcow2" else None
        # Several connections at once (multi-conn) in both directions.
        run(NBDCOPY, "--connections=4", uri, "null:")

    def test_qemu_img_over_tcp_and_unix(self):
        port, tcp = self.emu_nbd_tcp("-f", "raw", "-e", "0")
        second = self.path("second.raw")
        shutil.copy(self.ref, second)
        _, unix = self.emu_nbd_unix("-f", "raw", "-r", "-e", "0", image=second)
        for uri in (tcp, unix):
            with self.subTest(uri=uri):
                info = run(QEMU_IMG, "info", "--output=json", uri)
                self.assertEqual(json.loads(info.stdout)["virtual-size"], SIZE)
                out = self.path("out.raw")
                run(QEMU_IMG, "convert", "-O", "raw", uri, out)
                self.assertEqual(read_bytes(out), self.data)
                run(QEMU_IMG, "compare", "-F", "raw", self.ref, uri)
        # Writes through qemu-img land in the image.
        src = self.path("src.raw")
        with open(src, "wb") as f:
            f.write(bytes(range(256)) * (SIZE // 256))
        run(QEMU_IMG, "convert", "-n", "-f", "raw", "-O", "raw", src, tcp)
        self.stop(self.procs[0])
        self.assertEqual(read_bytes(self.raw), read_bytes(src))
        # A qcow2 image exported as its bytes: qemu-img probes qcow2 on top.
        qcow2 = self.path("img.qcow2")
        run(QEMU_IMG, "convert", "-O", "qcow2", src, qcow2)
        _, q = self.emu_nbd_unix("-f", "raw", "-r", image=qcow2, name="q")
        self.assertEqual(json.loads(run(QEMU_IMG, "info", "--output=json", q).stdout)["format"], "qcow2")
        run(QEMU_IMG, "compare", src, q)

    def test_read_only_export(self):
        _, uri = self.emu_nbd_unix("-r", "-f", "raw")
        if NBDINFO:
            self.assertEqual(run(NBDINFO, "--is", "read-only", uri, check=False).returncode, 0)
        p = run(QEMU_IMG, "convert", "-n", "-f", "raw", "-O", "raw", self.ref, uri, check=False)
        self.assertNotEqual(p.returncode, 0)
        p = run(EMU_IMG, "convert", "-n", "-f", "raw", "-O", "raw", self.ref, uri, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("read-only", p.stderr)
        self.assertEqual(read_bytes(self.raw), self.data)

    def test_multiple_clients(self):
        _, uri = self.emu_nbd_unix("-r", "-f", "raw", "-e", "8")
        procs = [subprocess.Popen([QEMU_IMG, "convert", "-O", "raw", uri, self.path(f"c{i}.raw")],
                                  stderr=subprocess.PIPE) for i in range(4)]
        for p in procs:
            self.assertEqual(p.wait(60), 0, p.stderr.read())
        for i in range(4):
            self.assertEqual(read_bytes(self.path(f"c{i}.raw")), self.data)

    @unittest.skipUnless(OPENSSL, "openssl is not installed")
    def test_tls(self):
        obj = f"tls-creds-x509,id=tls0,dir={self.certs},endpoint=server,verify-peer=off"
        port, _ = self.emu_nbd_tcp("-f", "raw", "-e", "0", "--object", obj, "--tls-creds", "tls0")
        check_tls_export(self, port, "disk", self.certs, self.data, self.path("tls.raw"))
        # Our own client with the same directory.
        p = run(EMU_IMG, "info", f"nbds://localhost:{port}/disk?tls-creds={self.certs}")
        self.assertIn(f"virtual size: 6 MiB ({SIZE} bytes)", p.stdout)

    @unittest.skipUnless(OPENSSL, "openssl is not installed")
    def test_tls_client_certificates(self):
        obj = f"tls-creds-x509,id=tls0,dir={self.certs},endpoint=server,verify-peer=on"
        sock, uri = self.emu_nbd_unix("-f", "raw", "-e", "0", "--object", obj, "--tls-creds", "tls0")
        # With the client certificate (in the same directory): accepted.
        run(EMU_IMG, "compare", "-f", "raw", self.ref, f"{uri}&tls-creds={self.certs}&tls-hostname=localhost")
        # Without one: refused; the server keeps serving.
        bare = self.path("bare")
        os.mkdir(bare)
        shutil.copy(os.path.join(self.certs, "ca-cert.pem"), bare)
        p = run(EMU_IMG, "info", f"{uri}&tls-creds={bare}", check=False)
        self.assertNotEqual(p.returncode, 0)
        run(EMU_IMG, "info", f"{uri}&tls-creds={self.certs}")

    # --- emu-img against qemu-nbd and nbdkit ------------------------------------------

    @unittest.skipUnless(QEMU_NBD, "qemu-nbd is not installed")
    def test_emu_img_against_qemu_nbd(self):
        qcow2 = self.path("disk.qcow2")
        run(QEMU_IMG, "convert", "-O", "qcow2", self.raw, qcow2)
        sock = self.path("q.sock")
        self.start("-t", "-k", sock, "-x", "disk", "-f", "qcow2", qcow2, program=QEMU_NBD, sock=sock)
        uri = f"nbd+unix:///disk?socket={sock}"
        ours = run(EMU_IMG, "info", uri).stdout
        theirs = run(QEMU_IMG, "info", uri).stdout
        self.assertEqual(ours, theirs)
        out = self.path("out.raw")
        run(EMU_IMG, "convert", "-O", "raw", uri, out)
        self.assertEqual(read_bytes(out), self.data)
        run(EMU_IMG, "compare", self.raw, uri)
        self.assertEqual(run(EMU_IMG, "map", "--output=json", uri).stdout,
                         run(QEMU_IMG, "map", "--output=json", uri).stdout)
        # Writes through our client into qemu-nbd's export.
        src = self.path("src.raw")
        with open(src, "wb") as f:
            f.write(self.rng.randbytes(SIZE))
        run(EMU_IMG, "convert", "-n", "-f", "raw", "-O", "raw", src, uri)
        run(QEMU_IMG, "compare", "-f", "raw", "-F", "raw", src, uri)
        # A missing export is named.
        p = run(EMU_IMG, "info", f"nbd+unix:///nope?socket={sock}", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("server refused export 'nope'", p.stderr)
        # The legacy syntax.
        run(EMU_IMG, "info", f"nbd:unix:{sock}:exportname=disk")

    @unittest.skipUnless(NBDKIT, "nbdkit is not installed")
    def test_emu_img_against_nbdkit(self):
        sock = self.path("kit.sock")
        self.start("-f", "-U", sock, "pattern", "size=4M", program=NBDKIT, sock=sock)
        out = self.path("pattern.raw")
        run(EMU_IMG, "convert", "-O", "raw", f"nbd+unix:///?socket={sock}", out)
        data = read_bytes(out)
        self.assertEqual(len(data), 4 * MiB)
        for off in (0, 8, 4096, 4 * MiB - 8):
            self.assertEqual(struct.unpack(">Q", data[off:off + 8])[0], off)
        msock = self.path("mem.sock")
        self.start("-f", "-U", msock, "memory", "size=6M", program=NBDKIT, sock=msock)
        muri = f"nbd+unix:///?socket={msock}"
        run(EMU_IMG, "convert", "-n", "-f", "raw", "-O", "raw", self.raw, muri)
        run(EMU_IMG, "compare", "-f", "raw", "-F", "raw", self.raw, muri)
        back = self.path("back.raw")
        run(EMU_IMG, "convert", "-O", "raw", muri, back)
        self.assertEqual(read_bytes(back), self.data)
        # nbdkit's memory plugin reports holes where nothing was written.
        emap = json.loads(run(EMU_IMG, "map", "--output=json", muri).stdout)
        self.assertEqual(sum(e["length"] for e in emap), SIZE)

    # --- emu-nbd options ---------------------------------------------------------

    def test_cli_errors(self):
        p = run(EMU_NBD, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("Invalid number of arguments", p.stderr)
        p = run(EMU_NBD, self.path("missing.raw"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("No such file or directory", p.stderr)
        if not os.path.exists("/dev/nbd0"):
            p = run(EMU_NBD, "-c", "/dev/nbd0", "-f", "raw", self.raw, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("/dev/nbd0", p.stderr)
            p = run(EMU_NBD, "-d", "/dev/nbd0", check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("/dev/nbd0", p.stderr)
        for opt in (["-A"], ["--bitmap", "b"], ["--tls-authz", "a"], ["-T", "x"]):
            p = run(EMU_NBD, *opt, self.raw, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("not supported", p.stderr)
        p = run(EMU_NBD, "-e", "x", self.raw, check=False)
        self.assertIn("Invalid shared device number 'x'", p.stderr)
        p = run(EMU_NBD, "--tls-creds", "nope", self.raw, check=False)
        self.assertIn("No TLS credentials with id 'nope'", p.stderr)
        p = run(EMU_NBD, "--detect-zeroes=unmap", self.raw, check=False)
        self.assertEqual(p.returncode, 1)

    def test_exits_after_the_last_client_unless_persistent(self):
        sock = self.path("once.sock")
        proc = self.start("-k", sock, "-f", "raw", self.raw, ready=False)
        for _ in range(500):
            if os.path.exists(sock):
                break
            time.sleep(0.01)
        run(EMU_IMG, "info", f"nbd+unix:///?socket={sock}")
        self.assertEqual(proc.wait(10), 0)
        self.assertFalse(os.path.exists(sock))

    def test_fork_and_pid_file(self):
        sock = self.path("fork.sock")
        pid_file = self.path("pid")
        # The server keeps stderr (as qemu-nbd does): not a pipe that would stay open.
        p = subprocess.run([EMU_NBD, "--fork", "--pid-file", pid_file, "-t", "-k", sock, "-f", "raw", self.raw],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        self.assertEqual(p.returncode, 0)
        pid = int(read_bytes(pid_file))
        try:
            run(EMU_IMG, "compare", "-f", "raw", self.ref, f"nbd+unix:///?socket={sock}")
        finally:
            os.kill(pid, signal.SIGTERM)
        for _ in range(500):
            if not os.path.exists(pid_file):
                break
            time.sleep(0.01)
        self.assertFalse(os.path.exists(pid_file))

    def test_snapshot_offset_and_internal_snapshots(self):
        # -s: writes go to a temporary overlay, the image is untouched.
        _, uri = self.emu_nbd_unix("-s", "-f", "raw")
        src = self.path("ones.raw")
        with open(src, "wb") as f:
            f.write(b"\1" * SIZE)
        run(EMU_IMG, "convert", "-n", "-f", "raw", "-O", "raw", src, uri)
        run(EMU_IMG, "compare", "-f", "raw", "-F", "raw", src, uri)
        self.assertEqual(read_bytes(self.raw), self.data)
        # -o: the export starts at an offset.
        _, ouri = self.emu_nbd_unix("-r", "-f", "raw", "-o", str(MiB), name="off")
        out = self.path("off.raw")
        run(EMU_IMG, "convert", "-O", "raw", ouri, out)
        self.assertEqual(read_bytes(out), self.data[MiB:])
        # -l: an internal snapshot, read-only.
        qcow2 = self.path("snap.qcow2")
        run(QEMU_IMG, "convert", "-O", "qcow2", self.raw, qcow2)
        run(QEMU_IMG, "snapshot", "-c", "before", qcow2)
        run(QEMU_IMG, "convert", "-n", "-f", "raw", "-O", "qcow2", src, qcow2)
        _, luri = self.emu_nbd_unix("-l", "before", "-f", "qcow2", image=qcow2, name="snap")
        snap = self.path("snap.raw")
        run(EMU_IMG, "convert", "-O", "raw", luri, snap)
        self.assertEqual(read_bytes(snap), self.data)

    def test_emu_img_info_and_map_over_nbd(self):
        _, uri = self.emu_nbd_unix("-r", "-f", "raw")
        info = run(EMU_IMG, "info", uri).stdout
        self.assertIn("file format: raw", info)
        self.assertIn("disk size: unavailable", info)
        j = json.loads(run(EMU_IMG, "info", "--output=json", uri).stdout)
        self.assertNotIn("actual-size", j)
        m = json.loads(run(EMU_IMG, "map", "--output=json", uri).stdout)
        self.assertEqual(sum(e["length"] for e in m), SIZE)
        self.assertTrue(any(e["data"] for e in m))

    # --- hostile input --------------------------------------------------------------

    def assert_still_serving(self, uri):
        run(EMU_IMG, "compare", "-f", "raw", self.ref, uri)

    def test_bad_input_over_raw_sockets(self):
        sock, uri = self.emu_nbd_unix("-f", "raw", "-e", "16")
        # Garbage instead of client flags and options.
        for junk in (b"\xff" * 4, b"\0\0\0\3" + b"GARBAGE!" * 8, b"\0\0\0\3" + b"\0" * 16):
            c = RawClient.__new__(RawClient)
            c.s = socket.socket(socket.AF_UNIX)
            c.s.connect(sock)
            c.s.settimeout(10)
            recv_exact(c.s, 18)
            c.s.sendall(junk)
            self.assertTrue(c.closed())
            c.close()
        # An oversize option is skipped with NBD_REP_ERR_TOO_BIG; unknown ones are refused.
        c = RawClient(sock)
        c.option(6, b"\0" * (1 * MiB))
        _, rtype, _ = c.reply()
        self.assertEqual(rtype, 0x80000009)
        c.option(12345, b"hello")
        self.assertEqual(c.reply()[1], 0x80000001)
        size, flags = c.go(b"disk")
        self.assertEqual(size, SIZE)
        # Requests past the end, too large, unknown: error replies, nothing written.
        c.request(1, SIZE - 512, 4096, payload=b"\xee" * 4096)
        self.assertEqual(c.simple_reply()[0], 28)  # ENOSPC
        c.request(0, SIZE, 512)
        self.assertEqual(c.simple_reply()[0], 22)  # EINVAL
        c.request(0, 0, 64 * MiB)
        self.assertEqual(c.simple_reply()[0], 22)
        c.request(6, 2 ** 63, 4096)
        self.assertEqual(c.simple_reply()[0], 28)
        c.request(77, 0, 0)
        self.assertEqual(c.simple_reply()[0], 22)
        # A write announcing more than 32 MiB: the server hangs up.
        c.request(1, 0, 64 * MiB)
        self.assertTrue(c.closed())
        c.close()
        # A write cut off in the middle of its payload.
        c = RawClient(sock)
        c.go(b"disk")
        c.request(1, 0, 65536, payload=b"\xaa" * 1000)
        c.close()
        # Half a request header.
        c = RawClient(sock)
        c.go(b"disk")
        c.s.sendall(struct.pack(">IHH", REQUEST_MAGIC, 0, 1))
        c.close()
        self.assert_still_serving(uri)
        self.assertEqual(read_bytes(self.raw), self.data)

    def test_connection_flood(self):
        sock, uri = self.emu_nbd_unix("-f", "raw", "-e", "8")
        conns = []
        for i in range(200):
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(sock)
            except BlockingIOError:
                pass  # in the listen backlog
            except OSError:
                s.close()
                continue
            if i % 3 == 0:
                try:
                    s.sendall(b"\0\0\0\3" + os.urandom(64))
                except OSError:
                    pass
            conns.append(s)
        # 8 clients are served (they get the greeting), 16 wait for a slot;
        # the rest are closed at once. None is left hanging beyond that.
        deadline = time.time() + 5
        state = {}
        while time.time() < deadline and len(state) < len(conns):
            pending = [s for s in conns if s not in state]
            readable, _, _ = select.select(pending, [], [], 0.2)
            for s in readable:
                try:
                    head = s.recv(8)
                except OSError:
                    head = b""
                state[s] = "greeted" if head == b"NBDMAGIC" else "closed"
            if not readable and len(conns) - len(state) <= 16:
                break
        counts = {k: list(state.values()).count(k) for k in ("greeted", "closed")}
        waiting = len(conns) - len(state)
        self.assertLessEqual(waiting, 16, counts)
        self.assertGreaterEqual(counts["closed"], 150, counts)
        for s in conns:
            s.close()
        # Once the flood has gone, a client is served again.
        self.assert_still_serving(uri)


if __name__ == "__main__":
    unittest.main()
