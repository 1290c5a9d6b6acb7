#!/bin/bash
# scripts/setup.sh — install everything emud needs to build and test on Debian 12.
# Idempotent: installs only missing packages; safe to run again. Needs root (or sudo).
set -euo pipefail

# Build toolchain and libraries (see docs/dependencies.md for why each is here).
BUILD_PKGS=(
    build-essential cmake ninja-build ccache pkg-config
    nlohmann-json3-dev libuv1-dev libssl-dev libvncserver-dev liblz4-dev
    doctest-dev libsystemd-dev libfmt-dev
    libzydis-dev libxbyak-dev nasm
    zlib1g-dev libzstd-dev
)
# Peers and tools the tests talk to: QEMU 7.2 for compatibility checks and
# benchmarks, systemd-analyze for the unit files, python3 for integration tests,
# clang and its runtime (libFuzzer, ASan) for the fuzz targets in tests/fuzz,
# iasl (acpica-tools) to disassemble the ACPI tables in unit.devices_pc,
# nbdinfo/nbdcopy (libnbd-bin) and nbdkit as NBD peers in integration.nbd
# (whose TLS certificates the openssl command makes), mke2fs and debugfs
# (e2fsprogs) for the file systems integration.disks puts on disk images.
TEST_PKGS=(
    python3 qemu-system-x86 qemu-utils systemd procps
    clang libclang-rt-14-dev
    acpica-tools
    libnbd-bin nbdkit openssl
    e2fsprogs
)

want=("${BUILD_PKGS[@]}")
if [ "${1:-}" = "--with-tests" ]; then
    want+=("${TEST_PKGS[@]}")
fi

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#want[@]} packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
