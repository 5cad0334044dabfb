#!/usr/bin/env bash
# Boots one ferry guest (a stock Debian kernel in QEMU) and runs a script inside it; prints the
# script's output (live) and exits with its exit code. Needs testbed/vm/build.sh's images.
#
#   testbed/vm/run.sh [OPTIONS] KERNEL SCRIPT [ARG...]   run SCRIPT (bash) as root in the guest
#   testbed/vm/run.sh --shell [OPTIONS] KERNEL           an interactive root shell on the console
#
# KERNEL is bookworm (Debian 12, 6.1) or trixie (Debian 13, 6.12). Inside the guest (see
# guest-init.sh): pure cgroup v2 (every controller enabled at the root, PID 1 in /init), ferry's
# binaries in /usr/local/bin, CRIU at /opt/ferry/criu/criu, /tmp a tmpfs (use /var/lib/ferry, ext4,
# for host roots that need idmapped mounts on 6.1), the job directory (9p) at /job, the script's cwd
# /root, FERRY_GUEST_NAME, FERRY_GUEST_KERNEL and FERRY_GUEST_IP in its environment. Modules not
# loaded at boot (xfs, nat, qdiscs, ...) are loaded by the kernel on first use.
#
# Notes for scripts:
#   - The script's stdout/stderr is /job/output, a host file over 9p. A process left running in a
#     container that inherited it (vzctl exec 101 'daemon &') holds that descriptor, and CRIU then
#     cannot dump the container ("Can't lookup mount=.. for fd=1 path=/job/output"): redirect
#     such processes' descriptors (</dev/null >/dev/null 2>&1).
#   - Files that another guest waits for on /shared: write a temporary name, then mv.
#
# Options (before KERNEL):
#   --timeout SECS   bound on the whole guest run (default $FERRY_GUEST_TIMEOUT or 1200; a shell:
#                    14400); QEMU is killed when it runs out (exit code 124)
#   --name NAME      the guest's host name (default: KERNEL)
#   --env K=V        an environment variable for the script (repeatable)
#   --share DIR      a host directory shared read-write as /shared (9p)
#   --netns NS --tap TAP --ip ADDR/PREFIX [--mac MAC]
#                    a network card on tap TAP, which must exist in network namespace NS (QEMU is
#                    started inside NS); the guest's eth0 gets ADDR/PREFIX (use 198.18.0.0/15).
#                    Without --tap the guest has no network card. testbed/vm/pair.sh sets this up.
#   --keep DIR       keep the job directory (script, output, rc, console.log, qemu.log) as DIR
#   --console        show the guest's console (kernel and init messages) live on stderr
#   --mem SIZE --smp N   guest memory (default 2G) and CPUs (default 2)
#   -q, --quiet      no progress lines on stderr
#
# Exit code: the script's; 124 when the timeout killed the guest; 125 when the guest ended without
# a result (it did not boot, or the script was not run; the console's tail is printed).
#
# Environment: FERRY_GUEST_CACHE (default /var/cache/ferry-guests), FERRY_GUEST_ACCEL (tcg or kvm;
# default kvm only where /proc/cpuinfo has vmx/svm: /dev/kvm on these machines is PVM, which cannot
# run stock kernels), FERRY_GUEST_APPEND (more kernel command line; ferry.trace logs the init's
# steps with their uptime to the console), FERRY_GUEST_BZIMAGE=1 (boot vmlinuz rather than the
# extracted vmlinux).
set -euo pipefail

say() { [ "$quiet" = 1 ] || printf 'guest: %s\n' "$*" >&2; }
die() { printf 'guest: error: %s\n' "$*" >&2; exit 2; }

CACHE=${FERRY_GUEST_CACHE:-/var/cache/ferry-guests}
timeout_s=""
name=""
envs=()
share=""
netns=""
tap=""
ip=""
mac=""
keep=""
console=0
mem=2G
smp=2
quiet=0
shell=0
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout_s=${2:?}; shift 2 ;;
        --name) name=${2:?}; shift 2 ;;
        --env) envs+=("${2:?}"); shift 2 ;;
        --share) share=${2:?}; shift 2 ;;
        --netns) netns=${2:?}; shift 2 ;;
        --tap) tap=${2:?}; shift 2 ;;
        --ip) ip=${2:?}; shift 2 ;;
        --mac) mac=${2:?}; shift 2 ;;
        --keep) keep=${2:?}; shift 2 ;;
        --console) console=1; shift ;;
        --mem) mem=${2:?}; shift 2 ;;
        --smp) smp=${2:?}; shift 2 ;;
        -q|--quiet) quiet=1; shift ;;
        --shell) shell=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || die "usage: $0 [OPTIONS] KERNEL SCRIPT [ARG...] | --shell [OPTIONS] KERNEL (see --help)"
