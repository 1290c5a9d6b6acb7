"""Bare-metal guests on machine 'pc': emud (tcg and kvm) against QEMU as the reference.

tests/baremetal/mb_smoke.asm (a 32-bit multiboot kernel) and linux64_smoke.asm
(a bzImage with a 64-bit entry) each print a start line on COM1, count local
APIC timer interrupts, send themselves an IPI, take PIT interrupts through the
8259, print "BAREMETAL-OK <name>" and write 0x10 to isa-debug-exit at 0xf4,
which ends the emulator with status (0x10 << 1) | 1 = 33. A failed check
prints "BAREMETAL-FAIL <name>: <what>" and exits with 3.

Each guest runs through `emuctl run` against a real emud with -accel tcg and
-accel kvm, and under qemu-system-x86_64 with the same flags (skipped when
QEMU is not installed). The kvm runs are skipped without a usable /dev/kvm.
On PVM (a software hypervisor behind /dev/kvm: kvm_pvm) code outside 64-bit
mode runs in KVM's instruction emulator, which cannot execute IRET outside real
mode: a 32-bit guest taking interrupts stops there, under QEMU as under emud,
so the 32-bit guest's kvm runs are skipped on PVM.
"""

import fcntl
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emud_harness import BUILD_DIR, EMUCTL, EmudTestCase  # noqa: E402

IMAGES = os.path.join(BUILD_DIR, "tests", "baremetal")
QEMU = shutil.which("qemu-system-x86_64")
EXIT_OK = 33  # isa-debug-exit: (0x10 << 1) | 1
TIMEOUT = 60.0
KVM_GET_API_VERSION = 0xAE00


