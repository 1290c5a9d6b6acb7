#!/bin/bash
# scripts/gen-docs.sh [BUILD_DIR] — regenerates docs/qmp.md from the QMP schema.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
ninja -C "$build" emud-schema-doc >/dev/null
"$build/protocol/emud-schema-doc" > "$top/docs/qmp.md"
echo "wrote docs/qmp.md"
