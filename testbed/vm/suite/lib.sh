# Shared by the guest suite's scripts (sourced inside a guest, see testbed/vm/run.sh): checks that
# print "ok - WHAT" or "not ok - WHAT: DETAIL" and a closing line in cargo's "test result" form,
# which scripts/test.sh counts.
R=${R:-/var/lib/ferry}
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
bad() { failed=$((failed + 1)); echo "not ok - $*"; }
# check WHAT COMMAND...: the command must succeed.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$what"; else bad "$what: $(printf '%s' "$out" | tail -n 5 | tr '\n' ' ')"; fi
}
# same WHAT EXPECTED ACTUAL
same() {
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: expected '$2', got '$3'"; fi
}
# holds WHAT SHELL-CONDITION: the condition (a string for bash -c's `[[ ]]`-free test) is true.
holds() {
    local what=$1
    shift
    if eval "$*"; then ok "$what"; else bad "$what: ($*) is false"; fi
}
vz() { vzctl --root-dir "$R" "$@"; }
# systemd_state CTID: waits (bounded: 240 s) for the systemd container's init to finish starting
# and prints what systemctl is-system-running last said.
systemd_state() {
    local st i
    for i in $(seq 1 240); do
        st=$(vz exec "$1" 'systemctl is-system-running' 2>&1)
        case "$st" in running|degraded) break ;; esac
        sleep 1
    done
    echo "$st"
}
# The container's cgroup v2 file.
cgv2() { cat "/sys/fs/cgroup/ferry/$1/$2" 2>/dev/null; }
# A host root for ferry on the guest's ext4 (idmapped mounts need it on 6.1); the guest's eth0,
# where it has one, is the uplink that announces containers' addresses.
ferry_root() {
    mkdir -p "$R/etc/vz"
    cat > "$R/etc/vz/vz.conf" <<CONF
VE_ROOT=/vz/root/\$VEID
VE_PRIVATE=/vz/private/\$VEID
TEMPLATE=/vz/template
CONFIGFILE="basic"
DEF_OSTEMPLATE="busybox"
CGROUP_PARENT="ferry"
STOP_TIMEOUT="30"
CONF
    [ ! -e /sys/class/net/eth0 ] || echo 'UPLINK="eth0"' >> "$R/etc/vz/vz.conf"
    vzpkg --root-dir "$R" -q create-cache busybox
    # debian-13 (systemd, lighttpd), built on the machine by testbed/vm/build.sh.
    mkdir -p "$R/vz/template/cache"
    cp /ferry/templates/*.tar.zst "$R/vz/template/cache/"
}
finish() {
    echo "test result: $([ "$failed" = 0 ] && echo ok || echo FAILED). $passed passed; $failed failed (guest ${FERRY_GUEST_NAME:-?}, $(uname -r))"
    [ "$failed" = 0 ]
}