kernel=$1; shift
script=""
if [ "$shell" = 0 ]; then
    [ $# -ge 1 ] || die "no SCRIPT given (or use --shell)"
    script=$1; shift
    [ -f "$script" ] || die "script $script not found"
fi
[ "$(id -u)" = 0 ] || die "run as root"
qemu_ok=0
IFS=: read -r -a path_dirs <<< "$PATH"
for d in "${path_dirs[@]}"; do [ -f "$d/qemu-system-x86_64" ] && [ -x "$d/qemu-system-x86_64" ] && qemu_ok=1; done
[ "$qemu_ok" = 1 ] || die "qemu-system-x86_64 missing: apt-get install --no-install-recommends qemu-system-x86"

K=$CACHE/kernels/$kernel
[ -f "$K/vmlinuz" ] && [ -f "$K/initrd.img" ] \
    || die "no kernel '$kernel' in $CACHE/kernels ($(ls "$CACHE/kernels" 2>/dev/null | tr '\n' ' ')); run testbed/vm/build.sh"
# build.sh extracts the uncompressed ELF vmlinux (booted through its PVH entry): this saves the
# kernel's self-decompression, seconds under TCG. FERRY_GUEST_BZIMAGE=1 boots vmlinuz instead.
kimage=$K/vmlinux
if [ ! -f "$kimage" ] || [ "${FERRY_GUEST_BZIMAGE:-0}" = 1 ]; then kimage=$K/vmlinuz; fi
ROOT_IMG=$CACHE/images/root.img
LAYER_IMG=$CACHE/images/layer.img
[ -f "$ROOT_IMG" ] && [ -f "$LAYER_IMG" ] || die "no images in $CACHE/images; run testbed/vm/build.sh"
[ -z "$share" ] || [ -d "$share" ] || die "--share $share is not a directory"
if [ -n "$tap" ]; then
    [ -n "$netns" ] || die "--tap needs --netns (the taps live in a network namespace, never in the host's)"
    ip netns exec "$netns" ip link show "$tap" >/dev/null 2>&1 || die "no tap $tap in network namespace $netns"
    [ -n "$ip" ] || die "--tap needs --ip ADDR/PREFIX"
fi
[ -n "$timeout_s" ] || { if [ "$shell" = 1 ]; then timeout_s=14400; else timeout_s=${FERRY_GUEST_TIMEOUT:-1200}; fi; }
name=${name:-$kernel}

# KVM only with real hardware virtualization; /dev/kvm here is PVM (stock kernels die in it).
accel=${FERRY_GUEST_ACCEL:-}
if [ -z "$accel" ]; then
    if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ]; then accel=kvm; else accel=tcg; fi
fi
case "$accel" in
    kvm) accel_opts=(-accel kvm -cpu host) ;;
    tcg) accel_opts=(-accel tcg,thread=single -cpu max,la57=off) ;;
    *) die "FERRY_GUEST_ACCEL=$accel: tcg or kvm" ;;
esac

job=$(mktemp -d "${TMPDIR:-/tmp}/ferry-guest.XXXXXX")
qpid=""
tails=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
        kill -TERM "$qpid" 2>/dev/null || true
        sleep 1
        kill -KILL "$qpid" 2>/dev/null || true
        pkill -KILL -P "$qpid" 2>/dev/null || true
    fi
    local t
    for t in "${tails[@]}"; do kill "$t" 2>/dev/null || true; done
    if [ -n "$keep" ]; then
        rm -rf "$keep"; mkdir -p "$(dirname "$keep")"; mv "$job" "$keep"
        say "job directory kept: $keep"
    else
        rm -rf "$job"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mode=job
if [ "$shell" = 1 ]; then mode=shell; fi
append="console=ttyS0 root=/dev/vda panic=-1 loglevel=4 ferry.mode=$mode ferry.name=$name"
[ -z "$ip" ] || append+=" ferry.ip=$ip"
if [ "$shell" = 1 ] && sz=$(stty size 2>/dev/null); then
    append+=" ferry.rows=${sz% *} ferry.cols=${sz#* }"
