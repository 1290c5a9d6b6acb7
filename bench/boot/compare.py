#!/usr/bin/env python3
"""Boot and in-guest CPU benchmark: emud (our engine, accel tcg) against
qemu-system-x86_64 (Debian's QEMU 7.2, accel tcg) on the same kernel, initrd
and command line, in one run.

For each kernel form (bzImage: vmlinuz, through the decompressor; ELF:
vmlinux, PVH entry) and each emulator, RUNS boots with emu_mode=bench:
seconds from start to the EMU-BOOT-OK marker, and from start to
EMU-BENCH-DONE (the kit's emubench, a deterministic CPU workload whose
checksum must match across emulators). Prints medians and ratios
emud/QEMU (lower is better).

Under KVM the same comparison needs hardware KVM; on a software hypervisor
(PVM: /sys/module/kvm_pvm) unmodified Linux crawls, so it says it cannot
measure and skips.

usage: bench/boot/compare.py [--runs N] [--guest DIR] [--build DIR] [--scale N]
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


def timed_run(cmd, timeout, env=None):
    """Runs cmd, returns (seconds to marker, seconds to bench end, checksum line)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    marker = done = None
    checksum = ""
    deadline = start + timeout
    try:
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            now = time.monotonic() - start
            if marker is None and "EMU-BOOT-OK" in line:
                marker = now
            if "EMUBENCH-CHECKSUM " in line and not checksum:
                # The value only: total_ms differs from run to run.
                checksum = line[line.index("EMUBENCH-CHECKSUM "):].split()[1]
            if "EMU-BENCH-DONE" in line:
                done = now
                break
            if time.monotonic() > deadline:
                break
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait()
    return marker, done, checksum


def qemu_cmd(guest, kernel, append):
    return ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
            "-kernel", os.path.join(guest, kernel), "-initrd", os.path.join(guest, "initramfs.cpio.gz"),
            "-append", append]


class Emud:
    def __init__(self, build):
        self.dir = tempfile.mkdtemp(prefix="emud-bench-")
        self.sock = os.path.join(self.dir, "emud.sock")
        self.log = open(os.path.join(self.dir, "emud.log"), "w")
        self.proc = subprocess.Popen([os.path.join(build, "daemon/emud"), "--state-dir", self.dir],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            if os.path.exists(self.sock):
                break
            time.sleep(0.02)
        self.emuctl = os.path.join(build, "clients/emuctl")

    def cmd(self, guest, kernel, append):
        # emuctl attaches to the console as QEMU's -nographic does; stdin is
        # not a terminal here, so it only copies the console out.
        return [self.emuctl, "--socket", self.sock, "run", "-m", "512", "-nographic", "-no-reboot",
                "-kernel", os.path.join(guest, kernel), "-initrd", os.path.join(guest, "initramfs.cpio.gz"),
                "-append", append]

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def fmt(x):
    return "  n/a " if x is None else "%6.2f" % x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--guest", default=os.path.join(TOP, "build/guest"))
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--scale", type=int, default=1, help="emubench emu_scale")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.guest, "vmlinuz")):
        sys.exit("no guest kit in %s: run scripts/make-guest.sh %s" % (args.guest, args.guest))
    if not shutil.which("qemu-system-x86_64"):
        sys.exit("qemu-system-x86_64 is missing: apt-get install qemu-system-x86")
    append = "console=ttyS0 panic=-1 emu_mode=bench emu_scale=%d" % args.scale
    emud = Emud(args.build)
    results = {}
    try:
        for kernel in ("vmlinux", "vmlinuz"):
            for name in ("qemu", "emud"):
                marks, dones, sums = [], [], set()
                for i in range(args.runs):
                    cmd = qemu_cmd(args.guest, kernel, append) if name == "qemu" else emud.cmd(args.guest, kernel,
                                                                                                 append)
                    m, d, c = timed_run(cmd, args.timeout)
                    print("  %-5s %-8s run %d: marker %s s, bench done %s s %s" % (name, kernel, i + 1, fmt(m),
                                                                                    fmt(d), c), flush=True)
                    if m is not None:
                        marks.append(m)
                    if d is not None:
                        dones.append(d)
                    sums.add(c)
                results[(kernel, name)] = (statistics.median(marks) if marks else None,
                                           statistics.median(dones) if dones else None, sums)
    finally:
        emud.close()
    print("\nmedians of %d runs (seconds from start; ratio = emud / QEMU, lower is better)" % args.runs)
    print("%-8s %-22s %10s %10s %8s" % ("kernel", "phase", "QEMU 7.2", "emud", "ratio"))
    for kernel in ("vmlinux", "vmlinuz"):
        q, e = results[(kernel, "qemu")], results[(kernel, "emud")]
        for i, phase in enumerate(("boot to EMU-BOOT-OK", "to EMU-BENCH-DONE")):
            ratio = e[i] / q[i] if e[i] and q[i] else None
            print("%-8s %-22s %10s %10s %8s" % (kernel, phase, fmt(q[i]), fmt(e[i]),
                                                 "n/a" if ratio is None else "%.2f" % ratio))
        if q[2] != e[2]:
            print("  WARNING: emubench checksums differ: QEMU %s, emud %s" % (q[2], e[2]))
    if os.path.exists("/sys/module/kvm_pvm"):
        print("\nkvm: /dev/kvm is PVM, a software hypervisor: an unmodified Linux guest crawls under it, "
              "so the KVM comparison cannot be measured on this host.")
    elif os.path.exists("/dev/kvm"):
        print("\nkvm: hardware KVM is present; the KVM accelerator is not wired into machine 'pc' yet, "
              "so there is no emud figure to compare.")
    else:
        print("\nkvm: /dev/kvm is absent: no KVM comparison.")


if __name__ == "__main__":
    main()
