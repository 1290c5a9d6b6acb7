#!/usr/bin/env python3
"""emud's resident memory with 0, 1 and N idle VMs, and one QEMU for context.

Usage: bench/memory.py [--build-dir DIR] [--vms N] [--qemu PATH]

Creates idle VMs (machine none, -m 512M: guest RAM is reserved, never touched)
in one emud and reads VmRSS from /proc after each step. Target: an idle VM
costs emud less than 2 MiB beyond its guest RAM (and none of that RAM is
resident while the guest does not touch it).
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

GUEST_RAM = 512 * 1024 * 1024
TARGET_KIB_PER_VM = 2048


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def settled_rss(pid, samples=5, interval=0.1):
    """The median of a few VmRSS/RssAnon samples once allocations settled."""
    time.sleep(0.3)
    rss, anon = [], []
    for _ in range(samples):
        rss.append(status_kib(pid, "VmRSS"))
        anon.append(status_kib(pid, "RssAnon"))
        time.sleep(interval)
    return sorted(rss)[samples // 2], sorted(anon)[samples // 2]


def mib(kib):
    return kib / 1024.0


def measure_emud(vms):
    import emud_harness
    from emud_harness import Emud, Qmp

    emud = Emud(check_returns=False, log_level="warn")
    rows = []
    try:
        rows.append((0, settled_rss(emud.pid), status_kib(emud.pid, "Threads"), status_kib(emud.pid, "VmSize")))
        with Qmp(emud.socket) as q:
            for i in range(vms):
                q.ok("__org.emud_vm-create", {"config": {"name": "idle%d" % i, "machine": {"type": "none"},
                                                         "memory": {"size": GUEST_RAM}}})
                if i + 1 == 1 or i + 1 == vms:
                    rows.append((i + 1, settled_rss(emud.pid), status_kib(emud.pid, "Threads"),
                                 status_kib(emud.pid, "VmSize")))
            listed = q.ok("__org.emud_vm-list")
            assert len(listed) == vms and all(v["memory"] == GUEST_RAM for v in listed), listed
        alive = emud.alive()
    finally:
        emud.stop()
    if not alive:
        sys.exit("emud died during the measurement")
    return rows, emud_harness.EMUD


def measure_qemu(qemu):
    tmp = tempfile.mkdtemp(prefix="memory-bench-")
    path = os.path.join(tmp, "qmp.sock")
    proc = subprocess.Popen([qemu, "-machine", "none", "-m", "512", "-display", "none", "-nodefaults",
                             "-qmp", "unix:%s,server=on,wait=off" % path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while not os.path.exists(path):
            if proc.poll() is not None or time.time() > deadline:
                return None
            time.sleep(0.02)
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.recv(4096)  # the greeting: QEMU is fully up
        s.close()
        return settled_rss(proc.pid), status_kib(proc.pid, "Threads"), status_kib(proc.pid, "VmSize")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir",
                    help="the build tree with daemon/emud (default: $EMUD, $EMUD_BUILD_DIR or SOURCE/build)")
    ap.add_argument("--vms", type=int, default=50, help="idle VMs in the last step (default 50)")
    ap.add_argument("--qemu", default=shutil.which("qemu-system-x86_64"), help="QEMU binary for context")
    args = ap.parse_args()
    if args.build_dir:
        os.environ["EMUD"] = os.path.join(os.path.abspath(args.build_dir), "daemon", "emud")
    if args.vms < 2:
        ap.error("--vms must be at least 2")

    rows, binary = measure_emud(args.vms)
    print("emud resident memory, idle VMs of machine none with -m 512M (%s)" % binary)
    print("%6s %12s %12s %12s %8s %14s" % ("VMs", "VmRSS MiB", "RssAnon MiB", "VmSize MiB", "threads",
                                           "RSS/VM (KiB)"))
    base = rows[0][1][0]
    for n, (rss, anon), threads, size in rows:
        per = "" if n == 0 else "%.0f" % ((rss - base) / n)
        print("%6d %12.1f %12.1f %12.1f %8d %14s" % (n, mib(rss), mib(anon), mib(size), threads, per))
    (n1, (rss1, _), _, _), (nn, (rssn, _), _, _) = rows[1], rows[-1]
    first = rss1 - base
    marginal = (rssn - rss1) / (nn - n1)
    print("first VM: %+.0f KiB; each further VM: %.0f KiB (target < %d KiB per idle VM beyond guest RAM): %s" %
          (first, marginal, TARGET_KIB_PER_VM, "met" if max(first, marginal) < TARGET_KIB_PER_VM else "NOT met"))

    if args.qemu:
        q = measure_qemu(args.qemu)
        if q:
            (rss, anon), threads, size = q
            print("for context: one %s -machine none -m 512: VmRSS %.1f MiB, RssAnon %.1f MiB, VmSize %.1f MiB, "
                  "%d threads" % (os.path.basename(args.qemu), mib(rss), mib(anon), mib(size), threads))
        else:
            print("for context: %s did not start" % args.qemu)
    else:
        print("for context: qemu-system-x86_64 not found")


if __name__ == "__main__":
    main()
