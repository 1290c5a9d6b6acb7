"""Debian's own kernel on machine 'pc' under our engine (accel tcg).

The guest is the project's kit (scripts/make-guest.sh: Debian's
linux-image-amd64 and busybox-static; scripts/test.sh builds it into
build/guest). Boots are the slow part of the suite, so there are few:
  - bzImage through emuctl on a real terminal, -smp 2: the shell answers,
    the kernel is Debian's, /proc/cpuinfo has 2 CPUs, the date is the host's,
    `poweroff` ends the VM and emuctl exits 0;
  - the same kernel's ELF (PVH entry, no decompressor: faster) driven through
    QMP, -smp 2 with -accel tcg,thread=single: system_reset reboots to the
    marker, system_powerdown presses the ACPI power button and the guest
    powers off (SHUTDOWN, guest-shutdown);
  - isa-debug-exit: the guest's exit status becomes emuctl's.
"""
import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from emud_harness import EmudTestCase, Qmp  # noqa: E402
from test_emuctl import Terminal  # noqa: E402

BUILD = os.environ.get("EMUD_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
GUEST = os.environ.get("EMUD_GUEST_DIR", os.path.join(BUILD, "guest"))
BOOT_TIMEOUT = 240  # seconds to the marker; ~20 s (ELF) to ~55 s (bzImage) on 2 cores
MARKER = b"EMU-BOOT-OK"
PROMPT = b"/ # "


def guest_file(name):
    path = os.path.join(GUEST, name)
    if not os.path.exists(path):
        raise AssertionError("%s is missing: build the guest kit with scripts/make-guest.sh %s "
                             "(scripts/test.sh does)" % (path, GUEST))
    return path


def kernel_release():
    """The kit's kernel release, from its VERSIONS file (e.g. 6.1.0-27-amd64)."""
    with open(guest_file("VERSIONS")) as f:
        for line in f:
            m = re.search(r"linux-image-(\d[^\s=_]*-amd64)", line)
            if m:
                return m.group(1)
    raise AssertionError("no linux-image package in %s/VERSIONS" % GUEST)


class Console:
    """The VM's console socket: what the serial port prints, and keys to it."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buf = b""

    def expect(self, pattern, timeout=60):
        end = time.time() + timeout
        while pattern not in self.buf:
            left = end - time.time()
            if left <= 0:
                raise AssertionError("console: %r did not appear within %ds; last output:\n%s"
                                     % (pattern, timeout, self.buf[-2000:].decode(errors="replace")))
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("console closed before %r; last output:\n%s"
                                     % (pattern, self.buf[-2000:].decode(errors="replace")))
            self.buf += data
        i = self.buf.index(pattern) + len(pattern)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def run(self, command, timeout=60):
        """Types a shell command; returns its output (without the echo and prompt)."""
        self.sock.sendall(command.encode() + b"\n")
        out = self.expect(PROMPT, timeout)[:-len(PROMPT)]
        out = out.replace(b"\x1b[6n", b"").replace(b"\r", b"")
        lines = out.decode(errors="replace").split("\n")
        return "\n".join(line for line in lines if line.strip() != command.strip()).strip()

    def text(self):
        """What arrived and was not consumed yet, after reading what is there now."""
        self.sock.settimeout(0.2)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.buf += data
        except OSError:
            pass
        return self.buf.decode(errors="replace")

    def close(self):
        self.sock.close()


def vcpu_report(q):
    """Where the vCPUs are (for a failure message): `info cpus` and the registers."""
    try:
        return "".join(q.ok("human-monitor-command", {"command-line": line})
                       for line in ("info cpus", "info registers -a"))
    except Exception as e:  # the VM may be gone
        return "(no vCPU report: %s)" % e


def wait_shutdown(test, q, console_text, timeout=60):
    """The SHUTDOWN event of a guest poweroff; on a timeout the failure shows
    what the console printed last and where the vCPUs are."""
    try:
        return q.event("SHUTDOWN", timeout=timeout)
    except AssertionError as e:
        test.fail("%s\nconsole (last 3000 bytes):\n%s\nvCPUs:\n%s"
                  % (e, console_text()[-3000:], vcpu_report(q)))


class BootTestCase(EmudTestCase):
    def guest_config(self, name, kernel, mode="shell", cpus=1, extra=None):
        config = {"name": name, "kernel": guest_file(kernel), "initrd": guest_file("initramfs.cpio.gz"),
                  "append": "console=ttyS0 panic=-1 emu_mode=" + mode, "memory": {"size": 512 << 20},
                  "smp": {"cpus": cpus}, "chardevs": [{"id": "con", "backend": "console"}], "serials": ["con"]}
        config.update(extra or {})
        return config


class ShellOverEmuctl(BootTestCase):
    def test_bzimage_shell_smp2_then_poweroff(self):
        release = kernel_release()
        t = Terminal(["--socket", self.emud.socket, "run", "-name", "deb", "-m", "512", "-smp", "2",
                      "-kernel", guest_file("vmlinuz"), "-initrd", guest_file("initramfs.cpio.gz"),
                      "-append", "console=ttyS0 panic=-1 emu_mode=shell", "-nographic"])
        try:
            t.wait_raw()
            t.expect(MARKER, timeout=BOOT_TIMEOUT)
            t.expect(PROMPT, timeout=60)
            t.send("uname -r\r")
            t.expect(re.compile(re.escape(release.encode()) + rb"\r\n"), timeout=60)
            t.expect(PROMPT, timeout=60)
            t.send("grep -c ^processor /proc/cpuinfo\r")
            t.expect(re.compile(rb"\r\n2\r\n"), timeout=60)
            t.expect(PROMPT, timeout=60)
            sent = time.time()
            t.send("date +%s\r")
            seen = t.expect(re.compile(rb"\r\n\d{9,}\r\n"), timeout=60)
            guest_now = int(re.search(rb"\r\n(\d{9,})\r\n", seen).group(1))
            # Between sending the command and reading its answer, within seconds.
            self.assertGreater(guest_now, sent - 10, "guest date vs host")
            self.assertLess(guest_now, time.time() + 10, "guest date vs host")
            t.expect(PROMPT, timeout=60)
            with Qmp(self.emud.vm_socket("deb")) as q:
                t.send("poweroff\r")

                def console_text():
                    while t._read(0.05):
                        pass
                    return t.text()
                ev = wait_shutdown(self, q, console_text)
                self.assertEqual(ev["data"], {"guest": True, "reason": "guest-shutdown"})
            self.assertEqual(t.wait_exit(timeout=30), 0)
        finally:
            t.close()
        with self.emud.qmp() as d:
            self.assertEqual(d.ok("__org.emud_vm-list"), [])


class QmpDrivenGuest(BootTestCase):
    def test_reset_reboots_and_powerdown_powers_off(self):
        # Two vCPUs taking turns (-accel tcg,thread=single): SMP still comes up.
        single = {"accel": [{"type": "tcg", "props": {"thread": "single"}}]}
        self.emud.create_vm(self.guest_config("g", "vmlinux", cpus=2, extra=single), start=False)
        con = Console(self.emud.vm_socket("g", "console"))
        q = Qmp(self.emud.vm_socket("g"))
        try:
            q.ok("cont")
            con.expect(MARKER, BOOT_TIMEOUT)
            con.expect(PROMPT)
            self.assertEqual(con.run("echo $((6 * 7))"), "42")
            self.assertEqual(con.run("grep -c ^processor /proc/cpuinfo"), "2")
            cpus = q.ok("query-cpus-fast")
            self.assertEqual(len(cpus), 2)
            self.assertGreater(cpus[0]["thread-id"], 0)

            q.ok("system_reset")
            ev = q.event("RESET")
            self.assertEqual(ev["data"], {"guest": False, "reason": "host-qmp-system-reset"})
            con.expect(b"Linux version", 60)
            con.expect(MARKER, BOOT_TIMEOUT)
            con.expect(PROMPT)

            q.ok("system_powerdown")
            q.event("POWERDOWN")
            con.expect(b"power button pressed", 60)
            ev = wait_shutdown(self, q, con.text)
            self.assertEqual(ev["data"], {"guest": True, "reason": "guest-shutdown"})
        finally:
            con.close()
            q.close()


class DebugExit(BootTestCase):
    def test_isa_debug_exit_status_reaches_emuctl(self):
        # A guest that writes 0x10 to isa-debug-exit: emuctl exits 0x21, as QEMU.
        t = Terminal(["--socket", self.emud.socket, "run", "-name", "dx", "-m", "256",
                      "-kernel", guest_file("vmlinux"), "-initrd", guest_file("initramfs.cpio.gz"),
                      "-append", "console=ttyS0 panic=-1 emu_mode=shell", "-nographic",
                      "-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
        try:
            t.wait_raw()
            t.expect(MARKER, timeout=BOOT_TIMEOUT)
            t.expect(PROMPT, timeout=60)
            # busybox has no outb; /dev/port writes the byte at offset 0xf4.
            t.send("printf '\\020' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null\r")
            self.assertEqual(t.wait_exit(timeout=60), (0x10 << 1) | 1)
        finally:
            t.close()


if __name__ == "__main__":
    unittest.main()
