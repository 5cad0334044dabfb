#!/usr/bin/env bash
# The main job, end to end: sets everything up, brings up a lab of two hosts and a client in
# network namespaces, starts an agent on each host and pins their keys, creates and starts a
# busybox container with an address on hostA, opens a TCP session from the client that echoes a
# counter, migrates the container live to hostB and back with `vzmigrate --online`, and shows
# that the session ran on unbroken, with the migration statistics. Cleans up after itself.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
bin="$here/target/release"
cargo build -q --release -p ferry-testbed
lab=demo
base=/var/lib/ferry-lab
"$bin/ferry-lab" --base "$base" down --name "$lab" >/dev/null
agents=()
cleanup() {
    for p in "${agents[@]}"; do kill "$p" 2>/dev/null || true; done
    "$bin/ferry-lab" --base "$base" down --name "$lab" >/dev/null 2>&1 || true
}
trap cleanup EXIT
step() { printf '\n==> %s\n' "$*"; }
on() { local h=$1; shift; nsenter --net="/run/netns/ferry-$lab-$h" -- "$@"; }

step "bring up the lab: hostA, hostB and a client on a fabric bridge (198.18.0.0/24)"
"$bin/ferry-lab" --base "$base" up --name "$lab"
A=$base/$lab/hostA
B=$base/$lab/hostB

step "pin each host's key on the other (vzagentd trust add), start the agents"
fa=$("$bin/vzagentd" --root-dir "$A" fingerprint)
fb=$("$bin/vzagentd" --root-dir "$B" fingerprint)
"$bin/vzagentd" --root-dir "$A" trust add hostB 198.18.0.2 "$fb"
"$bin/vzagentd" --root-dir "$B" trust add hostA 198.18.0.1 "$fa"
on hostA "$bin/vzagentd" --root-dir "$A" run --listen 198.18.0.1 2>"$base/$lab/agentA.log" & agents+=($!)
on hostB "$bin/vzagentd" --root-dir "$B" run --listen 198.18.0.2 2>"$base/$lab/agentB.log" & agents+=($!)
sleep 1

step "create and start container 101 (busybox) with address 198.18.0.10 on hostA"
on hostA "$bin/vzctl" --root-dir "$A" create 101 --ostemplate busybox --ipadd 198.18.0.10 --hostname demo
on hostA "$bin/vzctl" --root-dir "$A" start 101
on hostA "$bin/vzctl" --root-dir "$A" exec 101 'nc -ll -p 7 -e cat </dev/null >/dev/null 2>&1 &'
on hostA "$bin/vzlist" --root-dir "$A"

step "a TCP session from the client: a counter sent every 20 ms, each echo checked"
cat > "$base/$lab/client.sh" <<'CLIENT'
exec 3<>/dev/tcp/198.18.0.10/7
i=0; worst=0
while [ $i -lt 600 ]; do
    t0=$(date +%s%N); echo "count $i" >&3; read -r -t 30 line <&3 || { echo "client: session broke at $i"; exit 1; }
    [ "$line" = "count $i" ] || { echo "client: wrong echo at $i: $line"; exit 1; }
    dt=$(( ($(date +%s%N) - t0) / 1000000 )); [ $dt -gt $worst ] && worst=$dt
    i=$((i+1)); sleep 0.02
done
echo "client: 600 echoes on one connection, every one correct; longest wait for an echo ${worst} ms"
CLIENT
on client bash "$base/$lab/client.sh" > "$base/$lab/client.out" 2>&1 & client=$!
sleep 2

step "vzmigrate --online hostB 101 (from hostA)"
on hostA "$bin/vzmigrate" --root-dir "$A" --online --times hostB 101
on hostB "$bin/vzlist" --root-dir "$B"
sleep 2

step "vzmigrate --online hostA 101 (back from hostB)"
on hostB "$bin/vzmigrate" --root-dir "$B" --online --times hostA 101
on hostA "$bin/vzlist" --root-dir "$A"

step "the client's session, which ran all along"
wait "$client"
cat "$base/$lab/client.out"
step "done: container 101 went hostA -> hostB -> hostA while its TCP session ran on"
