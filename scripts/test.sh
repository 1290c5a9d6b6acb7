#!/bin/bash
# scripts/test.sh — sets up a fresh Debian 12 machine, builds, runs every test.
# This is the README's test command and what CI runs.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/setup.sh" --with-tests
"$top/scripts/build.sh" "$top/build"
# The demo guest (Debian's kernel + busybox) the boot tests run; idempotent.
"$top/scripts/make-guest.sh" "$top/build/guest"
cd "$top/build"
# Slow tests carry the "slow" label; EMUD_SKIP_SLOW=1 leaves them out locally.
args=(--output-on-failure --timeout 600 -j 2)
if [ "${EMUD_SKIP_SLOW:-0}" = 1 ]; then
    args+=(-LE slow)
fi
ctest "${args[@]}"
