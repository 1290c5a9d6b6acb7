#!/bin/bash
# scripts/make-guest.sh OUTDIR — the project's demo guest kit.
#
# Builds, from Debian 12 packages, a guest that emud (and QEMU, for side-by-side
# checks) boots with -kernel/-initrd/-append:
#   OUTDIR/vmlinuz            Debian's kernel bzImage (linux-image-amd64 resolved
#                             to the real linux-image-6.1.0-NN-amd64 package)
#   OUTDIR/vmlinux            the same kernel's uncompressed ELF, cut out of the
#                             bzImage payload (payload_offset/length); optional
#   OUTDIR/initramfs.cpio.gz  gzip'd newc: busybox-static, /init (scripts/guest/init),
#                             /bin/emubench, the virtio modules in load order
#   OUTDIR/emubench           the benchmark binary (run it natively: same checksum)
#   OUTDIR/cmdline.txt        console=ttyS0 panic=-1
#   OUTDIR/VERSIONS           package versions and kit hash this output was built from
#
# Nothing is installed into /boot: the .debs are fetched with `apt-get download`
# (kept in OUTDIR/.debs for the next run) and unpacked with dpkg-deb into a
# temporary directory. Tools that are missing (cpio, gzip, xz, gcc, libc6-dev)
# are installed with apt-get. Needs root on Debian 12.
#
# Idempotent: when OUTDIR/VERSIONS matches the package versions apt would pick
# now and the kit's sources, and every output is there, it does nothing.
# Set EMU_GUEST_FORCE=1 to rebuild anyway.
#
# Check a result with:
#   qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot -kernel OUTDIR/vmlinuz \
#     -initrd OUTDIR/initramfs.cpio.gz -append "console=ttyS0 panic=-1 emu_mode=boot"
set -euo pipefail

