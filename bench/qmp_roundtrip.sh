#!/bin/sh
# qmp_roundtrip.sh — QMP round-trip latency of emud against QEMU.
#
# Usage: bench/qmp_roundtrip.sh [BUILD_DIR]      (default: ./build)
# Environment: REPS (repetitions, default 5), REQUESTS_1 (requests of the
# single client, default 10000), REQUESTS_100 (requests per client with 100
# clients, default 200), QEMU (default qemu-system-x86_64).
#
# Builds nothing: needs BUILD_DIR/daemon/emud and BUILD_DIR/bench/qmp_bench.
# Starts one emud with one VM (machine none) and two QEMUs (-machine none):
# one with a single QMP monitor for the 1-client runs, one with 100 monitors
# for the 100-client runs (a QEMU monitor serves one client at a time, so 100
# concurrent clients need 100 monitors; each extra monitor also slows QEMU's
# loop, which is why the 1-client run gets its own QEMU). emud serves every
# client on the VM's one qmp.sock. Runs qmp_bench against both, alternating which goes first, and
# prints the median over the repetitions of each run's median and p99.
# Target: emud/QEMU ratio <= 1.0.
set -eu

BUILD=${1:-build}
REPS=${REPS:-5}
REQUESTS_1=${REQUESTS_1:-10000}
REQUESTS_100=${REQUESTS_100:-200}
QEMU=${QEMU:-qemu-system-x86_64}
EMUD="$BUILD/daemon/emud"
BENCH="$BUILD/bench/qmp_bench"

for bin in "$EMUD" "$BENCH"; do
    if [ ! -x "$bin" ]; then
        echo "qmp_roundtrip: $bin is missing; build it first (ninja -C $BUILD emud qmp_bench)" >&2
        exit 1
    fi
done
command -v "$QEMU" >/dev/null 2>&1 || { echo "qmp_roundtrip: $QEMU not found" >&2; exit 1; }

TMP=$(mktemp -d /tmp/qmp-roundtrip.XXXXXX)
EMUD_PID=
QEMU_PIDS=
cleanup() {
    for pid in $EMUD_PID $QEMU_PIDS; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap "exit 130" INT TERM

wait_socket() { # PATH PID
    i=0
    while [ ! -S "$1" ]; do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "qmp_roundtrip: process $2 exited before $1 appeared" >&2
            exit 1
        fi
        i=$((i + 1))
        [ $i -lt 500 ] || { echo "qmp_roundtrip: $1 did not appear" >&2; exit 1; }
        sleep 0.02
    done
}

# emud, one idle VM.
"$EMUD" --state-dir "$TMP/emud" --log-level warn >"$TMP/emud.log" 2>&1 &
EMUD_PID=$!
wait_socket "$TMP/emud/emud.sock" "$EMUD_PID"
python3 - "$TMP/emud/emud.sock" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
f.readline()
for cmd in ({"execute": "qmp_capabilities"},
            {"execute": "__org.emud_vm-create", "arguments": {"config": {"name": "bench", "machine": {"type": "none"}}}}):
    f.write(json.dumps(cmd).encode() + b"\n"); f.flush()
    while True:
        reply = json.loads(f.readline())
        if "event" not in reply:
            break
    if "error" in reply:
        sys.exit("qmp_roundtrip: %s failed: %s" % (cmd["execute"], reply["error"]))
EOF
EMUD_SOCK="$TMP/emud/vms/bench/qmp.sock"
wait_socket "$EMUD_SOCK" "$EMUD_PID"

# QEMU with one monitor, QEMU with 100 monitors.
"$QEMU" -machine none -display none -nodefaults -qmp "unix:$TMP/qemu-single.sock,server=on,wait=off" \
    >"$TMP/qemu-single.log" 2>&1 &
QEMU_PIDS=$!
wait_socket "$TMP/qemu-single.sock" "$!"
set --
i=0
while [ $i -lt 100 ]; do
    set -- "$@" -qmp "unix:$TMP/qemu$i.sock,server=on,wait=off"
    i=$((i + 1))
done
"$QEMU" -machine none -display none -nodefaults "$@" >"$TMP/qemu.log" 2>&1 &
QEMU_PIDS="$QEMU_PIDS $!"
wait_socket "$TMP/qemu99.sock" "$!"
QEMU_SOCKS=$(i=0; while [ $i -lt 100 ]; do printf '%s ' "$TMP/qemu$i.sock"; i=$((i + 1)); done)

run() { # NAME CLIENTS REQUESTS SOCKETS...
    name=$1 clients=$2 requests=$3
    shift 3
    if ! line=$("$BENCH" -c "$clients" -n "$requests" "$@"); then
        echo "qmp_roundtrip: qmp_bench failed against $name" >&2
        exit 1
    fi
    echo "$name $line" >>"$TMP/results"
    echo "  $name $line" >&2
}

rep=1
while [ $rep -le "$REPS" ]; do
    echo "repetition $rep/$REPS" >&2
    for clients in 1 100; do
        if [ "$clients" = 1 ]; then
            n=$REQUESTS_1 qsocks="$TMP/qemu-single.sock"
        else
            n=$REQUESTS_100 qsocks=$QEMU_SOCKS
        fi
        # shellcheck disable=SC2086 # qsocks is a list of paths without spaces
        if [ $((rep % 2)) = 1 ]; then
            run emud "$clients" "$n" "$EMUD_SOCK"
            run qemu "$clients" "$n" $qsocks
        else
            run qemu "$clients" "$n" $qsocks
            run emud "$clients" "$n" "$EMUD_SOCK"
        fi
    done
    rep=$((rep + 1))
done

python3 - "$TMP/results" "$REPS" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, *fields = line.split()
    kv = dict(f.split("=") for f in fields)
    runs.setdefault((name, int(kv["clients"])), []).append(kv)

def med(name, clients, key):
    return statistics.median(float(r[key]) for r in runs[(name, clients)])

print("QMP query-status round trip, median over %s repetitions (microseconds)" % sys.argv[2])
print("%-8s %12s %12s %12s %12s %8s %8s %12s %12s" % ("clients", "emud median", "emud p99", "QEMU median",
      "QEMU p99", "ratio", "p99 ratio", "emud req/s", "QEMU req/s"))
ok = True
for clients in (1, 100):
    em, ep, qm, qp = (med(n, clients, k) for n in ("emud", "qemu") for k in ("median_us", "p99_us"))
    ratio, pratio = em / qm, ep / qp
    ok = ok and ratio <= 1.0
    print("%-8d %12.1f %12.1f %12.1f %12.1f %8.2f %8.2f %12.0f %12.0f" % (
        clients, em, ep, qm, qp, ratio, pratio, med("emud", clients, "throughput_rps"),
        med("qemu", clients, "throughput_rps")))
print("ratio = emud median / QEMU median; target <= 1.0: %s" % ("met" if ok else "NOT met"))
EOF
