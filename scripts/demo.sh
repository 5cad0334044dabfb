#!/usr/bin/env bash
# The main job, end to end, on a throwaway host root: sets everything up, then creates a busybox
# container, starts it, uses it, checkpoints nothing yet (live migration lands with its issue),
# stops it and destroys it, saying what it does at each step.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
bin="$here/target/release"
host=$(mktemp -d /tmp/ferry-demo.XXXXXX)
export FERRY_ROOT="$host"
mkdir -p "$host/etc/vz"
# A host of its own, with its own cgroup parent, so the demo never touches a real host's containers.
cat > "$host/etc/vz/vz.conf" <<'CONF'
VE_ROOT=/vz/root/$VEID
VE_PRIVATE=/vz/private/$VEID
TEMPLATE=/vz/template
CONFIGFILE="basic"
DEF_OSTEMPLATE="busybox"
CGROUP_PARENT="ferry-demo"
STOP_TIMEOUT="20"
CONF
cleanup() {
    "$bin/vzctl" stop --fast 101 -q >/dev/null 2>&1 || true
    "$bin/vzctl" destroy 101 -q >/dev/null 2>&1 || true
    rm -rf "$host"
}
trap cleanup EXIT
step() { printf '\n==> %s\n' "$*"; }

step "host root $host"
step "vzctl create 101 --ostemplate busybox --hostname demo --name web"
time "$bin/vzctl" create 101 --ostemplate busybox --hostname demo --name web
step "vzctl start web"
"$bin/vzctl" start web
step "vzlist -a"
"$bin/vzlist" -a
step "vzctl exec web: who am I, what do I see"
"$bin/vzctl" exec web 'echo "hostname: $(hostname)"; echo "pid 1: $(cat /proc/1/comm)"; echo "processes:"; ps'
step "vzctl exec web 'exit 3' returns the command's exit code"
set +e; "$bin/vzctl" exec web 'exit 3'; echo "exit code: $?"; set -e
step "vzctl status web --json"
"$bin/vzctl" status web --json
step "vzctl stop web (clean shutdown through busybox init)"
time "$bin/vzctl" stop web
step "the container's console log"
cat "$host/vz/log/101.console.log"
step "vzctl destroy web"
"$bin/vzctl" destroy web
"$bin/vzctl" status 101
step "done: created, started, used, stopped and destroyed container 101"
