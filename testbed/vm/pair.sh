#!/usr/bin/env bash
# Boots TWO ferry guests at once on one network and runs a script in each (testbed/vm/run.sh for
# each); prints both outputs live (lines prefixed [a] and [b]) and exits non-zero if either failed.
#
#   testbed/vm/pair.sh [OPTIONS] KERNEL_A SCRIPT_A KERNEL_B SCRIPT_B
#
# The network: a network namespace (default ferry-guests) holding a bridge br0 (198.18.0.1/24) and
# one tap per guest (fg-a, fg-b); QEMU runs inside that namespace, so nothing is connected to the
# machine's own namespace. Guest a is 198.18.0.11/24, guest b 198.18.0.12/24. The namespace and the
# taps are removed on exit.
#
# Each script sees: FERRY_GUEST_NAME (a or b), FERRY_GUEST_IP, FERRY_PEER_NAME, FERRY_PEER_IP, and
# /shared, one host directory shared (9p) by both guests, for exchanging keys and fingerprints
# (e.g. write /shared/$FERRY_GUEST_NAME.fp, wait for /shared/$FERRY_PEER_NAME.fp).
#
# Options:
#   --timeout SECS   per guest (default $FERRY_GUEST_TIMEOUT or 1800)
#   --keep DIR       keep DIR/a, DIR/b (each guest's job directory) and DIR/shared
#   --netns NAME     the network namespace's name (default ferry-guests)
#   --console        show both consoles live on stderr
#   --client SCRIPT  also run SCRIPT (bash) in the network namespace, as a client of both guests
#                    (198.18.0.1 on the bridge); it sees SHARED (the host path of /shared). Its
#                    output is prefixed [c], and its exit code counts like a guest's.
set -euo pipefail

say() { printf 'pair: %s\n' "$*" >&2; }
die() { printf 'pair: error: %s\n' "$*" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
timeout_s=${FERRY_GUEST_TIMEOUT:-1800}
keep=""
ns=ferry-guests
runopts=()
client=""
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout_s=${2:?}; shift 2 ;;
        --keep) keep=${2:?}; shift 2 ;;
        --netns) ns=${2:?}; shift 2 ;;
        --console) runopts+=(--console); shift ;;
        --client) client=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[ $# -eq 4 ] || die "usage: $0 [OPTIONS] KERNEL_A SCRIPT_A KERNEL_B SCRIPT_B (see --help)"
[ "$(id -u)" = 0 ] || die "run as root"
ka=$1 sa=$2 kb=$3 sb=$4
[ -f "$sa" ] || die "script $sa not found"
[ -f "$sb" ] || die "script $sb not found"
[ -z "$client" ] || [ -f "$client" ] || die "client script $client not found"

if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
    [ -z "$(ip netns pids "$ns")" ] || die "network namespace $ns is in use (processes: $(ip netns pids "$ns" | tr '\n' ' '))"
    say "removing the stale network namespace $ns"
    ip netns del "$ns"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-pair.XXXXXX")
mkdir -p "$work/shared"
pids=()
tails=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for p in "${tails[@]}"; do kill "$p" 2>/dev/null || true; done
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
        ip netns exec "$ns" ip link del fg-a 2>/dev/null || true
        ip netns exec "$ns" ip link del fg-b 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || say "could not remove network namespace $ns"
    fi
    if [ -n "$keep" ]; then
        mkdir -p "$keep"; rm -rf "$keep/shared"; mv "$work/shared" "$keep/shared"
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$ns"
nsx() { ip netns exec "$ns" "$@"; }
nsx ip link set lo up
nsx ip link add br0 type bridge
nsx ip addr add 198.18.0.1/24 dev br0
nsx ip link set br0 up
for g in a b; do
    nsx ip tuntap add dev "fg-$g" mode tap
    nsx ip link set "fg-$g" master br0
    nsx ip link set "fg-$g" up
done

ipa=198.18.0.11 ipb=198.18.0.12
start() { # start NAME KERNEL SCRIPT IP PEER PEER_IP
    local keepopt=()
    [ -z "$keep" ] || keepopt=(--keep "$keep/$1")
    "$here/run.sh" "${runopts[@]}" "${keepopt[@]}" --timeout "$timeout_s" --name "$1" --netns "$ns" --tap "fg-$1" \
        --ip "$4/24" --mac "52:54:00:18:00:$([ "$1" = a ] && echo 11 || echo 12)" --share "$work/shared" \
        --env "FERRY_PEER_NAME=$5" --env "FERRY_PEER_IP=$6" "$2" "$3" > "$work/$1.out" 2>&1 &
    pids+=($!)
    tail -n +1 -F -s 0.5 --pid=$! "$work/$1.out" 2>/dev/null | sed -u "s/^/[$1] /" &
    tails+=($!)
}
say "guest a: $ka $sa ($ipa); guest b: $kb $sb ($ipb); network namespace $ns"
start a "$ka" "$sa" "$ipa" b "$ipb"
start b "$kb" "$sb" "$ipb" a "$ipa"
if [ -n "$client" ]; then
    SHARED=$work/shared ip netns exec "$ns" timeout "$timeout_s" bash "$client" > "$work/c.out" 2>&1 &
    pids+=($!)
    tail -n +1 -F -s 0.5 --pid=$! "$work/c.out" 2>/dev/null | sed -u "s/^/[c] /" &
    tails+=($!)
fi
set +e
wait "${pids[0]}"; rca=$?
wait "${pids[1]}"; rcb=$?
rcc=0
[ -z "$client" ] || { wait "${pids[2]}"; rcc=$?; }
set -e
pids=()
sleep 1
say "guest a ($ka): exit $rca; guest b ($kb): exit $rcb${client:+; client: exit $rcc}"
[ "$rca" = 0 ] || exit "$rca"
[ "$rcb" = 0 ] || exit "$rcb"
exit "$rcc"
