#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs every test: the unit tests and the root-only
# integration suites (namespaces, cgroups, CRIU, templates). Run as root. A missing
# prerequisite fails the run with a message; no test is skipped.
#
#   scripts/test.sh              everything
#   scripts/test.sh ARGS...      extra arguments for cargo test (e.g. --test lifecycle)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh --no-build
export FERRY_CRIU=${FERRY_CRIU:-/opt/ferry/criu/criu}
echo "test: cargo test --workspace $*"
cargo test --workspace "$@"
