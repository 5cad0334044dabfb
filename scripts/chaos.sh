#!/usr/bin/env bash
# A randomized fault suite for live migration, on the lab (issue #19). Each trial moves container
# 101 (busybox: an echo service and a counter in memory and on disk) live to the other host while
# a client's TCP session runs, and at a random moment brings one of the faults an operator's bad
# day brings, from outside (no fault point compiled into ferry):
#   kill-vzmigrate    SIGKILL of vzmigrate
#   kill-src-agent    SIGKILL of the source's agent (started again after the fault)
#   kill-dst-agent    SIGKILL of the destination's agent (started again)
#   kill-dst-restore  SIGKILL of the destination's agent once its journal says Restore
#   kill-dst-commit   SIGKILL of the destination's agent once its journal says Commit or Done
#   stop-dst-agent    SIGSTOP of the destination's agent for 2-8 s, then SIGCONT
#   cut-link          the destination's uplink down for 2-8 s
#   drop-udp          every UDP packet of the destination dropped (nftables) for 2-8 s
#   fill-dst-disk     the destination's vz/dump (where the images and the page store go; a 1 GiB
#                     file system of the lab's own) filled for 2-8 s
# Then the documented recovery (the agents started again; `vzmigrate --recover` where a journal
# is left; the destination's own timeout) and the checks: exactly one running copy; its counter
# went on from where it was (never back); the client's session unbroken; and nothing left
# anywhere (configurations, private areas, journals, work directories, frozen cgroups, hold
# devices, routes, proxy entries).
#
#   scripts/chaos.sh                   the short fixed-seed run scripts/test.sh uses (both kills
#                                      of the destination's agent, then random faults)
#   scripts/chaos.sh --trials N        N random trials   --seed S  replay a run (printed first)
#
# Prints a line per trial and a closing "test result:" line; exits non-zero if a trial failed.
# Run as root; uses its own lab (ferry-chaos-*), torn down at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
trials=""
seed=""
while [ $# -gt 0 ]; do
    case "$1" in
        --trials) trials=${2:?}; shift 2 ;;
        --seed) seed=${2:?}; shift 2 ;;
        *) echo "usage: $0 [--trials N] [--seed S]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "chaos: run as root" >&2; exit 2; }
short=0
if [ -z "$trials" ]; then
    short=1
    trials=6
    seed=${seed:-1903}
fi
seed=${seed:-$(( $(date +%s) % 100000 ))}
RANDOM=$seed
echo "chaos: seed $seed, $trials trials (replay: scripts/chaos.sh --trials $trials --seed $seed)"

cargo build -q --bins -p ferry -p ferry-testbed
bin=$here/target/debug
export FERRY_CRIU=${FERRY_CRIU:-/opt/ferry/criu/criu}
lab=chaos
base=/tmp/ferry-chaos
addr=198.18.0.70
work=$(mktemp -d /tmp/ferry-chaos-run.XXXXXX)
root() { echo "$base/$lab/$1"; }
on() { local h=$1; shift; nsenter --net="/run/netns/ferry-$lab-$h" -- "$@"; }
vz() { local h=$1; shift; on "$h" "$bin/vzctl" --root-dir "$(root "$h")" "$@"; }
other() { [ "$1" = hostA ] && echo hostB || echo hostA; }
ip_of() { [ "$1" = hostA ] && echo 198.18.0.1 || echo 198.18.0.2; }