OUTDIR=${1:?usage: make-guest.sh OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
GUEST_SRC=$HERE/guest
# Modules the kit's devices need; their dependencies are added (see below).
# button + evdev: the ACPI power button reaches acpid (system_powerdown);
# ata_piix, sd_mod, sr_mod: IDE disks and CD-ROMs; ext4 (+ crc32c_generic,
# which it asks for by name): the file systems the disk tests write.
WANTED_MODULES=(virtio virtio_ring virtio_pci virtio_blk ata_piix sd_mod sr_mod crc32c_generic ext4 button evdev)

say() { echo "make-guest: $*"; }
die() { echo "make-guest: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get installs and downloads)"
export DEBIAN_FRONTEND=noninteractive
START=$(date +%s.%N)
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

# One run at a time per OUTDIR (tests may call the kit concurrently).
exec 9>"$OUTDIR/.lock"
flock 9

# --- tools ---------------------------------------------------------------
missing=()
command -v cpio >/dev/null || missing+=(cpio)
command -v gzip >/dev/null || missing+=(gzip)
command -v xz >/dev/null || missing+=(xz-utils)
command -v gcc >/dev/null || missing+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
apt_updated=0
apt_update() {
    [ "$apt_updated" = 1 ] && return 0
    say "apt-get update"
    apt-get update -qq
    apt_updated=1
}
if [ ${#missing[@]} -gt 0 ]; then
    apt_update
    say "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- which packages ------------------------------------------------------
# Two apt-cache calls (each costs ~0.4 s): the metapackage's dependency and
# the candidates of everything we fetch.
meta_info() {
    apt-cache show --no-all-versions linux-image-amd64 busybox-static 2>/dev/null | awk '
        /^Package: / { pkg = $2 }
        /^Version: / { ver[pkg] = $2 }
        /^Depends: / && pkg == "linux-image-amd64" {
            if (match($0, /linux-image-[0-9][^ ,]*/)) kpkg = substr($0, RSTART, RLENGTH) }
        END {
            if (kpkg != "" && ver["busybox-static"] != "")
                print kpkg, ver["linux-image-amd64"], ver["busybox-static"]
        }'
}
info=$(meta_info || true)
if [ -z "$info" ]; then
    apt_update
    info=$(meta_info || true)
fi
[ -n "$info" ] || die "cannot resolve linux-image-amd64 to a kernel image package (or busybox-static is unknown)"
read -r KPKG MVER BVER <<<"$info"
KVER=$(apt-cache show --no-all-versions "$KPKG" 2>/dev/null | sed -n 's/^Version: //p' | head -n1 || true)
[ -n "$KVER" ] || die "no candidate version for $KPKG"
KREL=${KPKG#linux-image-}

kit_hash=$(cat "$0" "$GUEST_SRC/init" "$GUEST_SRC/power-button" "$GUEST_SRC/emubench.c" | sha256sum | cut -c1-16)
STAMP="kernel_package=$KPKG $KVER
kernel_meta=linux-image-amd64 $MVER
kernel_release=$KREL
busybox_package=busybox-static $BVER
gcc=$(gcc -dumpfullversion)
libc=$(dpkg-query -W -f '${Version}' libc6-dev 2>/dev/null || echo unknown)
kit=$kit_hash"

outputs=(vmlinuz initramfs.cpio.gz emubench cmdline.txt VERSIONS)
up_to_date=1
for f in "${outputs[@]}"; do [ -s "$OUTDIR/$f" ] || up_to_date=0; done
if [ "$up_to_date" = 1 ] && [ "${EMU_GUEST_FORCE:-0}" != 1 ] &&
   [ "$(sed -n '1,/^kit=/p' "$OUTDIR/VERSIONS")" = "$STAMP" ]; then
    say "$OUTDIR is up to date ($KPKG $KVER, busybox-static $BVER)"
    exit 0
fi

WORK=$(mktemp -d /tmp/make-guest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"

# --- packages: cached .debs, downloaded when the version changed ----------
DEBS=$OUTDIR/.debs
mkdir -p "$DEBS"
fetch() { # fetch PACKAGE VERSION -> path of the .deb
    local pkg=$1 ver=$2 f
    for f in "$DEBS/${pkg}"_*.deb; do
        [ -e "$f" ] || continue
        if [ "$(dpkg-deb -f "$f" Version 2>/dev/null)" = "$ver" ]; then
            echo "$f"
            return 0
        fi
        rm -f "$f"
    done
    local dl=$WORK/dl-$pkg
    mkdir -p "$dl"
    chown _apt "$dl" 2>/dev/null || true # apt downloads as _apt when it can
    say "downloading $pkg $ver" >&2
    if ! (cd "$dl" && apt-get download -qq "$pkg=$ver" >/dev/null); then
        apt_update >&2
        (cd "$dl" && apt-get download -qq "$pkg=$ver" >/dev/null) || die "apt-get download $pkg=$ver failed"
    fi
    f=$(ls "$dl"/*.deb)
    mv "$f" "$DEBS/"
    echo "$DEBS/$(basename "$f")"
}
KDEB=$(fetch "$KPKG" "$KVER")
BDEB=$(fetch busybox-static "$BVER")

say "unpacking $(basename "$KDEB")"
dpkg-deb -x "$KDEB" "$WORK/kroot"
dpkg-deb -x "$BDEB" "$WORK/bbroot"
VMLINUZ=$WORK/kroot/boot/vmlinuz-$KREL
[ -s "$VMLINUZ" ] || die "$KDEB has no boot/vmlinuz-$KREL"
BUSYBOX=$WORK/bbroot/bin/busybox
[ -x "$BUSYBOX" ] || die "$BDEB has no bin/busybox"

NEW=$WORK/out
mkdir -p "$NEW"
cp "$VMLINUZ" "$NEW/vmlinuz"

# --- vmlinux: the bzImage's compressed payload, decompressed --------------
# The boot protocol (2.08+) says where it is: payload_offset (0x248) and
# payload_length (0x24c), relative to the protected-mode code, which starts
# after (setup_sects (0x1f1), or 4 if 0, + 1) sectors.
le() { od -An -tu"$3" -j"$2" -N"$3" "$1" | tr -d ' '; }
extract_vmlinux() {
    local setup_sects off len
    setup_sects=$(le "$VMLINUZ" $((0x1f1)) 1)
    [ "$setup_sects" = 0 ] && setup_sects=4
    off=$(( (setup_sects + 1) * 512 + $(le "$VMLINUZ" $((0x248)) 4) ))
    len=$(le "$VMLINUZ" $((0x24c)) 4)
    dd if="$VMLINUZ" bs=64K iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none >"$WORK/payload"
    case "$(od -An -tx1 -N4 "$WORK/payload" | tr -d ' ')" in
        fd377a58) xz -dc --single-stream "$WORK/payload" >"$NEW/vmlinux" ;;
        1f8b08*) gzip -dc "$WORK/payload" >"$NEW/vmlinux" 2>/dev/null || [ -s "$NEW/vmlinux" ] ;;
        28b52ffd) command -v zstd >/dev/null && zstd -qdc "$WORK/payload" >"$NEW/vmlinux" ;;
        *) return 1 ;;
    esac
    [ "$(od -An -tx1 -N4 "$NEW/vmlinux" | tr -d ' ')" = 7f454c46 ]
}
if ! extract_vmlinux; then
    rm -f "$NEW/vmlinux"
    say "warning: could not extract vmlinux from the bzImage payload (optional output)" >&2
fi

# --- benchmark ------------------------------------------------------------
gcc -O2 -static -o "$NEW/emubench" "$GUEST_SRC/emubench.c"
strip "$NEW/emubench"

# --- initramfs tree ---------------------------------------------------------
R=$WORK/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,root,etc,lib/modules}
cp "$BUSYBOX" "$R/bin/busybox"
"$BUSYBOX" --list-full | while read -r applet; do
    [ -e "$R/$applet" ] || [ -L "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
done
install -m 755 "$GUEST_SRC/init" "$R/init"
# busybox acpid runs /etc/acpi/PWRF/* when the power button is pressed.
mkdir -p "$R/etc/acpi/PWRF"
install -m 755 "$GUEST_SRC/power-button" "$R/etc/acpi/PWRF/00000080"
cp "$NEW/emubench" "$R/bin/emubench"
# The kernel opens /dev/console for init before devtmpfs is mounted.
mknod -m 600 "$R/dev/console" c 5 1
mknod -m 666 "$R/dev/null" c 1 3

# Modules: each wanted one that is not built in, with its dependencies first.
# The package has no modules.dep (depmod writes it at install time), so the
# paths come from modules.order and the dependencies from each module's
# .modinfo "depends=" string.
MODDIR=$WORK/kroot/lib/modules/$KREL
declare -A MODPATH=() SEEN=()
ORDER=()
while IFS= read -r path; do
    name=$(basename "$path")
    name=${name%%.ko*}
    MODPATH[${name//-/_}]=$path
done <"$MODDIR/modules.order"
module_bytes() { # module_bytes PATH: the uncompressed .ko on stdout
    case "$1" in
        *.ko.xz) xz -dc "$MODDIR/$1" ;;
        *.ko.gz) gzip -dc "$MODDIR/$1" ;;
        *.ko.zst) zstd -qdc "$MODDIR/$1" ;;
        *) cat "$MODDIR/$1" ;;
    esac
}
add_module() { # add_module NAME: NAME's dependencies, then NAME, into ORDER
    local name=${1//-/_} path dep
    [ -n "${SEEN[$name]:-}" ] && return 0
    SEEN[$name]=1
    path=${MODPATH[$name]:-}
    [ -n "$path" ] || die "module $name (a dependency) is not in $KREL's modules.order"
    for dep in $(module_bytes "$path" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1 | tr ',' ' '); do
        add_module "$dep"
    done
    ORDER+=("$name")
}
BUILTIN=()
for name in "${WANTED_MODULES[@]}"; do
    if grep -qE "/${name}\.ko$" "$MODDIR/modules.builtin" 2>/dev/null; then
        BUILTIN+=("$name")
    elif [ -n "${MODPATH[$name]:-}" ]; then
        add_module "$name"
    else
        die "module $name is neither built into $KREL nor one of its modules"
    fi
done
: >"$R/lib/modules/load.list"
for name in "${ORDER[@]}"; do
    module_bytes "${MODPATH[$name]}" >"$R/lib/modules/$name.ko"
    echo "$name.ko" >>"$R/lib/modules/load.list"
done

(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --owner=0:0 --reproducible) |
    gzip -9n >"$NEW/initramfs.cpio.gz"

echo "console=ttyS0 panic=-1" >"$NEW/cmdline.txt"
{
    echo "$STAMP"
    echo "busybox_banner=$("$BUSYBOX" 2>&1 | head -n1)"
    echo "modules=$(tr '\n' ' ' <"$R/lib/modules/load.list" | sed 's/ $//')"
    echo "modules_builtin=${BUILTIN[*]}"
    echo "emubench_sha256=$(sha256sum "$NEW/emubench" | cut -d' ' -f1)"
} >"$NEW/VERSIONS"

# Publish: VERSIONS last, so an interrupted run is never taken as up to date.
rm -f "$OUTDIR/VERSIONS"
[ -e "$NEW/vmlinux" ] || rm -f "$OUTDIR/vmlinux"
for f in "$NEW"/*; do
    [ "$(basename "$f")" = VERSIONS ] || mv -f "$f" "$OUTDIR/"
done
mv -f "$NEW/VERSIONS" "$OUTDIR/VERSIONS"

say "built $OUTDIR in $(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
(cd "$OUTDIR" && for f in vmlinuz vmlinux initramfs.cpio.gz emubench; do if [ -e "$f" ]; then stat -c '  %s\t%n' "$f"; fi; done)
sed 's/^/  /' "$OUTDIR/VERSIONS"
