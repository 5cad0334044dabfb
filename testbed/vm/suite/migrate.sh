# Two guests on two stock kernels (a: the first, b: the second; both run this after lib.sh):
# vzmigrate --online there and back with a client's TCP session open (the client runs in the
# lane's network namespace: client.sh), the pre-copy guided by soft-dirty bits; and an offline
# --check-only that leaves the container running; then a systemd container (Debian 13 with
# lighttpd, client.sh holding an HTTP keep-alive session) there and back. Coordination through /shared (files written
# under a temporary name, then renamed).
me=$FERRY_GUEST_NAME peer=$FERRY_PEER_NAME
put() { echo "${2:-}" > "/shared/.$1.tmp" && mv "/shared/.$1.tmp" "/shared/$1"; }
waitfor() { # waitfor FILE [SECS]
    local i
    for i in $(seq 1 "${2:-600}"); do
        [ -e "/shared/$1" ] && return 0
        [ -e /shared/abort ] && { bad "the other side gave up (waiting for $1)"; finish; exit 1; }
        sleep 1
    done
    bad "timed out waiting for $1"; put abort; finish; exit 1
}
give_up() { bad "$*"; put abort; finish; exit 1; }
ferry_root
vzagentd --root-dir "$R" fingerprint > /tmp/fp || give_up "vzagentd fingerprint"
put "$me.fp" "$(cat /tmp/fp)"
waitfor "$peer.fp" 300
check "pin $peer" vzagentd --root-dir "$R" trust add "$peer" "$FERRY_PEER_IP" "$(cat /shared/$peer.fp)"
vzagentd --root-dir "$R" run --listen "$FERRY_GUEST_IP" 2> /tmp/agent.log &
for i in $(seq 1 150); do grep -q listening /tmp/agent.log && break; sleep 0.2; done
grep -q listening /tmp/agent.log || give_up "the agent did not listen: $(cat /tmp/agent.log)"
put "$me.ready"

# move [CTID]: migrates CTID (101) to the peer live and checks the report.
move() {
    local ct=${1:-101} out=/tmp/migrate.json err=/tmp/migrate.err rc
    FERRY_MIN_ROUNDS=2 vzmigrate --root-dir "$R" --online --json --progress-lines --max-downtime 60s "$peer" "$ct" > $out 2> $err
    rc=$?
    sed 's/^/  | /' $err
    same "vzmigrate --online $ct $me -> $peer" 0 "$rc"
    [ "$rc" = 0 ] || { cat /tmp/agent.log; return 1; }
    same "the pre-copy used soft-dirty tracking" true "$(jq -r .dirty_tracking $out)"
    local rounds r1 r2
    rounds=$(jq -r '.rounds | length' $out)
    holds "two or more pre-copy rounds ($rounds)" '[ "$rounds" -ge 2 ]'
    r1=$(sed -n 's/^memory round 1: \([0-9]*\) pages read.*/\1/p' $err)
    r2=$(sed -n 's/^memory round 2: \([0-9]*\) pages read.*/\1/p' $err)
    holds "round 2 read only the pages written since round 1 ($r2 of $r1)" '[ -n "$r1" ] && [ -n "$r2" ] && [ "$r2" -lt "$r1" ]'
    same "the container left $me" "CTID $ct deleted unmounted down" "$(vz status "$ct")"
}
# The systemd container's state: is-system-running, failed units, lighttpd's main pid and
# restarts, journald's main pid.
sd_state() {
    vz exec 102 'systemctl is-system-running; systemctl --failed --no-legend --plain | wc -l;
        for u in lighttpd systemd-journald; do systemctl show -p MainPID --value $u; done;
        systemctl show -p NRestarts --value lighttpd' 2>&1 | tr '\n' ' '
}
sd_up() { systemd_state 102 >/dev/null; }

if [ "$me" = a ]; then
    check "create 101" vz create 101 --ipadd 198.18.0.50
    check "start 101" vz start 101
    vz exec 101 'nc -ll -p 7 -e cat </dev/null >/dev/null 2>&1 &'
    vz exec 101 'sleep 100000 </dev/null >/dev/null 2>&1 & echo $! > /tmp/sleeper'
    sleeper=$(vz exec 101 'cat /tmp/sleeper')
    init=$(jq -r .init_pid "$R/vz/run/101.json")
    waitfor b.ready 300
    # An offline check changes nothing (it used to stop the container and start it again).
    out=$(vzmigrate --root-dir "$R" --check-only "$peer" 101 2>&1)
    same "vzmigrate --check-only (offline) passes" 0 "$?"
    same "and left the container's init as it was" "$init" "$(jq -r .init_pid "$R/vz/run/101.json")"
    put ct.up 198.18.0.50
    waitfor client.connected 300
    move || give_up "the migration to $peer failed"
    put moved.1 "$sleeper"
    waitfor moved.2 900
    same "101 runs here again" "CTID 101 exist mounted running" "$(vz status 101)"
    same "the same process came back" sleep "$(vz exec 101 "cat /proc/$sleeper/comm")"
    put done
    waitfor client.result 300
    same "the client's session ran unbroken through both moves" ok "$(cat /shared/client.result)"
    check "stop" vz stop 101

    # A systemd container (Debian 13, lighttpd holding a client's keep-alive session) there and
    # back: the same processes, no unit restarted, the session unbroken.
    check "create 102 (debian-13, systemd)" vz create 102 --ostemplate debian-13 --ipadd 198.18.0.51
    check "start 102" vz start 102
    sd_up
    # Keep-alive sessions outlast a move (lighttpd closes idle ones after 5 s by default).
    vz exec 102 'echo "server.max-keep-alive-idle = 600" >> /etc/lighttpd/lighttpd.conf && systemctl restart lighttpd' >/dev/null 2>&1
    sd_up
    state=$(sd_state)
    holds "102 is running with lighttpd ($state)" '[ "${state%% *}" = running ]'
    put sd.up 198.18.0.51
    waitfor sd.client.connected 300
    move 102 || give_up "the migration of 102 to $peer failed"
    put sd.moved.1 "$state"
    waitfor sd.moved.2 900
    sd_up
    same "102 runs here again, with the same processes and nothing restarted" "$state" "$(sd_state)"
    put sd.done
    waitfor sd.client.result 300
    same "the HTTP client's keep-alive session ran unbroken through both moves" ok "$(cat /shared/sd.client.result)"
    check "stop 102" vz stop 102
else
    waitfor moved.1 900
    sleeper=$(cat /shared/moved.1)
    same "101 runs here ($(uname -r))" "CTID 101 exist mounted running" "$(vz status 101)"
    same "with its process" sleep "$(vz exec 101 "cat /proc/$sleeper/comm")"
    same "in a cgroup v2 leaf here" true "$([ -f /sys/fs/cgroup/ferry/101/cgroup.procs ] && echo true)"
    sleep 2
    move || give_up "the migration back to $peer failed"
    put moved.2
    waitfor done 600

    waitfor sd.moved.1 900
    sd_up
    same "102 (systemd) runs here with the same processes and nothing restarted" "$(cat /shared/sd.moved.1)" "$(sd_state)"
    same "in its delegated cgroup here, controllers enabled as before" "memory pids" "$(cgv2 102 cgroup.subtree_control)"
    sleep 2
    move 102 || give_up "the migration of 102 back to $peer failed"
    put sd.moved.2
    waitfor sd.done 600
fi
finish