fi
[ -z "${FERRY_GUEST_APPEND:-}" ] || append+=" $FERRY_GUEST_APPEND"

if [ -n "$script" ]; then
    cp "$script" "$job/script"
    : > "$job/args"
    for a in "$@"; do printf '%s\n' "$a" >> "$job/args"; done
fi
{
    printf 'export FERRY_GUEST_NAME=%q FERRY_GUEST_KERNEL=%q\n' "$name" "$kernel"
    [ -z "$ip" ] || printf 'export FERRY_GUEST_IP=%q\n' "${ip%/*}"
    for e in "${envs[@]}"; do printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"; done
} > "$job/env"

qemu=(qemu-system-x86_64 "${accel_opts[@]}" -m "$mem" -smp "$smp" -no-reboot
      -kernel "$kimage" -initrd "$K/initrd.img" -append "$append"
      -drive "file=$ROOT_IMG,format=raw,if=virtio,snapshot=on"
      -drive "file=$LAYER_IMG,format=raw,if=virtio,readonly=on"
      -virtfs "local,path=$job,mount_tag=job,security_model=none,id=job")
[ -z "$share" ] || qemu+=(-virtfs "local,path=$(cd "$share" && pwd),mount_tag=shared,security_model=none,id=shared")
if [ -n "$tap" ]; then
    mac=${mac:-52:54:00:$(printf '%s' "$name" | md5sum | sed 's/^\(..\)\(..\)\(..\).*/\1:\2:\3/')}
    qemu+=(-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" -device "virtio-net-pci,netdev=n0,mac=$mac")
else
    qemu+=(-nic none)
fi
netns_cmd=()
[ -z "$netns" ] || netns_cmd=(ip netns exec "$netns")

start=$(date +%s.%N)
if [ "$shell" = 1 ]; then
    say "booting $kernel ($(cat "$K/version"), $accel) with a shell on the console; Ctrl-A X kills QEMU"
    set +e
    # --foreground: QEMU must stay in the terminal's foreground process group to read it.
    timeout --foreground -k 10 "$timeout_s" "${netns_cmd[@]}" "${qemu[@]}" -nographic
    rc=$?
    set -e
    [ "$rc" = 124 ] && say "timeout after ${timeout_s}s: QEMU killed"
    exit "$rc"
fi

say "booting $kernel ($(cat "$K/version"), $accel, timeout ${timeout_s}s): $(basename "$script") $*"
timeout -k 10 "$timeout_s" "${netns_cmd[@]}" "${qemu[@]}" -display none -monitor none \
    -serial "file:$job/console.log" < /dev/null > "$job/qemu.log" 2>&1 &
qpid=$!
if [ "$console" = 1 ]; then
    tail -n +1 -F -s 0.5 --pid="$qpid" "$job/console.log" >&2 2>/dev/null &
    tails+=($!)
fi
tail -n +1 -F -s 0.5 --pid="$qpid" "$job/output" 2>/dev/null &
tails+=($!)
set +e
wait "$qpid"
qrc=$?
set -e
qpid=""
wait "${tails[@]}" 2>/dev/null || true
tails=()
end=$(date +%s.%N)
total=$(awk "BEGIN{printf \"%.1f\", $end - $start}")
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    say "timeout after ${timeout_s}s: QEMU killed; console tail:"
    tail -n 30 "$job/console.log" >&2 2>/dev/null || true
    exit 124
fi
if [ ! -f "$job/rc" ]; then
    say "the guest ended (QEMU exit $qrc) without a result; console tail:"
    tail -n 40 "$job/console.log" >&2 2>/dev/null || true
    [ ! -s "$job/qemu.log" ] || { say "QEMU said:"; cat "$job/qemu.log" >&2; }
    exit 125
fi
rc=$(cat "$job/rc")
boot="?"
[ ! -f "$job/boot-seconds" ] || boot=$(awk "BEGIN{printf \"%.1f\", $(stat -c %.3Y "$job/boot-seconds") - $start}")
say "$kernel: script exit $rc; the script started ${boot}s after QEMU (kernel uptime $(cat "$job/boot-seconds" 2>/dev/null || echo ?)s), whole run ${total}s"
exit "$rc"
