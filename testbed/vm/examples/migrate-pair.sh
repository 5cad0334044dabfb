# Live migration between two guests (a = source, b = destination); both run this script.
#   scripts/guests.sh pair bookworm testbed/vm/examples/migrate-pair.sh trixie testbed/vm/examples/migrate-pair.sh
# The agents pin each other through /shared (fingerprints written under a temporary name, then mv).
# Both guests run this; a is the source, b the destination. Coordination through /shared.
R=/var/lib/ferry
me=$FERRY_GUEST_NAME peer=$FERRY_PEER_NAME
t() { local s=$EPOCHREALTIME; echo "+ $*"; "$@"; local rc=$?; echo "  -> rc=$rc ($(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $s}")s)"; return $rc; }
waitfor() { local i; for i in $(seq 1 "${2:-300}"); do [ -e "/shared/$1" ] && return 0; [ -e /shared/abort ] && { echo "peer aborted"; exit 1; }; sleep 1; done; echo "timeout waiting for /shared/$1"; touch /shared/abort; exit 1; }
fail() { echo "FAILED: $*"; touch /shared/abort; exit 1; }

vzagentd --root-dir $R fingerprint > /shared/$me.fp.tmp && mv /shared/$me.fp.tmp /shared/$me.fp || fail "fingerprint"
waitfor $peer.fp
t vzagentd --root-dir $R trust add $peer $FERRY_PEER_IP "$(cat /shared/$peer.fp)" || fail "trust add"
vzagentd --root-dir $R run --tick 5 --listen $FERRY_GUEST_IP 2> /tmp/agent.log &
for i in $(seq 1 100); do grep -q listening /tmp/agent.log && break; sleep 0.2; done
grep -q listening /tmp/agent.log || { cat /tmp/agent.log; fail "agent did not listen"; }
touch /shared/$me.ready
if [ "$me" = a ]; then
    t vzpkg --root-dir $R create-cache busybox >/dev/null || fail create-cache
    t vzctl --root-dir $R create 101 --ostemplate busybox || fail create
    t vzctl --root-dir $R start 101 || fail start
    t vzctl --root-dir $R exec 101 'sleep 100000 </dev/null >/dev/null 2>&1 &' 
    t vzctl --root-dir $R exec 101 'ps; hostname'
    waitfor $peer.ready
    t vzmigrate --root-dir $R --check-only $peer 101
    t vzmigrate --root-dir $R --online -t $peer 101; rc=$?
    vzlist --root-dir $R -a
    touch /shared/a.migrated
    [ $rc = 0 ] || { echo "--- agent log"; cat /tmp/agent.log; fail "vzmigrate exit $rc"; }
    waitfor b.verified
else
    waitfor a.migrated 900
    t vzlist --root-dir $R -a
    t vzctl --root-dir $R exec 101 'echo hi on $(uname -r); ps'; rc=$?
    t vzctl --root-dir $R stop 101
    echo "--- agent log (tail)"; tail -n 15 /tmp/agent.log
    touch /shared/b.verified
    exit $rc
fi
