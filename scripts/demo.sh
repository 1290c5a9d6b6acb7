#!/bin/bash
# scripts/demo.sh — the main job: set up, build, make the demo guest (Debian's
# own kernel + busybox), start emud and boot the guest on our x86 engine with
# your terminal on its serial console, as `qemu-system-x86_64 -nographic` does.
#
# In the guest: a busybox shell. `poweroff` (or Ctrl-a x) ends the VM; Ctrl-a c
# switches to the monitor (QEMU's HMP: info status, info cpus, system_reset…).
# EMUD_DEMO_ARGS adds emuctl flags (e.g. "-smp 2"); EMUD_DEMO_KERNEL=vmlinux
# boots the same kernel's ELF (no decompressor: faster).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/setup.sh"
"$top/scripts/build.sh" "$top/build"
guest=$top/build/guest
"$top/scripts/make-guest.sh" "$guest"

emud=$top/build/daemon/emud
emuctl=$top/build/clients/emuctl
state=$(mktemp -d /tmp/emud-demo.XXXXXX)
sock=$state/emud.sock
"$emud" --state-dir "$state" --log-level info 2>"$state/emud.log" &
emud_pid=$!
trap 'kill $emud_pid 2>/dev/null; wait $emud_pid 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done

kernel=$guest/${EMUD_DEMO_KERNEL:-vmlinuz}
printf '\n\033[1memud is running (pid %s, socket %s). Booting %s:\033[0m\n' "$emud_pid" "$sock" "$kernel"
# shellcheck disable=SC2086 # EMUD_DEMO_ARGS is a list of flags
cmd=("$emuctl" --socket "$sock" run -name demo -m 512 -kernel "$kernel" -initrd "$guest/initramfs.cpio.gz"
     -append "console=ttyS0 panic=-1 emu_mode=shell" -nographic ${EMUD_DEMO_ARGS:-})
printf '$ %s\n\n' "${cmd[*]}"
set +e
"${cmd[@]}"
rc=$?
set -e
printf '\n\033[1mThe VM ended (emuctl exit status %s). The daemon log: %s\033[0m\n' "$rc" "$state/emud.log"
tail -n 5 "$state/emud.log"
