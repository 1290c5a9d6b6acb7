#!/bin/bash
# scripts/demo.sh — the main job: set up, build, start emud, create a VM and
# hold a QMP conversation with it, printed as it happens.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/setup.sh"
"$top/scripts/build.sh" "$top/build"

emud=$top/build/daemon/emud
emuctl=$top/build/clients/emuctl
state=$(mktemp -d /tmp/emud-demo.XXXXXX)
sock=$state/emud.sock
"$emud" --state-dir "$state" --log-level info 2>"$state/emud.log" &
emud_pid=$!
trap 'kill $emud_pid 2>/dev/null; wait $emud_pid 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "emud is running (pid $emud_pid); its control socket is $sock"
say "Create a VM from QEMU flags (machine 'none' until the PC machine lands):"
run "$emuctl" --socket "$sock" run -name demo -machine none -m 512M -S -daemonize
run "$emuctl" --socket "$sock" list

say "A QMP conversation on the VM's own socket, exactly as with QEMU:"
python3 - "$state/vms/demo/qmp.sock" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rwb")
def show(direction, msg): print("%s %s" % (direction, json.dumps(msg)))
def recv():
    msg = json.loads(f.readline()); show("<-", msg); return msg
def send(cmd, args=None):
    msg = {"execute": cmd}
    if args: msg["arguments"] = args
    show("->", msg); f.write((json.dumps(msg) + "\r\n").encode()); f.flush()
    while "event" in recv(): pass
recv()
for cmd, args in [("qmp_capabilities", None), ("query-status", None), ("cont", None),
                  ("query-status", None), ("query-name", None), ("stop", None),
                  ("human-monitor-command", {"command-line": "info status"}), ("query-kvm", None),
                  ("no-such-command", None), ("quit", None)]:
    send(cmd, args)
try:
    while True: recv()
except Exception:
    pass
PY
run "$emuctl" --socket "$sock" list
say "Done. docs/qmp.md lists every command; docs/emuctl.md every flag."
