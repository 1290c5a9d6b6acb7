#!/usr/bin/env python3
"""bench/storage/compare.py — emu-img and qemu-img side by side on the same
1 GiB of data, in one run.

The data (in /tmp, or --dir) mixes zeroes, random bytes and repetitive text
in runs of 64 KiB to 4 MiB. Each figure is the median of --runs (3) timed
runs; the two tools take turns so that drift in the machine's load hits both:

  convert raw->qcow2        convert -f raw -O qcow2 data.raw out.qcow2
  convert qcow2->raw        convert -f qcow2 -O raw data.qcow2 out.raw
  convert qcow2->qcow2 -c   convert -c -f qcow2 -O qcow2 data.qcow2 out.qcow2
  bench read 4k random      bench -c N -d 64 -s 4k -S STRIDE data.qcow2
  bench write 4k random     bench -w -c N -d 64 -s 4k -S STRIDE (a fresh copy of data.qcow2)

data.qcow2 is qemu-img's conversion of data.raw, so both tools read the
same qcow2 file. STRIDE is 4 KiB times a prime: `bench` wraps at the end of
the image, so the requests visit 4 KiB blocks all over it in a scattered
order (qemu-img bench has no random mode). The ratio is emu-img's time over
qemu-img's: at most 1.0 means emu-img is as fast or faster.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20
GiB = 1 << 30


def make_data(path, size):
    """Mixed runs: zeroes, random bytes, repetitive text, each run 64 KiB..4 MiB."""
    rng = random.Random(20240501)
    text = b"emud storage benchmark: the quick brown fox jumps over the lazy dog. " * 64
    with open(path, "wb") as f:
        done = 0
        while done < size:
            n = min(size - done, rng.choice((64, 128, 256, 512, 1024, 4096)) * 1024)
            kind = rng.randrange(3)
            if kind == 0:
                chunk = bytes(n)
            elif kind == 1:
                chunk = os.urandom(n)
            else:
                chunk = (text * (n // len(text) + 1))[:n]
            f.write(chunk)
            done += n


def timed(args, prepare=None):
    if prepare:
        prepare()
    start = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emu-img", default=os.path.join(os.environ.get("EMUD_BUILD_DIR", os.path.join(TOP, "build")),
                                                      "clients", "emu-img"))
    ap.add_argument("--qemu-img", default=shutil.which("qemu-img"))
    ap.add_argument("--dir", default="/tmp/emu-storage-bench")
    ap.add_argument("--size", type=int, default=1024, help="MiB of data (1024)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reads", type=int, default=200000, help="bench read requests")
    ap.add_argument("--writes", type=int, default=100000, help="bench write requests")
    ap.add_argument("--only", help="comma-separated subset of: raw2qcow2,qcow22raw,compress,read,write")
    ap.add_argument("--keep", action="store_true", help="keep the data in --dir for the next run")
    args = ap.parse_args()
    if not args.qemu_img or not os.path.exists(args.emu_img):
        sys.exit("compare.py: needs qemu-img and a built emu-img")
    os.makedirs(args.dir, exist_ok=True)
    data_raw = os.path.join(args.dir, "data.raw")
    data_qcow2 = os.path.join(args.dir, "data.qcow2")
    size = args.size * MiB
    if not os.path.exists(data_raw) or os.path.getsize(data_raw) != size:
        print(f"creating {args.size} MiB of mixed data in {data_raw} ...", flush=True)
        make_data(data_raw, size)
        if os.path.exists(data_qcow2):
            os.unlink(data_qcow2)
    if not os.path.exists(data_qcow2):
        subprocess.run([args.qemu_img, "convert", "-f", "raw", "-O", "qcow2", data_raw, data_qcow2], check=True)
    out = os.path.join(args.dir, "out")
    work = os.path.join(args.dir, "work.qcow2")
    stride = str(4096 * 104729)

    def rm_out():
        if os.path.exists(out):
            os.unlink(out)

    def fresh_copy():
        shutil.copyfile(data_qcow2, work)

    cases = [
        ("raw2qcow2", "convert raw->qcow2",
         lambda t: [t, "convert", "-f", "raw", "-O", "qcow2", data_raw, out], rm_out),
        ("qcow22raw", "convert qcow2->raw",
         lambda t: [t, "convert", "-f", "qcow2", "-O", "raw", data_qcow2, out], rm_out),
        ("compress", "convert qcow2->qcow2 -c",
         lambda t: [t, "convert", "-c", "-f", "qcow2", "-O", "qcow2", data_qcow2, out], rm_out),
        ("read", "bench read 4k random",
         lambda t: [t, "bench", "-f", "qcow2", "-c", str(args.reads), "-d", "64", "-s", "4k", "-S", stride, data_qcow2],
         None),
        ("write", "bench write 4k random",
         lambda t: [t, "bench", "-f", "qcow2", "-w", "-c", str(args.writes), "-d", "64", "-s", "4k", "-S", stride,
                    "--pattern=0x5a", work], fresh_copy),
    ]
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c[0] in keep]
    tools = {"emu-img": args.emu_img, "qemu-img": args.qemu_img}
    print(f"{'':26}{'emu-img':>10}{'qemu-img':>10}{'ratio':>8}   (seconds, median of {args.runs})")
    results = []
    for key, label, cmd, prepare in cases:
        times = {name: [] for name in tools}
        for _ in range(args.runs):
            for name, path in tools.items():
                times[name].append(timed(cmd(path), prepare))
        emu, qemu = statistics.median(times["emu-img"]), statistics.median(times["qemu-img"])
        ratio = emu / qemu if qemu else float("inf")
        results.append((label, emu, qemu, ratio))
        print(f"{label:26}{emu:10.3f}{qemu:10.3f}{ratio:8.2f}", flush=True)
    rm_out()
    if os.path.exists(work):
        os.unlink(work)
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)
    worst = max(r[3] for r in results)
    print(f"worst ratio: {worst:.2f} ({'target met' if worst <= 1.0 else 'target: <= 1.0'})")


if __name__ == "__main__":
    main()
