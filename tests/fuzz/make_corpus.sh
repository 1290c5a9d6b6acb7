#!/bin/bash
# tests/fuzz/make_corpus.sh EMU_IMG DIR — writes the fuzz seed corpus: small
# valid qcow2 images of every shape emu-img makes (versions 2 and 3, cluster
# sizes, refcount widths, compression, snapshots, backing names, lazy
# refcounts, zero clusters), plus a few from qemu-img/qemu-io when installed
# (extended L2 entries, zero clusters over a backing file).
set -euo pipefail
emu_img=$1
out=$2
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 40 KiB of mixed data: a pattern, random bytes, zeroes.
python3 - "$tmp/data.raw" <<'PY'
import random, sys
r = random.Random(1)
data = bytearray(40 * 1024)
data[0:6000] = bytes([0x5a]) * 6000
data[9000:15000] = r.randbytes(6000)
data[30000:33000] = b"emud" * 750
open(sys.argv[1], "wb").write(data)
PY

n=0
seed() { n=$((n + 1)); cp "$1" "$out/seed-$(printf %02d $n)-$2.qcow2"; }
img=$tmp/img.qcow2

for opts in "cluster_size=512" "compat=0.10,cluster_size=512" "cluster_size=4k" \
            "cluster_size=512,refcount_bits=1" "cluster_size=512,refcount_bits=64" \
            "cluster_size=1k,lazy_refcounts=on" "cluster_size=512,refcount_bits=8"; do
    rm -f "$img"
    "$emu_img" convert -O qcow2 -o "$opts" "$tmp/data.raw" "$img"
    seed "$img" "${opts//[=,]/_}"
done
for ctype in zlib zstd; do
    rm -f "$img"
    "$emu_img" convert -c -O qcow2 -o "cluster_size=1k,compression_type=$ctype" "$tmp/data.raw" "$img"
    seed "$img" "compressed_$ctype"
done
# Snapshots: two, with different data between them.
rm -f "$img"
"$emu_img" convert -O qcow2 -o cluster_size=512 "$tmp/data.raw" "$img"
"$emu_img" snapshot -c first "$img"
"$emu_img" convert -n -O qcow2 "$tmp/data.raw" "$img"
"$emu_img" snapshot -c second "$img"
seed "$img" snapshots
# A backing file name and format (the backing file is not opened by the target).
rm -f "$img"
"$emu_img" create -q -f qcow2 -o cluster_size=512 -u -b base.qcow2 -F qcow2 "$img" 64k
seed "$img" backing
rm -f "$img"
"$emu_img" create -q -f qcow2 -o cluster_size=512,preallocation=metadata "$img" 16k
seed "$img" preallocated

if command -v qemu-img >/dev/null && command -v qemu-io >/dev/null; then
    rm -f "$img"
    qemu-img create -q -f qcow2 -o cluster_size=16k,extended_l2=on "$img" 128k
    qemu-io -f qcow2 -c "write -P 0x11 0 3k" -c "write -z 8k 1k" -c "write -P 0x22 20k 700" "$img" >/dev/null
    seed "$img" extended_l2
    rm -f "$img"
    qemu-img create -q -f qcow2 "$tmp/base.qcow2" 32k
    qemu-img create -q -f qcow2 -o cluster_size=512 -b base.qcow2 -F qcow2 "$img" 32k
    qemu-io -f qcow2 -c "write -z 0 2k" -c "write -P 0x33 4k 1k" -c "discard 4k 512" "$img" >/dev/null
    seed "$img" zero_clusters
fi
echo "make_corpus: $n seed images in $out"
