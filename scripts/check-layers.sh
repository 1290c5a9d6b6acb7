#!/bin/bash
# scripts/check-layers.sh [SOURCE_DIR] — enforces the layer rule of
# docs/architecture.md on #include lines: dependencies point downward only.
#   common   -> (nothing in-repo)
#   engine   -> common
#   storage  -> common
#   protocol -> common
#   devices  -> engine, storage, common
#   daemon   -> protocol, devices, storage, engine, common
#   clients  -> protocol, storage, common (never daemon/, devices/, engine/)
set -u
if [ "${1:-}" = "--self-test" ]; then
    # Plants a violation in a scratch tree and expects the check to fail.
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    mkdir -p "$scratch/engine" "$scratch/daemon"
    echo '#include "daemon/vm.h"' > "$scratch/engine/bad.cpp"
    if "$0" "$scratch" >/dev/null; then
        echo "self-test: a planted engine/ -> daemon/ include was not caught"
        exit 1
    fi
    echo '#include "common/log.h"' > "$scratch/engine/bad.cpp"
    if ! "$0" "$scratch" >/dev/null; then
        echo "self-test: an allowed include was refused"
        exit 1
    fi
    echo "self-test: ok"
    exit 0
fi
cd "${1:-$(dirname "$0")/..}" || exit 2
status=0
check() {
    local layer=$1 allowed=$2
    [ -d "$layer" ] || return 0
    while IFS= read -r line; do
        file=${line%%:*}
        target=$(sed -E 's/.*#include *"([a-z_]+)\/.*/\1/' <<<"${line#*:}")
        case " $allowed $layer " in
            *" $target "*) ;;
            *) echo "layer violation: $file includes $target/ ($layer may use: ${allowed:-nothing})"; status=1 ;;
        esac
    done < <(grep -rnE '^#include *"[a-z_]+/' "$layer" --include='*.h' --include='*.cpp' --include='*.inc' | \
             grep -E '"(common|engine|storage|protocol|devices|daemon|clients)/' | sed -E 's/^([^:]+):[0-9]+:/\1:/')
}
check common ""
check engine "common"
check storage "common"
check protocol "common"
check devices "engine storage common"
check daemon "protocol devices storage engine common"
check clients "protocol storage common"
[ $status = 0 ] && echo "layers: ok"
exit $status
