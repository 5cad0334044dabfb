#!/usr/bin/env bash
# The guest lane's suite (issue #18): ferry on the kernels its users run, stock Debian kernels
# in QEMU guests (pure cgroup v2, soft-dirty tracking; this machine's own kernel has neither).
#   1. one guest per kernel (bookworm's 6.1 and trixie's 6.12, at once): vzctl check, the
#      lifecycle of a userns container, every limit live and --save'd with the cgroup v2 files
#      it wrote and its effect inside, ubc, chkpnt/restore and suspend/resume with live limits
#      kept, the v2 freezer (testbed/vm/suite/single.sh); then a systemd container (Debian 13
#      with lighttpd): boot to running, limits seen inside, services, journal and timers kept
#      through chkpnt/restore, stop/start/restart (testbed/vm/suite/systemd.sh); then the Debian
#      package: apt installs it, its vzboot starts and stops containers in BOOTORDER, apt removes
#      it (testbed/vm/suite/package.sh);
#   2. two guests on the two kernels: vzmigrate --online there and back with a client's TCP
#      session open, pre-copy rounds after the first reading only soft-dirty pages, and an
#      offline --check-only that changes nothing (testbed/vm/suite/migrate.sh, client.sh).
# Each check prints "ok - ..." or "not ok - ..."; each guest ends with a "test result:" line that
# scripts/test.sh counts. Builds what is missing first (testbed/vm/build.sh: kernels, root image
# and ferry's release binaries, cached in FERRY_GUEST_CACHE). A missing prerequisite fails
# with what to install. Run as root.
#
#   scripts/guest-tests.sh              build if needed, then both parts
#   scripts/guest-tests.sh single       only part 1      scripts/guest-tests.sh pair   only part 2
#   KEEP=DIR scripts/guest-tests.sh     keep each guest's job directory (console log) in DIR
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vm=$here/testbed/vm
suite=$vm/suite
what=${1:-all}
case "$what" in all|single|pair) ;; *) echo "usage: $0 [single|pair]" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "guest-tests: run as root" >&2; exit 2; }

bash "$vm/build.sh"
work=$(mktemp -d /tmp/ferry-guest-tests.XXXXXX)
trap 'rm -rf "$work"' EXIT
{ cat "$suite/lib.sh" "$suite/single.sh" "$suite/systemd.sh" "$suite/package.sh"; echo finish; } > "$work/single.sh"
cat "$suite/lib.sh" "$suite/migrate.sh" > "$work/migrate.sh"
keep() { [ -z "${KEEP:-}" ] || echo "--keep $KEEP/$1"; }
rc=0
if [ "$what" != pair ]; then
    echo "guest-tests: part 1, one guest per kernel (bookworm 6.1, trixie 6.12)"
    pids=()
    for k in bookworm trixie; do
        # shellcheck disable=SC2046
        bash "$vm/run.sh" -q --timeout 900 $(keep "$k") "$k" "$work/single.sh" 2>&1 | sed -u "s/^/[$k] /" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
fi
if [ "$what" != single ]; then
    echo "guest-tests: part 2, live migration between bookworm (6.1) and trixie (6.12)"
    # shellcheck disable=SC2046
    bash "$vm/pair.sh" --timeout 1200 $(keep pair) --client "$suite/client.sh" \
        bookworm "$work/migrate.sh" trixie "$work/migrate.sh" || rc=1
fi
exit "$rc"
