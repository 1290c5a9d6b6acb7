"""emu-img's image operations against the real qemu-img 7.2 on the same images.

snapshot, resize, commit, rebase, amend, measure, dd and bench: what emu-img
writes passes `qemu-img check` and reads back (through qemu-img) as expected;
what qemu-img writes, emu-img reads and changes the same way; output text,
JSON and exit codes match qemu-img's (the program name aside). Images are a
few MiB so the file runs in seconds.
"""

import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import unittest

BUILD = os.environ.get("EMUD_BUILD_DIR",
                       os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
EMU_IMG = os.path.join(BUILD, "clients", "emu-img")
QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")
QEMU_SYSTEM = shutil.which("qemu-system-x86_64")
MiB = 1024 * 1024


def run(*args, check=True, cwd=None, input=None):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=cwd, input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {p.returncode}\n"
                             f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def normalized(text):
    """qemu-img's and emu-img's messages with the program name taken out."""
    return text.replace("qemu-img", "TOOL").replace("emu-img", "TOOL")


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


@unittest.skipUnless(QEMU_IMG and QEMU_IO, "qemu-img and qemu-io are not installed")
@unittest.skipUnless(os.path.exists(EMU_IMG), "emu-img is not built")
class EmuImgOpsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="emu-img-ops-")
        self.rng = random.Random(7)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def qemu_io(self, image, *commands, fmt="qcow2"):
        args = [QEMU_IO, "-f", fmt]
        for c in commands:
            args += ["-c", c]
        run(*args, image)

    def contents(self, image, fmt=None):
        """The guest-visible bytes, as qemu-img reads them."""
        out = self.path("contents.raw")
        run(QEMU_IMG, "convert", *(["-f", fmt] if fmt else []), "-O", "raw", image, out)
        data = read_bytes(out)
        os.unlink(out)
        return data

    def assert_clean(self, image):
        p = run(QEMU_IMG, "check", image, check=False)
        self.assertEqual(p.returncode, 0, f"qemu-img check {image}:\n{p.stdout}{p.stderr}")
        p = run(EMU_IMG, "check", image, check=False)
        self.assertEqual(p.returncode, 0, f"emu-img check {image}:\n{p.stdout}{p.stderr}")

    def assert_same_result(self, args, cwd=None):
        """emu-img and qemu-img given the same arguments: same exit code, output and messages."""
        ours = run(EMU_IMG, *args, check=False, cwd=cwd)
        theirs = run(QEMU_IMG, *args, check=False, cwd=cwd)
        self.assertEqual((ours.returncode, normalized(ours.stdout), normalized(ours.stderr)),
                         (theirs.returncode, normalized(theirs.stdout), normalized(theirs.stderr)), args)
        return ours

    # --- snapshot ----------------------------------------------------------------

    def test_snapshot_emu_creates_qemu_applies(self):
        for opts in ("compat=1.1", "compat=0.10,cluster_size=4k", "cluster_size=512,refcount_bits=8"):
            with self.subTest(opts=opts):
                img = self.path("s.qcow2")
                run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", opts, img, "2M")
                self.qemu_io(img, "write -P 0x11 0 300k")
                run(EMU_IMG, "snapshot", "-c", "one", img)
                self.assert_clean(img)
                first = self.contents(img)
                self.qemu_io(img, "write -P 0x22 100k 1M", "write -z 0 4k")
                run(EMU_IMG, "snapshot", "-c", "two", img)
                self.assert_clean(img)
                second = self.contents(img)
                self.qemu_io(img, "write -P 0x33 1536k 64k")
                self.assertEqual(run(EMU_IMG, "snapshot", "-l", img).stdout,
                                 run(QEMU_IMG, "snapshot", "-l", img).stdout)
                ours = json.loads(run(EMU_IMG, "info", "--output=json", img).stdout)
                theirs = json.loads(run(QEMU_IMG, "info", "--output=json", img).stdout)
                ours.pop("actual-size")
                theirs.pop("actual-size")
                self.assertEqual(ours, theirs)
                run(QEMU_IMG, "snapshot", "-a", "one", img)
                self.assertEqual(self.contents(img), first)
                self.assert_clean(img)
                run(QEMU_IMG, "snapshot", "-a", "2", img)
                self.assertEqual(self.contents(img), second)
                run(QEMU_IMG, "snapshot", "-d", "one", img)
                self.assert_clean(img)
                os.unlink(img)

    def test_snapshot_qemu_creates_emu_applies_and_deletes(self):
        img = self.path("q.qcow2")
        run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", img, "3M")
        self.qemu_io(img, "write -P 0x44 0 1M")
        run(QEMU_IMG, "snapshot", "-c", "base", img)
        base = self.contents(img)
        self.qemu_io(img, "write -P 0x55 512k 1M", "discard 0 64k")
        run(QEMU_IMG, "snapshot", "-c", "later", img)
        later = self.contents(img)
        self.qemu_io(img, "write -P 0x66 2M 100k")
        self.assertEqual(run(EMU_IMG, "snapshot", "-l", img).stdout, run(QEMU_IMG, "snapshot", "-l", img).stdout)
        run(EMU_IMG, "snapshot", "-a", "base", img)
        self.assertEqual(self.contents(img), base)
        self.assert_clean(img)
        run(EMU_IMG, "snapshot", "-a", "later", img)
        self.assertEqual(self.contents(img), later)
        self.assert_clean(img)
        run(EMU_IMG, "snapshot", "-d", "base", img)
        self.assert_clean(img)
        self.assertEqual(self.contents(img), later)
        self.qemu_io(img, "write -P 0x77 0 2M")
        run(EMU_IMG, "snapshot", "-d", "later", img)
        self.assert_clean(img)
        self.assertEqual(run(EMU_IMG, "snapshot", "-l", img).stdout, "")

    def test_snapshot_messages_and_exit_codes(self):
        img = self.path("m.qcow2")
        run(QEMU_IMG, "create", "-q", "-f", "qcow2", img, "1M")
        run(QEMU_IMG, "snapshot", "-c", "s", img)
        raw = self.path("r.raw")
        run(QEMU_IMG, "create", "-q", "-f", "raw", raw, "1M")
        for args in (["-a", "nope", "m.qcow2"], ["-d", "nope", "m.qcow2"], ["-l", "-c", "x", "m.qcow2"],
                     ["-l"], ["-l", "m.qcow2", "extra"], ["-c"], ["-c", "x", "-U", "m.qcow2"],
                     ["m.qcow2"], ["-q", "-l", "m.qcow2"], ["-l", "-U", "m.qcow2"], ["-l", "missing.qcow2"]):
            with self.subTest(args=args):
                self.assert_same_result(["snapshot", *args], cwd=self.dir)
        # raw: qemu-img adds a probing warning we do not print; compare the error line.
        for action, name in (("-c", "create"), ("-a", "apply"), ("-d", "delete")):
            ours = run(EMU_IMG, "snapshot", action, "x", raw, check=False)
            theirs = run(QEMU_IMG, "snapshot", action, "x", raw, check=False)
            self.assertEqual(ours.returncode, theirs.returncode)
            self.assertEqual(normalized(ours.stderr).splitlines()[-1], normalized(theirs.stderr).splitlines()[-1])

    @unittest.skipUnless(QEMU_SYSTEM, "qemu-system-x86_64 is not installed")
    def test_snapshot_with_vm_state_from_qemu(self):
        """QEMU's savevm writes VM state; emu-img's snapshot operations keep it loadable."""
        img = self.path("vm.qcow2")
        run(QEMU_IMG, "create", "-q", "-f", "qcow2", img, "4M")
        self.qemu_io(img, "write -P 0x12 0 1M")

        def monitor(*commands):
            p = run(QEMU_SYSTEM, "-M", "none", "-nodefaults", "-display", "none", "-S", "-monitor", "stdio",
                    "-drive", f"file={img},if=none,id=d0,format=qcow2", input="\n".join(commands) + "\nquit\n")
            return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", p.stdout)

        monitor("savevm vm1")
        info = json.loads(run(EMU_IMG, "info", "--output=json", img).stdout)
        self.assertGreater(info["snapshots"][0]["vm-state-size"], 0)
        self.assertEqual(info, json.loads(run(QEMU_IMG, "info", "--output=json", img).stdout))
        self.qemu_io(img, "write -P 0x34 0 2M")
        run(EMU_IMG, "snapshot", "-c", "disk-only", img)
        self.qemu_io(img, "write -P 0x56 1M 1M")
        self.assert_clean(img)
        out = monitor("loadvm vm1")
        self.assertNotIn("Error", out)
        self.assertEqual(self.contents(img), b"\x12" * MiB + bytes(3 * MiB))
        run(EMU_IMG, "snapshot", "-a", "disk-only", img)
        run(EMU_IMG, "snapshot", "-d", "vm1", img)
        self.assert_clean(img)
        self.assertEqual(self.contents(img), b"\x34" * (2 * MiB) + bytes(2 * MiB))


    # --- side by side: each tool on its own copy -------------------------------------

    def twin(self, setup, *steps, compare_output=True):
        """Runs setup(dir) in two directories, then each step (an argument list) with emu-img in one and qemu-img
        in the other; checks that exit codes and output match (times aside). Returns the two directories."""
        dirs = {}
        self.tearDown_twins()
        for tool in ("emu", "qemu"):
            d = self.path(tool)
            os.mkdir(d)
            setup(d)
            dirs[tool] = d
        for args in steps:
            ours = run(EMU_IMG, *args, check=False, cwd=dirs["emu"])
            theirs = run(QEMU_IMG, *args, check=False, cwd=dirs["qemu"])
            if compare_output:
                # Times differ, and so do how many progress lines are printed on the way to 100%.
                def clean(text):
                    text = re.sub(r"in [0-9.]+ seconds", "in T seconds", normalized(text))
                    return re.sub(r"( +\(\d+\.\d\d/100%\)\n)+", "    (PROGRESS)\n", text)
                self.assertEqual((ours.returncode, clean(ours.stdout), clean(ours.stderr)),
                                 (theirs.returncode, clean(theirs.stdout), clean(theirs.stderr)), args)
            else:
                self.assertEqual(ours.returncode, theirs.returncode, (args, ours.stderr, theirs.stderr))
        return dirs["emu"], dirs["qemu"]

    def assert_twins_equal(self, emu_dir, qemu_dir, *names, fmt=None):
        for name in names:
            ours, theirs = os.path.join(emu_dir, name), os.path.join(qemu_dir, name)
            if not fmt or fmt == "qcow2":
                if json.loads(run(QEMU_IMG, "info", "--output=json", theirs).stdout)["format"] == "qcow2":
                    self.assert_clean(ours)
            self.assertEqual(self.contents(ours, fmt), self.contents(theirs, fmt), name)
            info = [json.loads(run(QEMU_IMG, "info", "--output=json", p).stdout) for p in (ours, theirs)]
            for i in info:
                for key in ("filename", "actual-size", "snapshots", "full-backing-filename"):
                    i.pop(key, None)
            self.assertEqual(info[0], info[1], name)

    def tearDown_twins(self):
        for tool in ("emu", "qemu"):
            shutil.rmtree(self.path(tool), ignore_errors=True)

    # --- resize ----------------------------------------------------------------------

    def test_resize_like_qemu(self):
        cases = [
            ("qcow2", "compat=1.1"), ("qcow2", "compat=0.10,cluster_size=4k"), ("qcow2", "cluster_size=512"),
            ("raw", None),
        ]
        for fmt, opts in cases:
            with self.subTest(fmt=fmt, opts=opts):
                def setup(d):
                    img = os.path.join(d, "img")
                    run(QEMU_IMG, "create", "-q", "-f", fmt, *(["-o", opts] if opts else []), img, "1M")
                    self.qemu_io(img, "write -P 0x21 0 1M", fmt=fmt)
                f = ["-f", fmt]
                steps = [
                    ["resize", *f, "img", "+1M"], ["resize", *f, "img", "-512k"],
                    ["resize", *f, "--shrink", "img", "-512k"],
                    ["resize", *f, "-q", "--shrink", "img", "1000"], ["resize", *f, "--shrink", "img", "1000k"],
                    ["resize", *f, "img", "1000k"], ["resize", *f, "img", "--", "-5G"], ["resize", *f, "img", "abc"],
                    ["resize", *f, "img"], ["resize", *f, "--preallocation=bogus", "img", "2M"],
                    ["resize", *f, "--preallocation=falloc", "img", "3M"],
                    ["resize", *f, "--preallocation=full", "--shrink", "img", "2M"],
                    ["resize", *f, "--shrink", "img", "768k"],
                    # qemu-img takes minutes to shrink gigabytes of 512-byte clusters.
                    ["resize", *f, "img", "50M" if opts and "512" in opts else "5G"],
                ]
                if fmt == "qcow2":
                    big = "100M" if "512" in opts else "5200M"
                    steps += [["resize", *f, "--preallocation=metadata", "img", big],
                              ["resize", *f, "--shrink", "img", "3M"]]
                else:
                    steps += [["resize", *f, "--preallocation=metadata", "img", "6G"],
                              ["resize", *f, "--shrink", "img", "3M"]]
                ours, theirs = self.twin(setup, *steps)
                self.assert_twins_equal(ours, theirs, "img", fmt=fmt)

    def test_resize_qcow2_with_snapshots_and_backing(self):
        def setup(d):
            base, img = os.path.join(d, "base"), os.path.join(d, "img")
            run(QEMU_IMG, "create", "-q", "-f", "qcow2", base, "4M")
            self.qemu_io(base, "write -P 0x31 0 4M")
            run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", "base", "-F", "qcow2", img, "1M")
            self.qemu_io(img, "write -P 0x32 512k 100k")
            run(QEMU_IMG, "snapshot", "-c", "s", img)
            v2 = os.path.join(d, "v2")
            run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", v2, "1M")
            run(QEMU_IMG, "snapshot", "-c", "s", v2)
        ours, theirs = self.twin(setup, ["resize", "img", "3M"], ["resize", "--shrink", "img", "1536k"],
                                 ["resize", "v2", "2M"])
        self.assert_twins_equal(ours, theirs, "img")
        # The new area reads as zeroes, not as the longer backing file.
        self.assertEqual(self.contents(os.path.join(ours, "img"))[1 * MiB:], bytes(MiB // 2))
        for d in (ours, theirs):
            run(QEMU_IMG, "snapshot", "-a", "s", os.path.join(d, "img"))
        self.assert_twins_equal(ours, theirs, "img")

    # --- commit ----------------------------------------------------------------------

    def chain_setup(self, d):
        base, mid, top = (os.path.join(d, n) for n in ("base.qcow2", "mid.qcow2", "top.qcow2"))
        run(QEMU_IMG, "create", "-q", "-f", "qcow2", base, "4M")
        self.qemu_io(base, "write -P 1 0 2M")
        run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "base.qcow2", "-F", "qcow2", mid)
        self.qemu_io(mid, "write -P 2 1M 1M", "write -z 3M 8k")
        run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top, "6M")
        self.qemu_io(top, "write -P 3 3M 2M", "write -z 0 64k", "write -P 4 100k 1k")

    def test_commit_like_qemu(self):
        steps = [
            ["commit", "-b", "base.qcow2", "top.qcow2"],
            ["commit", "-p", "top.qcow2"],
            ["commit", "-q", "-d", "top.qcow2"],
            ["commit", "-b", "nope", "top.qcow2"], ["commit", "-b", "top.qcow2", "top.qcow2"],
            ["commit", "-r", "x", "top.qcow2"], ["commit", "-t", "bogus", "top.qcow2"], ["commit"],
            ["commit", "-f", "raw", "plain.raw"],
        ]

        def setup(d):
            self.chain_setup(d)
            run(QEMU_IMG, "create", "-q", "-f", "raw", os.path.join(d, "plain.raw"), "1M")
        ours, theirs = self.twin(setup, *steps)
        self.assert_twins_equal(ours, theirs, "base.qcow2", "mid.qcow2", "top.qcow2")
        # Where each range comes from (host offsets aside: the two tools place clusters differently).
        def layout(d):
            merged = []
            for e in json.loads(run(EMU_IMG, "map", "--output=json", "top.qcow2", cwd=d).stdout):
                e.pop("offset", None)
                last = merged[-1] if merged else None
                if last and all(last[k] == e[k] for k in ("depth", "present", "zero", "data")):
                    last["length"] += e["length"]
                else:
                    merged.append(e)
            return merged
        self.assertEqual(layout(ours), layout(theirs))
        # -d keeps the top; a rate limit slows it down but gives the same result.
        ours, theirs = self.twin(self.chain_setup, ["commit", "-d", "-r", "64M", "mid.qcow2"])
        self.assert_twins_equal(ours, theirs, "base.qcow2", "mid.qcow2", "top.qcow2")

    # --- rebase ----------------------------------------------------------------------

    def test_rebase_like_qemu(self):
        def setup(d):
            self.chain_setup(d)
            other = os.path.join(d, "other.qcow2")
            run(QEMU_IMG, "create", "-q", "-f", "qcow2", other, "5M")
            self.qemu_io(other, "write -P 1 0 1M", "write -P 9 1536k 1M")
        steps = [
            ["rebase", "-b", "other.qcow2", "top.qcow2"], ["rebase", "top.qcow2"],
            ["rebase", "-b", "missing.qcow2", "-F", "qcow2", "top.qcow2"],
            ["rebase", "-b", "other.qcow2", "-F", "qcow2", "top.qcow2"],
            ["rebase", "-u", "-b", "base.qcow2", "-F", "qcow2", "mid.qcow2"],
            ["rebase", "-b", "", "mid.qcow2"],
            ["rebase", "-u", "-b", "gone.qcow2", "-F", "qcow2", "base.qcow2"],
        ]
        ours, theirs = self.twin(setup, *steps)
        self.assert_twins_equal(ours, theirs, "top.qcow2", "mid.qcow2", "other.qcow2")
        for d in (ours, theirs):
            info = json.loads(run(QEMU_IMG, "info", "-U", "--output=json", "base.qcow2", cwd=d).stdout)
            self.assertEqual((info["backing-filename"], info["backing-filename-format"]), ("gone.qcow2", "qcow2"))

    # --- amend -----------------------------------------------------------------------

    def test_amend_like_qemu(self):
        def setup(d):
            base, img = os.path.join(d, "base.qcow2"), os.path.join(d, "img.qcow2")
            run(QEMU_IMG, "create", "-q", "-f", "qcow2", base, "4M")
            self.qemu_io(base, "write -P 1 0 4M")
            run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", img)
            self.qemu_io(img, "write -z 0 64k", "write -P 3 1M 64k", "write -z 1M 4k")
            run(QEMU_IMG, "snapshot", "-c", "s", img)
            self.qemu_io(img, "write -z 2M 128k")
            z = os.path.join(d, "zstd.qcow2")
            run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "compression_type=zstd", z, "1M")
            self.qemu_io(z, "write -c -P 7 0 64k")
            r = os.path.join(d, "rc8.qcow2")
            run(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "refcount_bits=8", r, "1M")
        steps = [
            ["amend", "-o", "compat=0.10", "img.qcow2"],
            ["amend", "-o", "lazy_refcounts=on", "img.qcow2"],
            ["amend", "-o", "compat=1.1,lazy_refcounts=on,size=8M", "img.qcow2"],
            ["amend", "-p", "-o", "lazy_refcounts=off", "img.qcow2"],
            ["amend", "-o", "compat=v2", "img.qcow2"], ["amend", "-o", "compat=2", "img.qcow2"],
            ["amend", "-o", "compat=v3", "img.qcow2"], ["amend", "-o", "lazy_refcounts=maybe", "img.qcow2"],
            ["amend", "-o", "cluster_size=4k", "img.qcow2"], ["amend", "-o", "compression_type=zstd", "img.qcow2"],
            ["amend", "-o", "bogus=1", "img.qcow2"], ["amend", "img.qcow2"],
            ["amend", "-o", "backing_file=base.qcow2,backing_fmt=qcow2", "img.qcow2"],
            ["amend", "-o", "data_file=x", "img.qcow2"], ["amend", "-o", "encrypt.new-secret=x", "img.qcow2"],
            ["amend", "-o", "size=2M,size=3M", "img.qcow2"],
            ["amend", "-o", "compat=0.10", "zstd.qcow2"], ["amend", "-o", "compat=0.10", "rc8.qcow2"],
            ["amend", "-f", "raw", "-o", "size=1M", "base.qcow2"],
        ]
        ours, theirs = self.twin(setup, *steps)
        self.assert_twins_equal(ours, theirs, "img.qcow2", "zstd.qcow2", "rc8.qcow2")
        for d in (ours, theirs):
            run(QEMU_IMG, "snapshot", "-a", "s", os.path.join(d, "img.qcow2"))
        self.assert_twins_equal(ours, theirs, "img.qcow2")

    # --- measure ---------------------------------------------------------------------

    def test_measure_like_qemu(self):
        img, raw = self.path("m.qcow2"), self.path("m.raw")
        run(QEMU_IMG, "create", "-q", "-f", "qcow2", img, "64M")
        self.qemu_io(img, "write -P 1 100k 3M", "write -z 10M 1M", "write -P 0 20M 64k")
        with open(raw, "wb") as f:
            f.write(self.rng.randbytes(5000000))
            f.truncate(9 * MiB)
        cases = ["--size 1G -O qcow2", "--output=json --size 1G -O qcow2", "--size 1G", "-O qcow2 m.qcow2",
                 "--output=json -O qcow2 m.qcow2", "-O raw m.qcow2", "-O qcow2 -o cluster_size=4k m.qcow2",
                 "-O qcow2 -o cluster_size=2M m.raw", "-O qcow2 -o cluster_size=512,refcount_bits=64 --size 3G",
                 "-O qcow2 -o extended_l2=on --size 100G", "-O qcow2 -o preallocation=full --size 10G",
                 "-O qcow2 --size 0", "-O raw --size 1000", "-O qcow2 -o bogus=1 --size 1", "--size x",
                 "-O vmdk --size 1G", "-O bogus --size 1G", "m.qcow2 --size 1G", "", "--output=xml --size 1M",
                 "-O qcow2 -o cluster_size=3k --size 1M",
                 "-O qcow2 -o refcount_bits=1,cluster_size=4k --size 123456789"]
        for case in cases:
            with self.subTest(args=case):
                self.assert_same_result(["measure", *case.split()], cwd=self.dir)

    # --- dd --------------------------------------------------------------------------

    def test_dd_like_qemu(self):
        def setup(d):
            src = os.path.join(d, "src.qcow2")
            run(QEMU_IMG, "create", "-q", "-f", "qcow2", src, "3M")
            self.qemu_io(src, "write -P 5 0 1M", "write -P 6 2M 3k")
        cases = ["if=src.qcow2 of=a bs=64k count=10 skip=2", "-O qcow2 if=src.qcow2 of=b",
                 "if=src.qcow2 of=c bs=1000 count=3",
                 "if=src.qcow2 of=d skip=1000000", "if=src.qcow2 of=e count=0", "if=src.qcow2 of=f bogus=1",
                 "if=src.qcow2 of=g conv", "if=src.qcow2", "if=src.qcow2 of=h bs=0", "if=src.qcow2 of=i count=x",
                 "if=src.qcow2 of=j skip=y", "-O raw if=src.qcow2 of=k bs=1M count=2", "if=missing of=l",
                 "if=src.qcow2 of=m bs=3k count=5 skip=1"]
        ours, theirs = self.twin(setup, *(["dd", *c.split()] for c in cases))
        for name in sorted(os.listdir(theirs)):
            if name != "src.qcow2":
                self.assertEqual(os.path.getsize(os.path.join(ours, name)),
                                 os.path.getsize(os.path.join(theirs, name)), name)
                self.assert_twins_equal(ours, theirs, name)

    # --- bench -----------------------------------------------------------------------

    def test_bench_like_qemu(self):
        def setup(d):
            run(QEMU_IMG, "create", "-q", "-f", "qcow2", os.path.join(d, "b.qcow2"), "64M")
        cases = ["-c 1000", "-c 1000 -w -d 4 -s 8k -S 1M --pattern=0x5a", "-q -c 10",
                 "-c 10 -o 1M --flush-interval=2 -w",
                 "-c 10 --flush-interval=2", "-c 10 -w --flush-interval=64 --no-drain", "-c 10 -t none -i threads",
                 "-c 0", "-c x", "--pattern=300 -w -c 1", "-s 0 -c 1", "-S 0 -c 3", "-o 100M -c 3",
                 "-c 3 -i bogus", "-c 5 -w --no-drain", "-c 2000 -w -d 16 -s 4k -S 31676k --pattern=7"]
        ours, theirs = self.twin(setup, *(["bench", *c.split(), "b.qcow2"] for c in cases))
        self.assert_twins_equal(ours, theirs, "b.qcow2")

if __name__ == "__main__":
    unittest.main()
