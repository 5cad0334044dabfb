#!/usr/bin/env bash
# Runs every fuzz target of migrate-proto for a bounded time (default 15 s each; FUZZ_SECONDS
# or the first argument). Uses cargo-fuzz on the stable toolchain (RUSTC_BOOTSTRAP lets it pass
# the compiler flags it needs), without a sanitizer: the crate is safe Rust, and what is looked
# for is panics and unbounded allocation (-malloc_limit_mb). A crash fails the run and leaves
# its input under migrate-proto/fuzz/artifacts/.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-${FUZZ_SECONDS:-15}}
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz: cargo-fuzz missing: run scripts/setup.sh" >&2; exit 1; }
cd "$here"
cargo run -q -p migrate-proto --example fuzz_seeds -- migrate-proto/fuzz/corpus/dest_machine >/dev/null
cd migrate-proto
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
for t in $targets; do
    log=$(mktemp /tmp/ferry-fuzz-$t.XXXXXX)
    if cargo fuzz run --sanitizer none "$t" -- -max_total_time="$secs" -rss_limit_mb=1024 -malloc_limit_mb=64 -max_len=1048576 >"$log" 2>&1; then
        echo "fuzz: $t: $(grep -E '^Done' "$log" | tail -n1)"
        rm -f "$log"
    else
        echo "fuzz: $t FAILED; log: $log" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" >&2 || tail -n 30 "$log" >&2
        exit 1
    fi
done
