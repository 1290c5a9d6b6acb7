#!/usr/bin/env python3
"""tests/fuzz/nbd_seeds.py DIR — writes seed inputs for fuzz_nbd_server: client
byte streams (first byte: mode; odd = the target prepends a valid handshake)
covering every option and every command, valid and slightly off."""
import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REQ = 0x25609513


def opt(code, data=b""):
    return struct.pack(">QII", IHAVEOPT, code, len(data)) + data


def info(name, infos=()):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos)) + b"".join(struct.pack(">H", i) for i in infos)


def meta(name, queries):
    n = name.encode()
    out = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        out += struct.pack(">I", len(q)) + q.encode()
    return out


def req(cmd, offset, length, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQ, flags, cmd, cookie, offset, length) + payload


out = sys.argv[1]
os.makedirs(out, exist_ok=True)
hello = struct.pack(">I", 3)
seeds = {
    "options": b"\0" + hello + opt(3) + opt(6, info("rw", (0, 1, 2, 3))) + opt(8) +
               opt(9, meta("rw", [])) + opt(9, meta("rw", ["base:"])) + opt(10, meta("rw", ["base:allocation"])) +
               opt(5) + opt(99, b"xyz") + opt(2),
    "go-ro": b"\0" + hello + opt(7, info("ro", (3,))) + req(0, 0, 4096) + req(1, 0, 512, payload=b"\1" * 512) +
             req(2, 0, 0),
    "export-name": b"\0" + struct.pack(">I", 1) + opt(1, b"rw") + req(0, 0, 100) + req(3, 0, 0) + req(2, 0, 0),
    "transmission": b"\1" + req(0, 0, 16384) + req(0, 4096, 512, flags=4) + req(1, 1000, 16, flags=1,
                    payload=b"a" * 16) + req(6, 8192, 16384, flags=2) + req(6, 0, 4096, flags=16) +
                    req(4, 0, 16384) + req(7, 0, 16384) + req(7, 0, 16384, flags=8) + req(5, 0, 4096) +
                    req(3, 0, 0) + req(2, 0, 0),
    "past-end": b"\1" + req(0, 16384 - 10, 100) + req(1, 16384, 4, payload=b"abcd") + req(6, 1 << 62, 100) +
                req(0, 0, 1 << 26) + req(9, 0, 0) + req(2, 0, 0),
    "garbage": b"\0" + b"\xff" * 64,
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
