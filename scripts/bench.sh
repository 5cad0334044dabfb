#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), builds ferry optimized, and runs the benchmarks on the
# testbed, writing docs/bench/RESULTS.md and results.json. Run as root. Takes long (the full
# configuration moves containers of up to 1 GiB three ways, three times each); extra arguments
# go to vzbench, e.g.
#
#   scripts/bench.sh --sizes 64,256 --links none --runs 5
#   scripts/bench.sh --only transport
#   scripts/bench.sh --smoke
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh --no-build
export FERRY_CRIU=${FERRY_CRIU:-/opt/ferry/criu/criu}
cargo build --release --workspace
exec target/release/vzbench "$@"
