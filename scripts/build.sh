#!/bin/bash
# scripts/build.sh [BUILD_DIR] — configures (once) and builds emud with ninja and ccache.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$top" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
# Two cores and 24 GiB: two jobs keep the machine responsive.
ninja -C "$build" -j "${EMUD_JOBS:-2}"