agent_pid() { cat "$(root "$1")/vz/run/vzagentd.pid" 2>/dev/null || true; }
agent_alive() { local p; p=$(agent_pid "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
start_agent() {
    agent_alive "$1" && return 0
    on "$1" setsid "$bin/vzagentd" --root-dir "$(root "$1")" run --listen "$(ip_of "$1")" \
        >> "$work/agent-$1.log" 2>&1 < /dev/null &
    local i
    for i in $(seq 1 100); do agent_alive "$1" && return 0; sleep 0.1; done
    echo "chaos: the agent of $1 did not start: $(tail -n 5 "$work/agent-$1.log")" >&2
    return 1
}
cleanup() {
    local rc=$?
    for h in hostA hostB; do
        p=$(agent_pid "$h"); [ -z "$p" ] || { kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; } || true
    done
    for h in hostA hostB; do umount "$(root "$h")/vz/dump" 2>/dev/null || true; done
    "$bin/ferry-lab" --base "$base" down --name "$lab" > /dev/null 2>&1 || true
    [ "$rc" = 0 ] && [ -z "${CHAOS_KEEP:-}" ] && rm -rf "$work" || echo "chaos: logs kept in $work"
    exit "$rc"
}
trap cleanup EXIT

"$bin/ferry-lab" --base "$base" up --name "$lab" --hosts hostA,hostB > /dev/null
fa=$("$bin/vzagentd" --root-dir "$(root hostA)" fingerprint)
fb=$("$bin/vzagentd" --root-dir "$(root hostB)" fingerprint)
"$bin/vzagentd" --root-dir "$(root hostA)" trust add hostB 198.18.0.2 "$fb" > /dev/null
"$bin/vzagentd" --root-dir "$(root hostB)" trust add hostA 198.18.0.1 "$fa" > /dev/null
# Each host's vz/dump on a small file system of its own, which the disk fault fills.
for h in hostA hostB; do
    mkdir -p "$(root "$h")/vz/dump"
    mount -t tmpfs -o size=1g,mode=0700 ferry-chaos-dump "$(root "$h")/vz/dump"
done
start_agent hostA
start_agent hostB

vz hostA create 101 --ipadd "$addr" > /dev/null
vz hostA start 101 > /dev/null
vz hostA exec 101 'nc -ll -p 7 -e cat </dev/null >/dev/null 2>&1 &'
# A counter in memory, written out every 0.1 s (bounded: 100000 steps, under 3 hours).
vz hostA exec 101 'n=0; while [ $n -lt 100000 ]; do n=$((n+1)); echo $n > /tmp/count; sleep 0.1; done </dev/null >/dev/null 2>&1 &'

# The client: one TCP session, a numbered line every 50 ms, each echo checked, until told to
# stop (bounded: 6000 lines). Writes "ok N" or what broke to $1.
cat > "$work/client.sh" <<CLIENT
exec 3<>/dev/tcp/$addr/7 || { echo "could not connect" > "\$1"; exit 1; }
n=0
while [ \$n -lt 6000 ] && [ ! -e "\$1.stop" ]; do
    echo "line \$n" >&3
    read -r -t 90 reply <&3 || { echo "no echo for line \$n within 90 s" > "\$1"; exit 1; }
    [ "\$reply" = "line \$n" ] || { echo "line \$n came back as '\$reply'" > "\$1"; exit 1; }
    n=\$((n + 1)); sleep 0.05
done
echo "ok \$n" > "\$1"
CLIENT

where() { # the host whose copy runs (empty when none or both)
    local a b
    a=$(vz hostA status 101 2>/dev/null || true); b=$(vz hostB status 101 2>/dev/null || true)
    case "$a|$b" in
        *running*\|*running*) echo both ;;
        *running*\|*) echo hostA ;;
        *\|*running*) echo hostB ;;
        *) echo none ;;
    esac
}
count() { # the container's counter on host $1 (a few tries: a command may hold its lock a moment)
    local i c
    for i in 1 2 3 4 5 6 7 8 9 10; do
        c=$(vz "$1" exec 101 'cat /tmp/count' 2>> "$work/count.err" | tr -dc 0-9)
        [ -n "$c" ] && { echo "$c"; return 0; }
        sleep 0.5
    done
}
phase_in() { sed -n 's/.*"phase":"\([A-Za-z]*\)".*/\1/p' "$(root "$1")/vz/run/migrate-in-101.json" 2>/dev/null || true; }

# What is left on HOST that must not be (the container runs on RUNS).
leftovers() {
    local h=$1 runs=$2 r out=""
    r=$(root "$h")
    ls "$r"/vz/run/migrate-in-101.json "$r"/vz/run/migrate-out-101.json > /dev/null 2>&1 && out+=" journal"
    ls -d "$r"/vz/dump/101/.incoming-* "$r"/vz/dump/101/.migrate-* > /dev/null 2>&1 && out+=" work-directory"
    if [ "$h" != "$runs" ]; then
        [ ! -e "$r/etc/vz/conf/101.conf" ] || out+=" config"
        [ ! -e "$r/vz/private/101" ] || out+=" private-area"
        on "$h" ip -4 route show "$addr/32" 2>/dev/null | grep -q . && out+=" route"
        on "$h" ip neigh show proxy 2>/dev/null | grep -q "$addr" && out+=" proxy-entry"
    fi
    on "$h" ip -br link 2>/dev/null | grep -q '^vzh101' && out+=" hold-device"
    grep -qs FROZEN /sys/fs/cgroup/freezer/ferry-lab-$lab-$h/101/freezer.state && out+=" frozen-cgroup"
    echo "$out"
}

