#!/usr/bin/env bash
# ferry in QEMU guests running stock Debian kernels (the guest lane, issue #18): pure cgroup v2,
# soft-dirty memory tracking, things this machine's own kernel does not have.
#
#   scripts/guests.sh build [--refresh] [--no-cargo]   build/refresh kernels, root image, ferry layer
#   scripts/guests.sh kernels                          the kernels there are (names for KERNEL)
#   scripts/guests.sh shell [RUN-OPTIONS] KERNEL       an interactive root shell in a guest
#                                                      (Ctrl-A X leaves QEMU; 'exit' powers off)
#   scripts/guests.sh run [RUN-OPTIONS] KERNEL SCRIPT [ARG...]
#                                                      run SCRIPT in a guest; its output, its exit code
#   scripts/guests.sh pair [PAIR-OPTIONS] KERNEL_A SCRIPT_A KERNEL_B SCRIPT_B
#                                                      two guests on one bridge (198.18.0.11, .12)
#
# KERNEL: bookworm (Debian 12, 6.1) or trixie (Debian 13, 6.12). run, shell and pair first bring
# the images up to date (scripts/guests.sh build: cargo build --release into the cache's own target
# dir, then the ferry layer; a second or two when nothing changed); --no-build right after the
# command skips that. RUN-OPTIONS and PAIR-OPTIONS: testbed/vm/run.sh --help, testbed/vm/pair.sh
# --help (--timeout, --keep DIR, --console, --share DIR, --env K=V, ...). The options go before KERNEL.
#
# Examples:
#   scripts/guests.sh run trixie my-test.sh
#   echo 'vzctl --root-dir /tmp/r check' > /tmp/c.sh && scripts/guests.sh run --no-build bookworm /tmp/c.sh
#   scripts/guests.sh shell --no-build trixie
#
# Everything is kept in FERRY_GUEST_CACHE (default /var/cache/ferry-guests). Needs root,
# qemu-system-x86, debootstrap, e2fsprogs (build.sh names what is missing). One guest uses one host
# CPU (TCG, single-threaded) and 2 GiB; a stock kernel boots to the script in about 7 s here.
set -euo pipefail

vm=$(cd "$(dirname "$0")/../testbed/vm" && pwd)
die() { printf 'guests: error: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

cmd=${1:-}
[ -n "$cmd" ] || { usage >&2; exit 2; }
shift
build_first() {
    if [ "${1:-}" = --no-build ] || [ "${FERRY_GUEST_NO_BUILD:-0}" = 1 ]; then return 1; fi
    "$vm/build.sh" >&2
}
case "$cmd" in
    build) exec "$vm/build.sh" "$@" ;;
    kernels)
        cache=${FERRY_GUEST_CACHE:-/var/cache/ferry-guests}
        for k in "$cache"/kernels/*/version; do
            [ -f "$k" ] || die "no kernels yet: scripts/guests.sh build"
            printf '%-10s %s\n' "$(basename "$(dirname "$k")")" "$(cat "$k")"
        done
        ;;
    shell)
        if [ "${1:-}" = --no-build ]; then shift; else build_first || true; fi
        exec "$vm/run.sh" --shell "$@"
        ;;
    run)
        if [ "${1:-}" = --no-build ]; then shift; else build_first || true; fi
        exec "$vm/run.sh" "$@"
        ;;
    pair)
        if [ "${1:-}" = --no-build ]; then shift; else build_first || true; fi
        exec "$vm/pair.sh" "$@"
        ;;
    -h|--help|help) usage ;;
    *) die "unknown command '$cmd' (build, kernels, shell, run, pair; see --help)" ;;
esac
