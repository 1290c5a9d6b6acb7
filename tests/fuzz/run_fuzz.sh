#!/bin/bash
# tests/fuzz/run_fuzz.sh FUZZER EMU_IMG WORKDIR SECONDS [libFuzzer options...]
# Builds a fresh seed corpus with make_corpus.sh and runs the fuzzer on it for
# SECONDS. A crash, leak or timeout fails with the reproducer saved in
# WORKDIR (crash-*, leak-*, timeout-*); run it again with `FUZZER FILE`.
set -euo pipefail
fuzzer=$1
emu_img=$2
work=$3
seconds=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work/seeds" "$work/corpus"
mkdir -p "$work/seeds" "$work/corpus"
"$here/make_corpus.sh" "$emu_img" "$work/seeds"
exec "$fuzzer" -max_total_time="$seconds" -max_len=131072 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" "$@" "$work/corpus" "$work/seeds"
