# One guest, one stock kernel: what ferry does on pure cgroup v2 with soft-dirty tracking, checked
# from outside (the cgroup files ferry wrote) and from inside (the limit enforced). Needs lib.sh
# first; systemd.sh and lib.sh's finish follow (scripts/guest-tests.sh puts them together).
ferry_root

# The host as vzctl check sees it.
chk=$(vz check 2>&1)
echo "$chk" | sed 's/^/  | /'
holds "vzctl check finds cgroup v2" 'echo "$chk" | grep -qi "cgroup.*v2"'
json=$(vz check --json)
same "vzctl check finds soft-dirty tracking" true "$(echo "$json" | jq -r .precopy_dirty_tracking)"
same "vzctl check finds user namespaces" true "$(echo "$json" | jq -r .user_namespaces)"
same "CRIU's check passes" true "$(echo "$json" | jq -r .criu_check)"

# Lifecycle of a userns container.
check "create 101 (no network: this guest has none)" vz create 101
check "start 101" vz start 101
same "exec runs in the container" hello "$(vz exec 101 'echo hello')"
map=$(vz exec 101 'cat /proc/self/uid_map' | awk '{print $1, ($2 > 0)}')
same "the container has its own user namespace (root maps to a host id above 0)" "0 1" "$map"
holds "its id range is in its configuration" 'grep -q "^LOCAL_UID=" $R/etc/vz/conf/101.conf'
holds "its cgroup is a v2 leaf under ferry/" '[ -f /sys/fs/cgroup/ferry/101/cgroup.procs ]'
holds "its processes are in it" '[ -n "$(cgv2 101 cgroup.procs)" ]'

# Devices (the eBPF device filter on its cgroup): a world-writable node of the host's
# /dev/kmsg planted in its files cannot be written from inside; the host can write it (the
# node works), and the devices every container has still do.
mknod -m 0666 "$R/vz/private/101/tmp/kmsg" c 1 11
holds "the planted node works from the host" 'echo ferry-guest-kmsg-host > "$R/vz/private/101/tmp/kmsg"'
holds "the container cannot write the host's kernel log through it" '! vz exec 101 "echo ferry-guest-kmsg-101 > /tmp/kmsg" 2>/dev/null'
holds "nothing from the container reached the kernel log" '! dmesg | grep -q ferry-guest-kmsg-101'
holds "/dev/null and /dev/urandom work inside" 'vz exec 101 "echo x > /dev/null && head -c 1 /dev/urandom > /dev/null"'

# Processes: live, enforced (a fork past the limit fails and is counted).
check "set --numproc 40 (live)" vz set 101 --numproc 40
same "pids.max" 40 "$(cgv2 101 pids.max)"
vz exec 101 'i=0; while [ $i -lt 60 ]; do sleep 120 </dev/null >/dev/null 2>&1 & i=$((i+1)); done; true' >/dev/null 2>&1
# (Counted from outside: at its limit, the container cannot fork a command to count them.)
sleeps=$(for p in $(cgv2 101 cgroup.procs); do [ "$(cat /proc/$p/comm 2>/dev/null)" = sleep ] && echo $p; done)
n=$(echo $sleeps | wc -w)
holds "no more than 40 processes could be made (got $n sleeps)" '[ "$n" -lt 40 ] && [ "$n" -gt 10 ]'
holds "the refused forks are counted (pids.events max)" '[ "$(cgv2 101 pids.events | awk "/^max/{print \$2}")" -gt 0 ]'
holds "vzctl ubc shows numproc's failcnt" '[ "$(vz ubc 101 | awk "\$1==\"numproc\" || \$2==\"numproc\" {print \$NF}")" -gt 0 ]'
kill $sleeps 2>/dev/null || true
# Gone (and reaped) before the next steps fork again: under emulation that can take a while.
for i in $(seq 1 60); do [ "$(cgv2 101 pids.current)" -le 3 ] && break; sleep 0.5; done
holds "the killed processes are gone (pids.current $(cgv2 101 pids.current))" '[ "$(cgv2 101 pids.current)" -le 3 ]'

# Memory: live, enforced (an allocation past it is OOM-killed and counted).
check "set --ram 64M (live)" vz set 101 --ram 64M
same "memory.max" 67108864 "$(cgv2 101 memory.max)"
vz exec 101 'head -c 200000000 /dev/zero | tail >/dev/null' >/dev/null 2>&1
holds "an allocation past it was OOM-killed (memory.events oom_kill)" '[ "$(cgv2 101 memory.events | awk "/^oom_kill/{print \$2}")" -gt 0 ]'
holds "vzctl ubc shows physpages' failcnt" '[ "$(vz ubc 101 | awk "\$1==\"physpages\" || \$2==\"physpages\" {print \$NF}")" -gt 0 ]'
same "the container still runs" "CTID 101 exist mounted running" "$(vz status 101)"

