"""emu-img against the real qemu-img 7.2 on the same images.

Images qemu-img (and qemu-io, when installed) writes are read through
`emu-img convert -O raw` and must be byte-identical to `qemu-img convert -O
raw`; images emu-img writes must pass `qemu-img check` and compare equal with
`qemu-img compare`; `info`, `map`, `check` and `create` print what qemu-img
prints for the same image. Images are a few MiB so the file runs in seconds.
"""

import json
import os
import random
import shutil
import subprocess
import tempfile
import unittest

BUILD = os.environ.get("EMUD_BUILD_DIR",
                       os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
EMU_IMG = os.path.join(BUILD, "clients", "emu-img")
QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")
MiB = 1024 * 1024


def run(*args, check=True):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


@unittest.skipUnless(QEMU_IMG, "qemu-img is not installed")
@unittest.skipUnless(os.path.exists(EMU_IMG), "emu-img is not built")
class EmuImgTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="emu-img-test-")
        self.rng = random.Random(42)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def raw_with_holes(self, name, size=3 * MiB + 12345):
        """Random-ish data: runs of random bytes, runs of a pattern, and holes."""
        data = bytearray(size)
        for i in range(60):
            off = self.rng.randrange(size)
            n = self.rng.randrange(1, 70000)
            end = min(size, off + n)
            if i % 3:
                data[off:end] = self.rng.randbytes(end - off)
            else:
                data[off:end] = bytes([i + 1]) * (end - off)
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def assert_same_as_qemu(self, image):
        """emu-img and qemu-img read the image to identical raw bytes."""
        ours, theirs = self.path("ours.raw"), self.path("theirs.raw")
        run(EMU_IMG, "convert", "-O", "raw", image, ours)
        run(QEMU_IMG, "convert", "-O", "raw", image, theirs)
        self.assertEqual(read_bytes(ours), read_bytes(theirs), f"contents of {image} differ")
        os.unlink(ours)
        os.unlink(theirs)

    def assert_qemu_accepts(self, image, reference):
        p = run(QEMU_IMG, "check", image, check=False)
        self.assertEqual(p.returncode, 0, f"qemu-img check {image}:\n{p.stdout}{p.stderr}")
        run(QEMU_IMG, "compare", reference, image)

    def qemu_io(self, image, *commands):
        args = [QEMU_IO, "-f", "qcow2"]
        for c in commands:
            args += ["-c", c]
        run(*args, image)

    # --- reading qemu's images -------------------------------------------------

    def test_read_qemu_images_all_cluster_sizes(self):
        src = self.raw_with_holes("src.raw")
        for compat in ("0.10", "1.1"):
            for cluster in ("512", "4k", "64k", "2M"):
                with self.subTest(compat=compat, cluster=cluster):
                    img = self.path(f"q-{compat}-{cluster}.qcow2")
                    run(QEMU_IMG, "convert", "-O", "qcow2", "-o", f"compat={compat},cluster_size={cluster}", src, img)
                    self.assert_same_as_qemu(img)

    def test_read_qemu_compressed(self):
        src = self.raw_with_holes("src.raw")
        for ctype in ("zlib", "zstd"):
            with self.subTest(compression=ctype):
                img = self.path(f"c-{ctype}.qcow2")
                run(QEMU_IMG, "convert", "-c", "-O", "qcow2", "-o", f"compression_type={ctype}", src, img)
                self.assert_same_as_qemu(img)

    def test_read_qemu_zero_clusters_and_subclusters(self):
        if not QEMU_IO:
            print("note: qemu-io is not installed; zero clusters written by qemu-io are not tested")
            self.skipTest("qemu-io not installed")
        for opts in ("compat=1.1", "compat=0.10", "extended_l2=on,cluster_size=64k"):
            with self.subTest(opts=opts):
                base = self.path("zbase.qcow2")
                img = self.path("z.qcow2")
                run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", opts, base, "4M")
                self.qemu_io(base, "write -P 0x11 0 1M", "write -P 0x22 1536k 100k")
                run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", opts, "-b", "zbase.qcow2", "-F", "qcow2", img)
                self.qemu_io(img, "write -z 64k 128k", "write -P 0x33 5k 3k", "write -z 1540k 8k",
                             "discard 2M 64k", "write -P 0x44 3M 1k")
                self.assert_same_as_qemu(img)

    def test_read_backing_chains_with_relative_names(self):
        src = self.raw_with_holes("src.raw", 2 * MiB)
        os.mkdir(self.path("sub"))
        base = self.path("base.qcow2")
        run(QEMU_IMG, "convert", "-O", "qcow2", src, base)
        mid = self.path("sub/mid.qcow2")
        run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", "../base.qcow2", "-F", "qcow2", mid)
        top = self.path("sub/top.qcow2")
        run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "mid.qcow2", "-F", "qcow2", top)
        if QEMU_IO:
            self.qemu_io(mid, "write -P 0x55 100k 70k")
            self.qemu_io(top, "write -P 0x66 130k 9k")
        self.assert_same_as_qemu(top)
        ours = run(EMU_IMG, "map", "--output=json", top).stdout
        theirs = run(QEMU_IMG, "map", "--output=json", top).stdout
        self.assertEqual(ours, theirs)

    # --- images emu-img writes -------------------------------------------------

    def test_emu_img_images_pass_qemu_check(self):
        src = self.raw_with_holes("src.raw")
        cases = [
            ["-o", "compat=0.10"],
            ["-o", "cluster_size=512"],
            ["-o", "cluster_size=2M"],
            ["-o", "refcount_bits=1,cluster_size=4k"],
            ["-o", "refcount_bits=64,cluster_size=512"],
            ["-o", "lazy_refcounts=on"],
            ["-c"],
            ["-c", "-o", "compression_type=zstd"],
            ["-S", "0"],
        ]
        for extra in cases:
            with self.subTest(options=extra):
                img = self.path("e.qcow2")
                if os.path.exists(img):
                    os.unlink(img)
                run(EMU_IMG, "convert", "-O", "qcow2", *extra, src, img)
                self.assert_qemu_accepts(img, src)
        # qcow2 -> raw through emu-img too.
        out = self.path("back.raw")
        run(EMU_IMG, "convert", "-f", "qcow2", "-O", "raw", img, out)
        run(QEMU_IMG, "compare", src, out)

    def test_emu_img_backing_and_convert_B(self):
        src = self.raw_with_holes("src.raw", 2 * MiB)
        base = self.path("base.qcow2")
        run(EMU_IMG, "convert", "-O", "qcow2", src, base)
        changed = bytearray(read_bytes(src))
        changed[5000:9000] = b"\x77" * 4000
        changed[MiB:MiB + 100] = b"\x00" * 100
        mod = self.path("mod.raw")
        with open(mod, "wb") as f:
            f.write(changed)
        top = self.path("top.qcow2")
        run(EMU_IMG, "convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", mod, top)
        self.assert_qemu_accepts(top, mod)
        info = json.loads(run(QEMU_IMG, "info", "--output=json", top).stdout)
        self.assertEqual(info["backing-filename"], "base.qcow2")
        # Only the changed clusters live in the overlay.
        self.assertLess(os.path.getsize(top), os.path.getsize(base))
        # emu-img create -b: the size comes from the backing file.
        over = self.path("over.qcow2")
        run(EMU_IMG, "create", "-q", "-f", "qcow2", "-b", "top.qcow2", "-F", "qcow2", over)
        self.assert_qemu_accepts(over, mod)
        self.assert_same_as_qemu(over)

    # --- same output as qemu-img -----------------------------------------------

    def test_info_matches_qemu(self):
        src = self.raw_with_holes("src.raw", MiB)
        images = []
        for name, opts in (("v2.qcow2", "compat=0.10"), ("v3.qcow2", "compat=1.1,lazy_refcounts=on"),
                           ("zstd.qcow2", "compression_type=zstd,refcount_bits=8")):
            run(QEMU_IMG, "convert", "-O", "qcow2", "-o", opts, src, self.path(name))
            images.append(name)
        run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", "v3.qcow2", "-F", "qcow2", self.path("top.qcow2"))
        images += ["top.qcow2", "src.raw"]
        for name in images:
            for args in (["--output=json"], [], ["--backing-chain", "--output=json"], ["--backing-chain"]):
                with self.subTest(image=name, args=args):
                    theirs = subprocess.run([QEMU_IMG, "info", *args, name], capture_output=True, text=True,
                                            cwd=self.dir)
                    ours = subprocess.run([EMU_IMG, "info", *args, name], capture_output=True, text=True,
                                          cwd=self.dir)
                    self.assertEqual(ours.returncode, 0, ours.stderr)
                    if "--output=json" in args:
                        self.assertEqual(json.loads(ours.stdout), json.loads(theirs.stdout))
                        self.assertEqual(list(json.loads(ours.stdout)), list(json.loads(theirs.stdout)),
                                         "key order")
                    else:
                        self.assertEqual(ours.stdout, theirs.stdout)

    def test_map_matches_qemu(self):
        img = self.path("m.qcow2")
        run(QEMU_IMG, "convert", "-O", "qcow2", self.raw_with_holes("src.raw", 2 * MiB), img)
        for args in (["--output=json"], []):
            ours = run(EMU_IMG, "map", *args, img).stdout
            theirs = run(QEMU_IMG, "map", *args, img).stdout
            self.assertEqual(ours, theirs)

    def test_check_leak_and_repair(self):
        img = self.path("leak.qcow2")
        run(EMU_IMG, "convert", "-O", "qcow2", self.raw_with_holes("src.raw", MiB), img)
        p = run(EMU_IMG, "check", img)
        self.assertIn("No errors were found on the image.", p.stdout)
        # Plant a leak: append a cluster and give it refcount 1 in refcount block 0.
        with open(img, "r+b") as f:
            head = f.read(112)
            reftable = int.from_bytes(head[48:56], "big")
            f.seek(0, os.SEEK_END)
            cluster = (f.tell() + 65535) // 65536
            f.seek(cluster * 65536)
            f.write(b"\x5a" * 65536)
            f.seek(reftable)
            block = int.from_bytes(f.read(8), "big")
            f.seek(block + cluster * 2)
            f.write((1).to_bytes(2, "big"))
        for tool in (QEMU_IMG, EMU_IMG):
            p = run(tool, "check", img, check=False)
            self.assertEqual(p.returncode, 3, f"{tool}: {p.stdout}{p.stderr}")
        ours = run(EMU_IMG, "check", img, check=False)
        theirs = run(QEMU_IMG, "check", img, check=False)
        self.assertEqual(ours.stdout, theirs.stdout)
        self.assertIn(f"Leaked cluster {cluster} refcount=1 reference=0", ours.stderr)
        ours = run(EMU_IMG, "check", "--output=json", img, check=False)
        theirs = run(QEMU_IMG, "check", "--output=json", img, check=False)
        self.assertEqual(json.loads(ours.stdout), json.loads(theirs.stdout))
        p = run(EMU_IMG, "check", "-r", "leaks", img, check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("1 leaked clusters", p.stdout)
        run(QEMU_IMG, "check", img)
        run(EMU_IMG, "check", img)

    def test_compare_exit_codes(self):
        a = self.path("a.qcow2")
        src = self.raw_with_holes("src.raw", MiB)
        run(EMU_IMG, "convert", "-O", "qcow2", src, a)
        self.assertEqual(run(EMU_IMG, "compare", src, a).stdout, "Images are identical.\n")
        data = bytearray(read_bytes(src))
        data[777777] ^= 0xff
        b = self.path("b.raw")
        with open(b, "wb") as f:
            f.write(data)
        for tool in (EMU_IMG, QEMU_IMG):
            p = run(tool, "compare", a, b, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertEqual(p.stdout, f"Content mismatch at offset {777777 // 512 * 512}!\n")
        bigger = self.path("big.qcow2")
        run(EMU_IMG, "create", "-q", "-f", "qcow2", bigger, "2M")
        empty = self.path("empty.raw")
        run(EMU_IMG, "create", "-q", "-f", "raw", empty, "1M")
        for tool in (EMU_IMG, QEMU_IMG):
            p = run(tool, "compare", empty, bigger, check=False)
            self.assertEqual((p.returncode, p.stdout), (0, "Warning: Image size mismatch!\nImages are identical.\n"))
            p = run(tool, "compare", "-s", empty, bigger, check=False)
            self.assertEqual((p.returncode, p.stdout), (1, "Strict mode: Image size mismatch!\n"))
        p = run(EMU_IMG, "compare", a, self.path("missing"), check=False)
        self.assertEqual(p.returncode, 2)

    def test_create_prints_like_qemu(self):
        cases = [
            ["-f", "qcow2"],
            ["-f", "qcow2", "-o", "compat=0.10,cluster_size=4k"],
            ["-f", "qcow2", "-o", "preallocation=metadata,lazy_refcounts=on,refcount_bits=8,compression_type=zstd"],
            ["-f", "raw"],
            ["-f", "raw", "-o", "preallocation=falloc"],
        ]
        for i, args in enumerate(cases):
            with self.subTest(args=args):
                ours = subprocess.run([EMU_IMG, "create", *args, f"x{i}.img", "1M"], capture_output=True,
                                      text=True, cwd=self.dir)
                theirs = subprocess.run([QEMU_IMG, "create", *args, f"y{i}.img", "1M"], capture_output=True,
                                        text=True, cwd=self.dir)
                self.assertEqual(ours.returncode, 0, ours.stderr)
                self.assertEqual(ours.stdout.replace(f"x{i}.img", "IMG"), theirs.stdout.replace(f"y{i}.img", "IMG"))
                run(QEMU_IMG, "check", self.path(f"x{i}.img"), check=False)
                if "qcow2" in args:
                    run(QEMU_IMG, "check", self.path(f"x{i}.img"))
        p = subprocess.run([EMU_IMG, "create", "-f", "qcow2", "-b", "x0.img", "bad.qcow2"], capture_output=True,
                           text=True, cwd=self.dir)
        self.assertEqual(p.returncode, 1)
        self.assertIn("Backing file specified without backing format", p.stderr)
        p = run(EMU_IMG, "create", "-f", "qcow2", self.path("bad.qcow2"), "1Q", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("Invalid image size specified", p.stderr)

    def test_refusals(self):
        for sub in ("bitmap",):
            p = run(EMU_IMG, sub, "x", check=False)
            self.assertEqual(p.returncode, 1)
            self.assertEqual(p.stderr, f"emu-img: {sub}: not supported yet\n")
        vmdk = self.path("a.vmdk")
        run(QEMU_IMG, "create", "-q", "-f", "vmdk", vmdk, "1M")
        p = run(EMU_IMG, "info", vmdk, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("image format 'vmdk' is not supported yet", p.stderr)

    def test_locking_against_qemu(self):
        if not QEMU_IO:
            self.skipTest("qemu-io not installed")
        img = self.path("lock.qcow2")
        run(EMU_IMG, "create", "-q", "-f", "qcow2", img, "1M")
        # qemu-io keeps the image open for writing while it waits on stdin.
        holder = subprocess.Popen([QEMU_IO, "-f", "qcow2", img], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        try:
            holder.stdin.write(b"write 0 512\n")
            holder.stdin.flush()
            holder.stdout.readline()
            p = run(EMU_IMG, "info", img, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn('lock', p.stderr)
            run(EMU_IMG, "info", "-U", img)
            p = run(EMU_IMG, "check", "-r", "leaks", img, check=False)
            self.assertEqual(p.returncode, 1)
        finally:
            holder.stdin.write(b"quit\n")
            holder.stdin.close()
            holder.wait(timeout=10)
            holder.stdout.close()
            holder.stderr.close()
        run(EMU_IMG, "info", img)


if __name__ == "__main__":
    unittest.main()
