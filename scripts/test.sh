#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs every test: the unit tests, the root-only
# integration suites (namespaces, cgroups, CRIU, templates) on this machine's kernel, the guest
# lane's suite on stock Debian kernels in QEMU (scripts/guest-tests.sh), a short run of the fault
# suite (scripts/chaos.sh) and CRIU's own test programs (scripts/zdtm.sh). Run as root. A
# missing prerequisite fails the run with a message; no test is skipped.
#
#   scripts/test.sh              everything
#   scripts/test.sh ARGS...      extra arguments for cargo test (e.g. --test lifecycle)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh --no-build
export FERRY_CRIU=${FERRY_CRIU:-/opt/ferry/criu/criu}
echo "test: cargo test --workspace --no-fail-fast $*"
log=$(mktemp /tmp/ferry-test.XXXXXX)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# The protocol's decoders and destination state machine, fuzzed for a bounded time.
if [ "$rc" = 0 ] && [ $# = 0 ]; then
    if bash scripts/fuzz.sh; then
        echo "test result: ok. 1 passed; 0 failed (fuzz targets)" >> "$log"
    else
        echo "test result: FAILED. 0 passed; 1 failed (fuzz targets)" >> "$log"
        rc=1
    fi
fi
# The benchmark harness in its smoke configuration, so it never rots: it must run end to end
# and write its report (how fast is not judged here).
if [ "$rc" = 0 ] && [ $# = 0 ]; then
    smoke=$(mktemp -d /tmp/vzbench-smoke.XXXXXX)
    if cargo build -q -p ferry-bench && target/debug/vzbench --smoke --out "$smoke" >/dev/null \
        && grep -q "^| 16 | 0 |" "$smoke/RESULTS.md" && grep -q "QUIC / TCP" "$smoke/RESULTS.md"; then
        echo "test result: ok. 1 passed; 0 failed (vzbench --smoke)" >> "$log"
    else
        echo "test result: FAILED. 0 passed; 1 failed (vzbench --smoke)" >> "$log"
        rc=1
    fi
    rm -rf "$smoke"
fi
# A suite of our own scripts, its lines added to the log; its failure fails the run (with a
# closing line of its own if it printed none).
script_suite() { # script_suite NAME SCRIPT
    set +e
    bash "$2" 2>&1 | tee -a "$log"
    local src=${PIPESTATUS[0]}
    set -e
    if [ "$src" != 0 ]; then
        rc=1
        grep -q "^test result: FAILED.*($1" "$log" \
            || echo "test result: FAILED. 0 passed; 1 failed ($1: $2 exit $src)" >> "$log"
    fi
}
# The fault suite's short fixed-seed run (scripts/chaos.sh: faults at random moments of live
# migrations on the lab, including the destination's agent killed at Restore and at Commit).
[ $# = 0 ] && script_suite chaos scripts/chaos.sh
# CRIU's own test programs (scripts/zdtm.sh's default selection, about 10 minutes): each in a
# fresh container as a control, through vzctl chkpnt/restore and through vzmigrate --online.
[ $# = 0 ] && script_suite zdtm scripts/zdtm.sh
# The guest lane: stock Debian kernels (pure cgroup v2, soft-dirty) in QEMU, the suite inside
# them (scripts/guest-tests.sh; its kernels, root image and binaries cached between runs).
if [ $# = 0 ]; then
    glog=$(mktemp /tmp/ferry-guests.XXXXXX)
    set +e
    bash scripts/guest-tests.sh 2>&1 | tee "$glog"
    grc=${PIPESTATUS[0]}
    set -e
    sed -n 's/^\[[a-z]*\] \(test result: .*\)$/\1/p' "$glog" >> "$log"
    if [ "$grc" != 0 ]; then
        rc=1
        grep -q '^\[[a-z]*\] test result: FAILED' "$glog" \
            || echo "test result: FAILED. 0 passed; 1 failed (guest lane: scripts/guest-tests.sh exit $grc)" >> "$log"
    fi
    rm -f "$glog"
fi
# One closing line for the whole run (cargo prints one per test binary, the last often empty).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$rc"