# The trials check everything themselves: a failing command is a finding, not the end.
set +e
faults=(kill-vzmigrate kill-src-agent kill-dst-agent kill-dst-restore kill-dst-commit stop-dst-agent cut-link drop-udp fill-dst-disk)
failed=0
passed=0
for t in $(seq 1 "$trials"); do
    src=$(where)
    case "$src" in hostA|hostB) ;; *) echo "chaos: before trial $t the container runs on: $src" >&2; failed=$((failed + 1)); break ;; esac
    dst=$(other "$src")
    if [ "$short" = 1 ] && [ "$t" -le 2 ]; then
        fault=${faults[$((t + 2))]}   # kill-dst-restore, then kill-dst-commit
    else
        fault=${faults[$((RANDOM % ${#faults[@]}))]}
    fi
    delay=$((RANDOM % 3000))
    hold_s=$((2 + RANDOM % 7))
    before=$(count "$src")
    res=$work/client-$t
    on client bash "$work/client.sh" "$res" > /dev/null 2>&1 &
    client=$!
    sleep 1
    on "$src" "$bin/vzmigrate" --root-dir "$(root "$src")" --online "$dst" 101 > "$work/migrate-$t.log" 2>&1 &
    mig=$!
    case "$fault" in
        kill-dst-restore|kill-dst-commit)
            want=Restore; [ "$fault" = kill-dst-commit ] && want="Commit|Done"
            for i in $(seq 1 6000); do
                p=$(phase_in "$dst"); [[ "$p" =~ ^($want)$ ]] && break
                kill -0 "$mig" 2>/dev/null || break
                sleep 0.005
            done
            kill -9 "$(agent_pid "$dst")" 2>/dev/null || true
            what="at phase ${p:-?}" ;;
        *)
            sleep "$(awk "BEGIN{print $delay/1000}")"
            what="after $delay ms"
            case "$fault" in
                kill-vzmigrate) kill -9 "$mig" 2>/dev/null || true ;;
                kill-src-agent) kill -9 "$(agent_pid "$src")" 2>/dev/null || true ;;
                kill-dst-agent) kill -9 "$(agent_pid "$dst")" 2>/dev/null || true ;;
                stop-dst-agent) p=$(agent_pid "$dst"); kill -STOP "$p"; sleep "$hold_s"; kill -CONT "$p"; what+=", ${hold_s} s" ;;
                cut-link) on "$dst" ip link set uplink down; sleep "$hold_s"; on "$dst" ip link set uplink up; what+=", ${hold_s} s" ;;
                drop-udp)
                    on "$dst" nft -f - <<NFT
table inet chaos { chain i { type filter hook input priority 0; meta l4proto udp drop; } chain o { type filter hook output priority 0; meta l4proto udp drop; } }
NFT
                    sleep "$hold_s"; on "$dst" nft delete table inet chaos; what+=", ${hold_s} s" ;;
                fill-dst-disk)
                    fill=$(root "$dst")/vz/dump/chaos-fill
                    dd if=/dev/zero of="$fill" bs=1M 2>/dev/null
                    sleep "$hold_s"; rm -f "$fill"; what+=", ${hold_s} s" ;;
            esac ;;
    esac
    # A killed agent is started again a moment later, as its service manager would, while
    # vzmigrate may still be asking it how the migration ended; vzmigrate ends (it asks for up
    # to a minute in doubt); then the recovery an operator does.
    case "$fault" in kill-*-agent|kill-dst-restore|kill-dst-commit) sleep 2; start_agent "$src"; start_agent "$dst" ;; esac
    for i in $(seq 1 1800); do kill -0 "$mig" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$mig" 2>/dev/null || true
    wait "$mig" 2>/dev/null && mrc=0 || mrc=$?
    start_agent "$src"; start_agent "$dst"
    settled=0
    for i in $(seq 1 90); do
        if [ -e "$(root "$src")/vz/run/migrate-out-101.json" ]; then
            on "$src" "$bin/vzmigrate" --root-dir "$(root "$src")" --recover 101 >> "$work/recover-$t.log" 2>&1 || true
        fi
        if [ -z "$(leftovers "$src" "$(where)")$(leftovers "$dst" "$(where)")" ]; then settled=1; break; fi
        sleep 2
    done
    runs=$(where)
    touch "$res.stop"
    wait "$client" 2>/dev/null || true
    why=""
    case "$runs" in hostA|hostB) ;; *) why+=" runs on: $runs;" ;; esac
    if [ -z "$why" ]; then
        after=$(count "$runs"); sleep 0.5; later=$(count "$runs")
        [ -n "$after" ] && [ -n "$before" ] && [ "$after" -ge "$before" ] && [ "$later" -gt "$after" ] \
            || why+=" counter $before -> $after -> $later;"
    fi
    [ "$settled" = 1 ] || why+=" left on $src:$(leftovers "$src" "$runs"), on $dst:$(leftovers "$dst" "$runs");"
    grep -q '^ok ' "$res" 2>/dev/null || why+=" client: $(cat "$res" 2>/dev/null || echo 'no result');"
    line="trial $t: $fault $what, $src -> $dst: vzmigrate exit $mrc, the container on $runs"
    if [ -z "$why" ]; then
        passed=$((passed + 1)); echo "$line: ok"
    else
        failed=$((failed + 1)); echo "$line: FAILED:$why (logs: $work/migrate-$t.log)"
    fi
done
echo "test result: $([ "$failed" = 0 ] && echo ok || echo FAILED). $passed passed; $failed failed (chaos, seed $seed)"
[ "$failed" = 0 ]
