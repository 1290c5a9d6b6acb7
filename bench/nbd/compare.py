#!/usr/bin/env python3
"""bench/nbd/compare.py — emu-nbd and qemu-nbd side by side: nbdcopy read and
write throughput over a unix socket, for the same raw and qcow2 images
(1 GiB by default), in one run.

  read   nbdcopy nbd+unix:///?socket=S null:          (the export's bytes, discarded)
  write  nbdcopy data.raw nbd+unix:///?socket=S         (into a fresh image of the format)

Both servers run with -t -e 0 (any number of clients: nbdcopy opens several
connections when the server allows multi-conn) and the same --cache. The data
is random (no holes: every byte crosses the socket). Each figure is the
median of --runs timed copies; the servers take turns so that drift in the
machine's load hits both. The ratio is emu-nbd's throughput over
qemu-nbd's: at least 1.0 means emu-nbd is as fast or faster.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20


def make_data(path, size):
    with open(path, "wb") as f:
        done = 0
        while done < size:
            n = min(size - done, 16 * MiB)
            f.write(os.urandom(n))
            done += n


def wait_socket(proc, path):
    for _ in range(1000):
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.stderr.read().decode()}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        except OSError:
            time.sleep(0.01)
    sys.exit("server did not start")


class Server:
    def __init__(self, program, image, fmt, sock, cache):
        self.proc = subprocess.Popen([program, "-t", "-e", "0", "-f", fmt, f"--cache={cache}", "-k", sock, image],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.sock = sock
        self.uri = f"nbd+unix:///?socket={sock}"
        wait_socket(self.proc, sock)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def create(qemu_img, path, fmt, size):
    if os.path.exists(path):
        os.unlink(path)
    subprocess.run([qemu_img, "create", "-q", "-f", fmt, path, str(size)], check=True)


def timed(args):
    start = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{p.stderr}")
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--size", type=int, default=1024, help="MiB (default 1024)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache", default="writeback")
    ap.add_argument("--qemu-nbd", default=shutil.which("qemu-nbd"))
    args = ap.parse_args()
    emu_nbd = os.path.join(args.build, "clients", "emu-nbd")
    qemu_img = shutil.which("qemu-img")
    nbdcopy = shutil.which("nbdcopy")
    for what, path in (("emu-nbd", emu_nbd), ("qemu-nbd", args.qemu_nbd), ("qemu-img", qemu_img),
                       ("nbdcopy", nbdcopy)):
        if not path or not os.path.exists(path):
            sys.exit(f"{what} not found")
    size = args.size * MiB
    work = tempfile.mkdtemp(prefix="emu-nbd-bench-", dir=args.dir)
    try:
        data = os.path.join(work, "data.raw")
        make_data(data, size)
        images = {"raw": data, "qcow2": os.path.join(work, "data.qcow2")}
        subprocess.run([qemu_img, "convert", "-f", "raw", "-O", "qcow2", data, images["qcow2"]], check=True)
        servers = (("emu-nbd", emu_nbd), ("qemu-nbd", args.qemu_nbd))
        results = {}
        for fmt in ("raw", "qcow2"):
            for op in ("read", "write"):
                times = {name: [] for name, _ in servers}
                for run in range(args.runs):
                    order = servers if run % 2 == 0 else servers[::-1]
                    for name, program in order:
                        sock = os.path.join(work, f"{name}.sock")
                        if op == "read":
                            srv = Server(program, images[fmt], fmt, sock, args.cache)
                            cmd = [nbdcopy, srv.uri, "null:"]
                        else:
                            target = os.path.join(work, f"target.{fmt}")
                            create(qemu_img, target, fmt, size)
                            srv = Server(program, target, fmt, sock, args.cache)
                            cmd = [nbdcopy, "--flush", data, srv.uri]
                        try:
                            times[name].append(timed(cmd))
                        finally:
                            srv.stop()
                results[(fmt, op)] = {name: size / MiB / statistics.median(t) for name, t in times.items()}
        print(f"nbdcopy over a unix socket, {args.size} MiB of random data, median of {args.runs} runs, "
              f"cache={args.cache}")
        print(f"{'image':<7}{'op':<7}{'emu-nbd MiB/s':>15}{'qemu-nbd MiB/s':>16}{'ours/qemu':>11}")
        for (fmt, op), r in results.items():
            ours, theirs = r["emu-nbd"], r["qemu-nbd"]
            print(f"{fmt:<7}{op:<7}{ours:>15.0f}{theirs:>16.0f}{ours / theirs:>11.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
