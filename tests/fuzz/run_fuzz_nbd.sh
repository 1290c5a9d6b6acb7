#!/bin/bash
# tests/fuzz/run_fuzz_nbd.sh FUZZER WORKDIR SECONDS [libFuzzer options...] —
# runs fuzz_nbd_server on a fresh seed corpus (nbd_seeds.py) for SECONDS. A
# crash, leak or timeout fails with the reproducer saved in WORKDIR.
set -euo pipefail
fuzzer=$1
work=$2
seconds=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work/seeds" "$work/corpus"
mkdir -p "$work/seeds" "$work/corpus"
python3 "$here/nbd_seeds.py" "$work/seeds"
exec "$fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" "$@" "$work/corpus" "$work/seeds"
