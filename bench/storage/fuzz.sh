#!/bin/bash
# bench/storage/fuzz.sh [SECONDS] [JOBS] [TARGET] — runs a qcow2 libFuzzer
# target (tests/fuzz: fuzz_qcow2, the default, opens and reads;
# fuzz_qcow2_write writes, snapshots and resizes) for longer than ctest does
# (default 600 s, one job), keeping what it finds interesting in
# build/tests/fuzz/corpus-TARGET across runs. Crashes are saved as
# build/tests/fuzz/long-TARGET/crash-*.
# Needs a build with clang installed (scripts/setup.sh --with-tests).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${EMUD_BUILD_DIR:-$top/build}
seconds=${1:-600}
jobs=${2:-1}
target=${3:-fuzz_qcow2}
fuzzer=$build/tests/fuzz/$target
if [ ! -x "$fuzzer" ]; then
    echo "fuzz.sh: $fuzzer is not built (is clang++ installed? then: ninja -C $build -j1 fuzz_targets)" >&2
    exit 1
fi
work=$build/tests/fuzz/long-$target
corpus=$build/tests/fuzz/corpus-$target
mkdir -p "$work" "$corpus"
extra=()
if [ "$jobs" -gt 1 ]; then
    extra=(-jobs="$jobs" -workers="$jobs")
fi
rm -rf "$work/seeds"
"$top/tests/fuzz/make_corpus.sh" "$build/clients/emu-img" "$work/seeds" >/dev/null
exec "$fuzzer" -max_total_time="$seconds" -max_len=131072 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" "${extra[@]}" "$corpus" "$work/seeds"