def kvm_problem():
    """Why /dev/kvm cannot be used here, or None when it can."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return "/dev/kvm: %s" % e.strerror
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as e:
        return "/dev/kvm: KVM_GET_API_VERSION: %s" % e.strerror
    finally:
        os.close(fd)
    if version != 12:
        return "/dev/kvm speaks KVM API version %d, not 12" % version
    return None


def pvm_host():
    return os.path.exists("/sys/module/kvm_pvm")


def image(name):
    path = os.path.join(IMAGES, name + ".bin")
    if not os.path.exists(path):
        raise AssertionError("%s is missing: build the baremetal_images target" % path)
    return path


def machine_flags(accel, kernel):
    return ["-machine", "pc", "-accel", accel, "-nographic", "-no-reboot", "-kernel", kernel,
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]


def run_to_exit(args, timeout=TIMEOUT):
    """Runs ARGS with stdin held open (an idle terminal) until it exits.
    Returns (exit status, everything it wrote)."""
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = b""
    deadline = time.time() + timeout
    try:
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("%s still runs after %.0fs; it wrote:\n%s"
                                     % (" ".join(args), timeout, out.decode(errors="replace")))
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        proc.wait(max(1.0, deadline - time.time()))
        return proc.returncode, out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()


class GuestChecks:
    """The checks every run of a guest must pass."""

    def check_guest(self, name, status, output):
        self.assertIn("BAREMETAL-START " + name, output)
        self.assertNotIn("BAREMETAL-FAIL", output, output)
        self.assertIn("BAREMETAL-OK " + name, output, output)
        self.assertEqual(status, EXIT_OK, "exit status %s, expected %d; output:\n%s" % (status, EXIT_OK, output))

    def need_kvm(self, name):
        problem = kvm_problem()
        if problem:
            self.skipTest("KVM is not usable: " + problem)
        if name == "mb_smoke" and pvm_host():
            self.skipTest("PVM runs 32-bit code in KVM's instruction emulator, which cannot IRET outside real mode")


class EmudGuests(GuestChecks, EmudTestCase):
    """The guests through `emuctl run` against the real emud."""

    def run_guest(self, name, accel):
        if accel == "kvm":
            self.need_kvm(name)
        args = [EMUCTL, "--socket", self.emud.socket, "run"] + machine_flags(accel, image(name))
        status, output = run_to_exit(args)
        self.check_guest(name, status, output)

    def test_mb_smoke_tcg(self):
        self.run_guest("mb_smoke", "tcg")

    def test_mb_smoke_kvm(self):
        self.run_guest("mb_smoke", "kvm")

    def test_linux64_smoke_tcg(self):
        self.run_guest("linux64_smoke", "tcg")

    def test_linux64_smoke_kvm(self):
        self.run_guest("linux64_smoke", "kvm")


class TestDevices(GuestChecks, EmudTestCase):
    """-debugcon and -device pc-testdev as QEMU users script them: the guest
    checks the devices, the debug console's bytes land in the chardev file."""

    def check_testdev(self, emulator, out):
        args = emulator + machine_flags("tcg", image("testdev_smoke")) + \
            ["-debugcon", "file:" + out, "-device", "pc-testdev"]
        status, output = run_to_exit(args)
        self.check_guest("testdev_smoke", status, output)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"DEBUGCON-OK\n")

    def test_debugcon_and_pc_testdev(self):
        self.check_testdev([EMUCTL, "--socket", self.emud.socket, "run"],
                           os.path.join(self.emud.state_dir, "debugcon.out"))

    @unittest.skipUnless(QEMU, "qemu-system-x86_64 is not installed")
    def test_same_under_qemu(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.check_testdev([QEMU], os.path.join(tmp, "debugcon.out"))


class Registers(GuestChecks, EmudTestCase):
    """`info registers`, __org.emud_query-registers and query-cpus read the vCPU state
    under both accelerators: before the start (the boot state the loader
    planned: linux64_smoke's 64-bit entry) and after the guest halted."""

    def check_accel(self, accel):
        if accel == "kvm":
            self.need_kvm("linux64_smoke")
        name = "regs-" + accel
        self.emud.create_vm({"name": name, "accel": [{"type": accel}], "smp": {"cpus": 2},
                             "kernel": image("linux64_smoke")}, start=False)
        with self.emud.qmp() as d:
            def hmp(line):
                return d.ok("__org.emud_vm-execute", {"name": name, "execute": "human-monitor-command",
                                                       "arguments": {"command-line": line}})
            text = hmp("info registers")
            # The Linux 64-bit entry: long mode, flat 64-bit code, RSI = zero page.
            self.assertRegex(text, r"RIP=0000000000[0-9a-f]{6} RFL=")
            self.assertRegex(text, r"\nCS =0010 0000000000000000 ffffffff 00[0-9a-f]{2}9b00 DPL=0 CS64")
            self.assertRegex(text, r"EFER=0000000000000[5d]00")
            self.assertNotEqual(re.search(r"RSI=([0-9a-f]{16})", text).group(1), "0" * 16)
            all_cpus = hmp("info registers -a")
            self.assertEqual(all_cpus.count("CPU#"), 2)
            cpus = d.ok("__org.emud_vm-execute", {"name": name, "execute": "query-cpus"})
            self.assertEqual([c["CPU"] for c in cpus], [0, 1])
            self.assertEqual(cpus[0]["pc"], int(re.search(r"RIP=([0-9a-f]{16})", text).group(1), 16))
            self.assertTrue(cpus[1]["halted"], cpus[1])  # an AP waits for its start-up IPI
            info = hmp("info cpus")
            self.assertRegex(info, r"^\* CPU #0: pc=0x[0-9a-f]{16} thread_id=\d+\r?\n  CPU #1: pc=0x[0-9a-f]{16} "
                                   r"\(halted\) thread_id=\d+")
            err = d.cmd("__org.emud_vm-execute", {"name": name, "execute": "__org.emud_query-registers",
                                                  "arguments": {"cpu-index": 7}})
            self.assertIn("CPU 7 not found", err["error"]["desc"])

    def test_registers_tcg(self):
        self.check_accel("tcg")

    def test_registers_kvm(self):
        self.check_accel("kvm")


@unittest.skipUnless(QEMU, "qemu-system-x86_64 is not installed")
class QemuReference(GuestChecks, unittest.TestCase):
    """The same guests and flags under QEMU: what emud must match."""

    def run_guest(self, name, accel):
        if accel == "kvm":
            self.need_kvm(name)
        status, output = run_to_exit([QEMU] + machine_flags(accel, image(name)))
        self.check_guest(name, status, output)

    def test_mb_smoke_tcg(self):
        self.run_guest("mb_smoke", "tcg")

    def test_mb_smoke_kvm(self):
        self.run_guest("mb_smoke", "kvm")

    def test_linux64_smoke_tcg(self):
        self.run_guest("linux64_smoke", "tcg")

    def test_linux64_smoke_kvm(self):
        self.run_guest("linux64_smoke", "kvm")


if __name__ == "__main__":
    unittest.main()
