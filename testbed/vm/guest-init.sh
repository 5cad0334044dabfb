#!/bin/bash
# The init of a ferry guest (installed as /ferry/init by testbed/vm/build.sh; the ferry layer disk
# is mounted at /ferry by the initrd). busybox init is PID 1 (it reaps orphans, such as the inits
# of stopped containers) and runs, from /ferry/inittab:
#
#   /ferry/init setup   mounts (proc, sys, devtmpfs, devpts, /run, /tmp, cgroup2 with nsdelegate),
#                       moves PID 1 into the leaf cgroup /init and enables every controller in the
#                       root's cgroup.subtree_control, loads the modules ferry and CRIU use, creates
#                       /dev/net/tun, puts ferry's binaries (/usr/local/bin) and the CRIU prefix in
#                       place, configures eth0 (ferry.ip=ADDR/PREFIX), mounts the 9p shares
#                       job -> /job and shared -> /shared
#   /ferry/init main    ferry.mode=job: runs /job/script (with /job/env sourced and /job/args as its
#                       arguments), output to /job/output, exit code to /job/rc, then powers off;
#                       ferry.mode=shell: an interactive login shell on the console, then powers off
#
# Kernel command line: ferry.mode=job|shell ferry.name=NAME ferry.ip=ADDR/PREFIX
#                      ferry.rows=N ferry.cols=N (the shell's terminal size)
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

log() { echo "ferry-init: $*" > /dev/console; }
step() { grep -q ferry.trace /proc/cmdline 2>/dev/null && log "$(cut -d" " -f1 /proc/uptime) $*"; }

param() { # param NAME -> value of ferry.NAME= on the kernel command line
    local w
    for w in $(cat /proc/cmdline 2>/dev/null); do
        case "$w" in "ferry.$1="*) echo "${w#*=}"; return 0 ;; esac
    done
    return 1
}
off() {
    sync
    umount /job /shared 2>/dev/null
    busybox poweroff -f
    echo o > /proc/sysrq-trigger
    sleep 60
}

setup() {
    mountpoint -q /proc || mount -t proc proc /proc
    mountpoint -q /sys || mount -t sysfs sysfs /sys
    mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
    mkdir -p /dev/pts /dev/shm
    mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
    mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
    mkdir -p /run/lock
    # As on a systemd host: mounts propagate (shared) unless made private.
    mount --make-rshared /

    step "mounts done; cgroup2"
    # cgroup v2 only, as on a stock Debian host; PID 1 (and this script) in a leaf so that the
    # root can hand every controller to its children.
    mount -t cgroup2 -o nsdelegate,nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
    mkdir -p /sys/fs/cgroup/init
    echo 1 > /sys/fs/cgroup/init/cgroup.procs
    echo $$ > /sys/fs/cgroup/init/cgroup.procs
    local c
    for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
        echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || log "cannot enable the $c controller"
    done
    mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
    mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null

    step "cgroup done; modules"
    # Modules: the network and disks of the guest, then what ferry and CRIU use.
    # Loaded here: the guest's own devices and what nearly every ferry test uses. The rest (xfs,
    # nat and mangle tables, qdiscs, macvlan, ...) the kernel loads on first use; loading a module
    # costs 0.1-2.5 s under TCG (xfs alone 2.4 s), so eager loading of everything doubled the boot.
    # One modprobe for all (each process costs under TCG); then name those that are not there.
    local mods=(virtio_net 9pnet_virtio 9p veth tun bridge overlay loop
                nf_tables nft_compat iptable_raw ip6table_raw ipt_rpfilter ip6t_rpfilter
                inet_diag tcp_diag udp_diag unix_diag netlink_diag af_packet_diag)
    modprobe -q -a "${mods[@]}" 2>/dev/null
    step "modules loaded"
    local m failed=()
    for m in "${mods[@]}"; do
        [ -d "/sys/module/$m" ] || [ -d "/sys/module/${m,,}" ] || failed+=("$m")
    done
    [ ${#failed[@]} -eq 0 ] || log "modules not loaded: ${failed[*]}"
    if [ ! -c /dev/net/tun ]; then mkdir -p /dev/net && mknod -m 666 /dev/net/tun c 10 200; fi
    [ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd

    step "ferry layer"
    # ferry's binaries and the CRIU prefix, from the read-only layer disk.
    mount --bind /ferry/bin /usr/local/bin
    local prefix
    prefix=$(cat /ferry/criu-prefix 2>/dev/null || echo /opt/ferry/criu)
    mkdir -p "$prefix"
    mount --bind /ferry/criu "$prefix"

    step "network"
    local name ip dev
    name=$(param name || echo ferry-guest)
    hostname "$name"
    echo "$name" > /etc/hostname 2>/dev/null
    ip link set lo up
    if ip=$(param ip); then
        dev=$(ls /sys/class/net | grep -v '^lo$' | head -n1)
        if [ -n "$dev" ]; then
            ip link set "$dev" up && ip addr add "$ip" dev "$dev" || log "cannot configure $dev with $ip"
        else
            log "ferry.ip=$ip but no network device"
        fi
    fi

    step "9p shares"
    local tag
    for tag in $(cat /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag 2>/dev/null | tr '\0' ' '); do
        mkdir -p "/$tag"
        mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none "$tag" "/$tag" \
            || log "cannot mount the 9p share $tag"
    done
    step "setup done"
}

main() {
    local mode
    mode=$(param mode || echo job)
    case "$mode" in
        shell)
            local rows cols
            rows=$(param rows || echo 40); cols=$(param cols || echo 160)
            echo
            echo "ferry guest $(hostname): $(uname -r), $(nproc) CPUs; Ctrl-A X leaves QEMU at once, 'exit' powers off"
            setsid -c -w /bin/bash -c "stty rows $rows cols $cols; export TERM=${TERM:-vt100}; cd /root; exec /bin/bash -l" \
                <>/dev/ttyS0 >&0 2>&0
            off
            ;;
        job)
            if [ ! -f /job/script ]; then
                log "no /job/script (is the 9p share 'job' mounted?)"
                off
            fi
            cut -d' ' -f1 /proc/uptime > /job/boot-seconds
            local rc args=()
            if [ -f /job/args ]; then mapfile -t args < /job/args; fi
            (
                cd /root || exit 1
                export TERM=dumb
                # shellcheck disable=SC1091
                [ -f /job/env ] && . /job/env
                exec /bin/bash /job/script "${args[@]}"
            ) < /dev/null > /job/output 2>&1
            rc=$?
            cut -d' ' -f1 /proc/uptime > /job/end-seconds
            echo "$rc" > /job/rc.tmp && mv /job/rc.tmp /job/rc
            off
            ;;
        *)
            log "unknown ferry.mode=$mode"
            off
            ;;
    esac
}

case "${1:-}" in
    setup) setup ;;
    main) main ;;
    *) echo "usage: $0 setup|main" >&2; exit 2 ;;
esac
