# A systemd container on one stock kernel (pure cgroup v2, the container's cgroup delegated to
# it): Debian 13 (systemd 257, lighttpd) boots to "running", its limits are seen from inside, it
# keeps its services, journal and timers through chkpnt/restore, and stop/start/restart cycle
# through systemd's halt. Needs lib.sh first, and ferry_root (the template comes from the ferry
# layer: testbed/vm/build.sh).
sd() { vz exec 102 "$@" 2>&1; }
# up WHAT: waits (bounded) for systemd to say running, then checks that and no failed unit.
up() {
    local st
    st=$(systemd_state 102)
    same "systemd is running $1" running "$st"
    [ "$st" = running ] || sd 'systemctl --failed --no-legend' | sed 's/^/  | /'
    same "no unit failed $1" "" "$(sd 'systemctl --failed --no-legend --plain')"
}
mainpid() { sd "systemctl show -p MainPID --value $1"; }

check "create 102 from debian-13 (systemd)" vz create 102 --ostemplate debian-13
check "start 102" vz start 102
up "after start"
same "vzctl exec joins init's cgroup" "0::/init.scope" "$(sd 'cat /proc/self/cgroup')"
same "container=ferry" ferry "$(sd 'cat /run/systemd/container')"
holds "the container's cgroup is delegated: systemd enabled controllers below it ($(cgv2 102 cgroup.subtree_control))" \
    '[ -n "$(cgv2 102 cgroup.subtree_control)" ]'
holds "and made its units' cgroups" '[ -d /sys/fs/cgroup/ferry/102/system.slice/lighttpd.service ]'
same "lighttpd is active" active "$(sd 'systemctl is-active lighttpd')"
mid=$(sd 'cat /etc/machine-id')
holds "a machine-id was written ($mid)" '[ ${#mid} = 32 ]'

# Limits, live, as the container sees them in its own cgroup.
check "set --ram 512M --numproc 300 (live)" vz set 102 --ram 512M --numproc 300
same "memory.max seen inside" 536870912 "$(sd 'cat /sys/fs/cgroup/memory.max')"
same "pids.max seen inside" 300 "$(sd 'cat /sys/fs/cgroup/pids.max')"
check "set --cpulimit 50 (live)" vz set 102 --cpulimit 50
same "cpu.max seen inside" "50000 100000" "$(sd 'cat /sys/fs/cgroup/cpu.max')"

# chkpnt/restore: the services' processes, the journal, the timers.
sd 'echo ferry-guest-marker | systemd-cat -t ferry-test' >/dev/null
lp=$(mainpid lighttpd); jp=$(mainpid systemd-journald)
timers=$(sd 'systemctl list-timers --all --no-legend --plain | wc -l')
holds "lighttpd and journald have main pids ($lp, $jp)" '[ "$lp" -gt 0 ] && [ "$jp" -gt 0 ]'
check "chkpnt 102" vz chkpnt 102
same "chkpnt stops it" "CTID 102 exist unmounted down" "$(vz status 102)"
check "restore 102" vz restore 102
up "after restore"
same "lighttpd's main pid is unchanged" "$lp" "$(mainpid lighttpd)"
same "journald's main pid is unchanged" "$jp" "$(mainpid systemd-journald)"
same "lighttpd was not restarted" 0 "$(sd 'systemctl show -p NRestarts --value lighttpd')"
holds "the journal has what was logged before" 'sd "journalctl -t ferry-test --no-pager" | grep -q ferry-guest-marker'
same "the timers are all there" "$timers" "$(sd 'systemctl list-timers --all --no-legend --plain | wc -l')"
same "memory.max after restore (live limit kept)" 536870912 "$(sd 'cat /sys/fs/cgroup/memory.max')"
# The restore hands the container its cgroups below its own, not its own limits: root inside
# (CAP_SYS_ADMIN in its user namespace) cannot raise them.
out=$(vz exec 102 'echo max > /sys/fs/cgroup/memory.max; echo 1000 > /sys/fs/cgroup/pids.max' 2>&1); rc=$?
holds "root inside cannot raise its own limits after a restore (rc $rc)" '[ "$rc" != 0 ]'
same "memory.max unchanged" 536870912 "$(cgv2 102 memory.max)"
same "pids.max unchanged" 300 "$(cgv2 102 pids.max)"

# stop/start/restart: systemd halts cleanly, comes back with the same machine-id.
check "stop 102 (restored)" vz stop 102
holds "its cgroup is gone" '[ ! -d /sys/fs/cgroup/ferry/102 ]'
check "start 102 again" vz start 102
up "after stop and start"
check "stop 102 (started)" vz stop 102
holds "systemd halted (console log)" 'grep -q "Halting system" $R/vz/log/102.console.log'
check "and start" vz start 102
up "after the second start"
check "restart 102" vz restart 102
up "after restart"
same "the machine-id is kept" "$mid" "$(sd 'cat /etc/machine-id')"
check "stop --fast" vz stop --fast 102
check "destroy 102" vz destroy 102