# CPU: live, enforced (a busy loop is throttled), and the tighter of --cpulimit and --cpus holds.
check "set --cpulimit 20 (live)" vz set 101 --cpulimit 20
same "cpu.max" "20000 100000" "$(cgv2 101 cpu.max)"
before=$(cgv2 101 cpu.stat | awk '/^nr_throttled/{print $2}')
vz exec 101 'timeout 3 sh -c "while :; do :; done"' >/dev/null 2>&1
after=$(cgv2 101 cpu.stat | awk '/^nr_throttled/{print $2}')
holds "a busy loop was throttled (nr_throttled $before -> $after)" '[ "$after" -gt "$before" ]'
check "set --cpus 1 (live) after --cpulimit 20" vz set 101 --cpus 1
same "the tighter cap stays" "20000 100000" "$(cgv2 101 cpu.max)"

# The other controls, live: CPU weight, CPU mask (what nproc inside sees), swap; kmemsize has
# no cgroup v2 file and is refused, saying so, with nothing changed.
check "set --cpuunits 500 (live)" vz set 101 --cpuunits 500
same "cpu.weight" 50 "$(cgv2 101 cpu.weight)"
check "set --cpumask 0 (live)" vz set 101 --cpumask 0
same "cpuset.cpus" 0 "$(cgv2 101 cpuset.cpus)"
same "nproc inside sees one CPU" 1 "$(vz exec 101 nproc)"
check "set --swap 32M (live)" vz set 101 --swap 32M
same "memory.swap.max" 33554432 "$(cgv2 101 memory.swap.max)"
out=$(vz set 101 --kmemsize 10M 2>&1); rc=$?
holds "set --kmemsize is refused on cgroup v2, saying why (rc $rc)" '[ "$rc" != 0 ] && echo "$out" | grep -q "cgroup v2"'
same "and changed nothing (memory.max)" 67108864 "$(cgv2 101 memory.max)"

# Live limits (not saved) come back after chkpnt/restore, and a process with them.
vz exec 101 'sleep 100000 </dev/null >/dev/null 2>&1 & echo $! > /tmp/sleeper'
sleeper=$(vz exec 101 'cat /tmp/sleeper')
check "chkpnt" vz chkpnt 101
same "chkpnt stops the container" "CTID 101 exist unmounted down" "$(vz status 101)"
check "restore" vz restore 101
same "the process came back" sleep "$(vz exec 101 "cat /proc/$sleeper/comm")"
same "memory.max after restore (live limit kept)" 67108864 "$(cgv2 101 memory.max)"
same "pids.max after restore (live limit kept)" 40 "$(cgv2 101 pids.max)"
same "cpu.max after restore (live limit kept)" "20000 100000" "$(cgv2 101 cpu.max)"
holds "after restore the planted node is still refused" '! vz exec 101 "echo ferry-guest-kmsg-101 > /tmp/kmsg" 2>/dev/null'
same "the v2 freezer let it go (cgroup.freeze)" 0 "$(cgv2 101 cgroup.freeze)"
check "suspend" vz suspend 101
check "resume" vz resume 101
same "the process is there after suspend/resume" sleep "$(vz exec 101 "cat /proc/$sleeper/comm")"

# Saved limits: written to the configuration, applied at the next start.
check "set --numproc 50 --ram 96M --cpulimit 30 --cpuunits 300 --swap 16M --save" vz set 101 --numproc 50 --ram 96M --cpulimit 30 --cpuunits 300 --swap 16M --save
holds "the configuration has them" 'grep -q "^NUMPROC=\"50:50\"" $R/etc/vz/conf/101.conf && grep -q "^CPULIMIT=\"30\"" $R/etc/vz/conf/101.conf'
check "restart" vz restart 101
same "pids.max after restart" 50 "$(cgv2 101 pids.max)"
same "memory.max after restart" 100663296 "$(cgv2 101 memory.max)"
same "cpu.max after restart" "30000 100000" "$(cgv2 101 cpu.max)"
same "cpu.weight after restart" 30 "$(cgv2 101 cpu.weight)"
same "memory.swap.max after restart" 16777216 "$(cgv2 101 memory.swap.max)"
same "the live-only cpumask is gone after restart (all CPUs)" 2 "$(vz exec 101 nproc)"

# A frozen container (v2 freezer) is still stopped by vzctl stop --fast.
echo 1 > /sys/fs/cgroup/ferry/101/cgroup.freeze
sleep 1
same "frozen through cgroup.freeze" 1 "$(cgv2 101 cgroup.events | awk '/^frozen/{print $2}')"
check "stop --fast of the frozen container" vz stop --fast 101
same "stopped" "CTID 101 exist unmounted down" "$(vz status 101)"
holds "its cgroup is gone" '[ ! -d /sys/fs/cgroup/ferry/101 ]'
check "destroy" vz destroy 101
