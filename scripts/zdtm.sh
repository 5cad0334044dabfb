#!/usr/bin/env bash
# CRIU's own test programs through ferry (issue #23). CRIU checks itself with its zdtm suite:
# small programs (test/zdtm/static in CRIU's source) that each set up some kernel state (pipes,
# sockets in every state, timers, epoll, inotify, SysV IPC, file locks, ptys, threads, zombies,
# odd mappings, deleted-but-open files, ...), daemonize, and on SIGTERM check that the state is
# still right and write PASS or FAIL to their outfile. This runs each one inside a fresh ferry
# container on a two-host lab, three ways:
#   control   start the test, SIGTERM it, read its result (no dump: does it pass here at all?)
#   chkpnt    start it, `vzctl chkpnt` + `vzctl restore`, then SIGTERM and read the result
#   migrate   start it, `vzmigrate --online` to the lab's other host, SIGTERM and read it there
#
#   scripts/zdtm.sh                    the default selection (about 10 minutes; scripts/test.sh)
#   scripts/zdtm.sh --all              every static test that can apply to a ferry container
#   scripts/zdtm.sh --only A,B         these tests (an excluded one is shown with its reason;
#                                      add --force to run it anyway)
#   scripts/zdtm.sh --list             the selection and the exclusions with their reasons
#
# Prints one line per test and a closing "test result:" line. Exits non-zero when a test that
# passes its control fails a dump mode, and in the default selection (tests that pass their
# control on a host like this one) also when a control fails. Failures' logs (the vz commands'
# output, CRIU's logs from both hosts' vz/log, the test's outfile) stay in the run directory it
# prints (FERRY_ZDTM_KEEP=1 keeps it always). Run as root; uses its own lab (ferry-zdtm-*, below
# /tmp/ferry-zdtm, containers at 198.18.0.80-99), torn down at the start and at the end; one run
# at a time (/tmp/ferry-zdtm.lock).
#
# The programs: built once from CRIU's source, statically linked, into FERRY_ZDTM_CACHE (default
# /var/cache/ferry-zdtm; rebuilt only when missing; `stamp` names the source). The source is
# Debian unstable's criu source package (the .orig tarball; its SHA-256 checked against the
# .dsc), fetched through a private apt state as scripts/setup.sh fetches CRIU itself (the host's
# apt configuration is never changed), or FERRY_ZDTM_SRC (a CRIU source tarball or directory).
# Build dependencies (gcc, make, libaio-dev, libcap-dev) come from the host's own Debian archive.
#
# The containers: busybox, privileged (--userns no), the programs run as root: the host's root
# lacks CAP_SYS_RESOURCE here, so CRIU cannot dump a non-root process in a privileged container
# (ferry refuses it up front), and CRIU's own runs run most tests as a non-root user; here they
# run as root. Tests whose programs switch to other users run in a container with a user
# namespace instead (USERNS_TESTS below), where that limit does not apply
# (FERRY_ZDTM_USERNS=yes|no puts every test in one kind). Each mode gets a fresh container; the
# test lives in /zdtm/static in it (CRIU's own path).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

usage() { echo "usage: $0 [--all | --only NAME[,NAME...] [--force] | --list]" >&2; exit 2; }
sel=default
only=""
force=0
list=0
while [ $# -gt 0 ]; do
    case "$1" in
        --all) sel=all; shift ;;
        --only) sel=only; only=${2:?}; shift 2 ;;
        --force) force=1; shift ;;
        --list) list=1; shift ;;
        *) usage ;;
    esac
done

die() { echo "zdtm: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"

cache=${FERRY_ZDTM_CACHE:-/var/cache/ferry-zdtm}
export FERRY_CRIU=${FERRY_CRIU:-/opt/ferry/criu/criu}

# ---- The selection -------------------------------------------------------------------------------
# The default: a broad mix that runs in about 10 minutes here, known failures included (they are
# ferry's to fix; see issue #23).
DEFAULT_TESTS=(
    # processes, sessions, threads, zombies, signals, credentials, scheduling
    busyloop00 sleeping00 pid00 pstree session00 session01 zombie00 zombie01 zombie_leader
    wait00 pthread00 pthread01 pthread_timers futex pdeath_sig sigpending sigaltstack
    caps00 groups rlimits00 sched_prio00 oom_score_adj child_subreaper different_creds
    thread_different_uid_gid fpu00 fpu01 sse00 vdso01 stopped
    # memory and mappings
    maps00 maps02 maps04 maps05 maps06 mprotect00 cow00 cow01 shm-unaligned mlock_setuid
    memfd00 memfd01 thp_disable
    # pipes, fifos, plain files, deleted-but-open files, descriptors
    pipe00 pipe01 pipe02 pipe03 fifo fifo_ro fifo-ghost unlink_fifo write_read00 file_shared
    file_append fdt_shared fd file_cloexec fd_offset unlink_fstat00 unlink_fstat02
    unlink_fstat03 unlink_mmap00 ghost_holes00 ghost_multi_hole00 cwd00 umask00 env00
    cmdlinenv00 selfexe00
    # file locks and leases
    file_locks00 file_locks01 file_locks02 file_locks05 file_locks06 file_lease00
    # timers, epoll, inotify, signalfd, eventfd, aio
    timers posix_timers timerfd epoll epoll01 inotify00 inotify_irmap signalfd00 eventfs00 aio00
    # SysV IPC, ptys
    shm sem msgque pty00 pty01 pty04 tty00
    # unix sockets
    sockets00 sockets01 sockets02 sockets_spair sockets_dgram socket_queues sk-unix-unconn
    sk-unix-rel sk-unix01 scm00 scm03 scm05 del_standalone_un socket-ext
    # inet sockets: udp, raw, tcp in many states, tcp with queued data
    socket_udp socket6_udp socket_listen socket_listen6 socket-tcp socket-tcp6
    socket-tcp-local socket-tcp-listen socket-tcpbuf socket-tcpbuf-local socket-tcp-fin-wait1
    socket-tcp-fin-wait2 socket-tcp-close-wait socket-tcp-last-ack socket-tcp-closing
    socket-tcp-unconn socket-tcp-keepalive sock_opts00 sock_tcp_opts00 packet_sock
)

# Tests whose programs run as another user: in a privileged container here CRIU cannot read
# their limits (no CAP_SYS_RESOURCE), so they run in a container with a user namespace.
USERNS_TESTS=(mlock_setuid pid00 thread_different_uid_gid)

# What cannot apply to a ferry container, one reason each (found by running every test here:
# these fail even their control, or test something of zdtm's own harness). Everything else that
# CRIU's source builds here is in --all. A test a newer CRIU adds whose .desc says crfail, noauto
# or another architecture is shown as N/A with that reason even when it is not listed here.
SYSADMIN="needs CAP_SYS_ADMIN (which ferry's containers do not have) to"
declare -A EXCLUDED=(
    # CRIU declares that these must fail to dump (crfail) or are not for automatic runs (noauto)
    [file_locks00_fail]="crfail: CRIU must refuse it"
    [ghost_holes_large01]="crfail: CRIU must refuse it"
    [overmount_dev]="crfail: CRIU must refuse it"
    [overmount_fifo]="crfail: CRIU must refuse it"
    [overmount_file]="crfail: CRIU must refuse it"
    [overmounted_file]="crfail: CRIU must refuse it"
    [pidfd_of_thread]="crfail: CRIU must refuse it"
    [ptrace_sig]="crfail: CRIU must refuse it"
    [sigtrap]="crfail: CRIU must refuse it"
    [sk-unix-listen02]="crfail: CRIU must refuse it"
    [sk-unix-listen03]="crfail: CRIU must refuse it"
    [sk-unix-listen04]="crfail: CRIU must refuse it"
    [socket_udp-corked]="crfail: CRIU must refuse it"
    [timens_for_kids]="crfail: CRIU must refuse it"
    [timens_nested]="crfail: CRIU must refuse it"
    [unsupported_children_collision]="crfail: CRIU must refuse it"
    [vfork00]="crfail: CRIU must refuse it"
    [grow_map]="noauto in CRIU's desc (not run automatically)"
    [grow_map02]="noauto in CRIU's desc (not run automatically)"
    [grow_map03]="noauto in CRIU's desc (not run automatically)"
    [inotify02]="noauto in CRIU's desc (not run automatically)"
    [inotify_system]="noauto: watches the host's system directories"
    [inotify_system_nodel]="noauto: watches the host's system directories"
    [maps03]="noauto: maps most of the address space"
    [mem-touch]="noauto in CRIU's desc (not run automatically)"
    [mnt_ext_dev]="noauto: needs a device named by ZDTM_MNT_EXT_DEV"
    [pthread02]="noauto in CRIU's desc (not run automatically)"
    [session02]="noauto in CRIU's desc (not run automatically)"
    [session03]="noauto in CRIU's desc (not run automatically)"
    [socket_snd_addr]="noauto in CRIU's desc (not run automatically)"
    [sock_peercred]="noauto in CRIU's desc (not run automatically)"
    [tun]="noauto in CRIU's desc (not run automatically)"
    [uptime_grow]="noauto in CRIU's desc (not run automatically)"
    # other architectures
    [arm-neon00]="ARM only"
    [s390x_mmap_high]="s390x only"
    [vsx]="ppc64le only"
    # mounts and new namespaces inside the container
    [autofs]="$SYSADMIN mount autofs"
    [bind-mount]="$SYSADMIN bind-mount"
    [binfmt_misc]="$SYSADMIN mount binfmt_misc"
    [cgroup00]="$SYSADMIN mount cgroup hierarchies"
    [cgroup01]="$SYSADMIN mount cgroup hierarchies"
    [cgroup02]="$SYSADMIN mount cgroup hierarchies"
    [cgroup03]="$SYSADMIN mount cgroup hierarchies"
    [cgroup04]="$SYSADMIN mount cgroup hierarchies"
    [cgroup_ifpriomap]="$SYSADMIN mount cgroup hierarchies"
    [cgroup_ignore]="$SYSADMIN mount cgroup hierarchies"
    [cgroup_stray]="$SYSADMIN mount cgroup hierarchies"
    [cgroup_threads]="$SYSADMIN mount cgroup hierarchies"
    [cgroup_yard]="$SYSADMIN mount cgroup hierarchies"
    [cgroupns]="$SYSADMIN mount cgroup hierarchies"
    [cgroupv2_00]="$SYSADMIN mount cgroup hierarchies"
    [cgroupv2_01]="$SYSADMIN mount cgroup hierarchies"
    [change_mnt_context]="$SYSADMIN mount (with an SELinux context)"
    [ghost_on_rofs]="$SYSADMIN mount"
    [inotify01]="$SYSADMIN remount /"
    [mnt_enablefs]="$SYSADMIN mount"
    [mnt_ro_bind]="$SYSADMIN mount"
    [mnt_ro_root]="$SYSADMIN mount"
    [mnt_tracefs]="$SYSADMIN bind-mount /sys/kernel/debug"
    [mntns_deleted]="$SYSADMIN mount"
    [mntns_ghost]="$SYSADMIN unshare a mount namespace"
    [mntns_ghost01]="$SYSADMIN unshare a mount namespace"
    [mntns_link_ghost]="$SYSADMIN mount"
    [mntns_link_remap]="$SYSADMIN mount"
    [mntns_open]="$SYSADMIN clone a mount namespace"
    [mntns_overmount]="$SYSADMIN mount"
    [mntns_pivot_root]="$SYSADMIN unshare a mount namespace"
    [mntns_pivot_root_ro]="$SYSADMIN unshare a mount namespace"
    [mntns_remap]="$SYSADMIN mount"
    [mntns_ro_root]="$SYSADMIN unshare a mount namespace"
    [mntns_root_bind]="$SYSADMIN unshare a mount namespace"
    [mntns_root_bind02]="$SYSADMIN unshare a mount namespace"
    [mntns_rw_ro_rw]="$SYSADMIN bind-mount /proc/sys"
    [mntns_shared_bind]="$SYSADMIN mount"
    [mntns_shared_bind02]="$SYSADMIN mount"
    [mntns_shared_bind03]="$SYSADMIN mount"
    [mntns_shared_vs_private]="$SYSADMIN mount"
    [mount_complex_sharing]="$SYSADMIN mount"
    [mount_paths]="$SYSADMIN mount"
    [mountpoints]="$SYSADMIN mount"
    [non_uniform_share_propagation]="$SYSADMIN mount"
    [overmount_sock]="$SYSADMIN mount"
    [overmount_with_shared_parent]="$SYSADMIN bind-mount"
    [private_bind_propagation]="$SYSADMIN mount"
    [pty-console]="$SYSADMIN bind-mount a pty over /dev/console"
    [shared_mount_propagation]="$SYSADMIN bind-mount"
    [shared_slave_mount_children]="$SYSADMIN mount"
    [sk-unix-mntns]="$SYSADMIN unshare a mount namespace"
    [tempfs]="$SYSADMIN mount tmpfs"
    [tempfs_overmounted]="$SYSADMIN mount tmpfs"
    [tempfs_overmounted01]="$SYSADMIN mount tmpfs"
    [tempfs_ro]="$SYSADMIN mount tmpfs"
    [tempfs_ro02]="$SYSADMIN mount tmpfs"
    [tempfs_subns]="$SYSADMIN mount"
    [unbindable]="$SYSADMIN mount tmpfs"
    [unlink_regular00]="$SYSADMIN mount tmpfs"
    [netns_sub]="$SYSADMIN unshare a network namespace"
    [tun_ns]="$SYSADMIN unshare a network namespace"
    [socket-tcp-ipt-nfconntrack]="$SYSADMIN unshare a network namespace"
    [socket-tcp-nft-nfconntrack]="$SYSADMIN unshare a network namespace"
    [utsname]="$SYSADMIN set the host name"
    [fanotify00]="$SYSADMIN use fanotify"
    [maps01]="$SYSADMIN open /proc/self/map_files"
    [shmemfd]="$SYSADMIN open /proc/self/map_files"
    [shmemfd-priv]="$SYSADMIN open /proc/self/map_files"
    [seccomp_filter]="$SYSADMIN install a seccomp filter without no_new_privs"
    [seccomp_filter_inheritance]="$SYSADMIN install a seccomp filter without no_new_privs"
    [seccomp_filter_threads]="$SYSADMIN install a seccomp filter without no_new_privs"
    [seccomp_filter_tsync]="$SYSADMIN install a seccomp filter without no_new_privs"
    [apparmor]="$SYSADMIN load an AppArmor profile"
    [apparmor_stacking]="$SYSADMIN load AppArmor profiles (and AppArmor stacking)"
    # device nodes, /proc/sys, the host's devices
    [console]="makes a device node: ferry's containers have no CAP_MKNOD"
    [deleted_dev]="makes a device node: ferry's containers have no CAP_MKNOD"
    [vt]="makes a device node: ferry's containers have no CAP_MKNOD"
    [rtc]="needs /dev/rtc and CRIU's rtc plugin (crlib)"
    [ipc_namespace]="writes /proc/sys/kernel/sem: /proc/sys is read-only in a container"
    [socket_icmp]="writes /proc/sys/net/ipv4/ping_group_range: /proc/sys is read-only in a container"
    [socket6_icmp]="writes /proc/sys/net/ipv4/ping_group_range: /proc/sys is read-only in a container"
    [maps09]="needs huge pages reserved on the host (vm.nr_hugepages is 0 here)"
    [maps10]="needs huge pages reserved on the host (vm.nr_hugepages is 0 here)"
    [memfd02-hugetlb]="needs huge pages reserved on the host (vm.nr_hugepages is 0 here)"
    [shm-hugetlb]="needs huge pages reserved on the host (vm.nr_hugepages is 0 here)"
    # what ferry's profile refuses by design, or cannot be given
    [sk-netlink]="opens a uevent netlink socket, which ferry's seccomp profile refuses"
    [seccomp_strict]="enters seccomp strict mode, which the kernel refuses under ferry's seccomp filter"
    [sched_policy00]="sets a real-time policy: the container's cgroup has no cpu.rt_runtime_us"
    [helper_zombie_child]="wants an orphaned zombie left unreaped; the container's init reaps it"
    [netns]="compares 'ip link' output, which names the host-side peer's ifindex (venet0@ifN); that changes when the link is made again at restore (nothing else differed)"
    # zdtm's own harness: host-side setup, iptables in the container, CRIU options for the test
    [socket-tcp-close0]="checks CRIU's --tcp-close (connections closed at restore); ferry keeps them"
    [socket-dump-tcp-close]="checks CRIU's --tcp-close (connections closed at restore); ferry keeps them"
    [socket-tcp-reseted]="runs iptables inside the container (the busybox template has none)"
    [socket-tcp-syn-sent]="runs iptables inside the container (the busybox template has none)"
    [socket-tcp-closed-last-ack]="runs iptables inside the container (the busybox template has none)"
    [netns-nf]="runs iptables inside the container (the busybox template has none)"
    [netns-nft]="runs nft inside the container (the busybox template has none)"
    [netns-nft-ipt]="runs nft and iptables inside the container (the busybox template has none)"
    [bridge]="needs iproute2's ip (busybox's cannot add a bridge address with nodad)"
    [cr_veth]="needs a veth zdtm makes on the host and CRIU --external veth[] at restore"
    [cr_veth02]="needs a veth zdtm makes on the host and CRIU --external netdev[] at restore"
    [macvlan]="needs a macvlan zdtm makes on the host and CRIU --external macvlan[] at restore"
    [sit]="needs zdtm's host-side setup of a sit device"
    [netns_lock_iptables]="needs zdtm's host flavor (a netns of the host, CRIU's --network-lock iptables)"
    [netns_lock_nftables]="needs zdtm's host flavor (a netns of the host, CRIU's --network-lock nftables)"
    [net_lock_socket_iptables]="needs zdtm's host flavor and its hook on the host (--network-lock iptables)"
    [net_lock_socket_iptables6]="needs zdtm's host flavor and its hook on the host (--network-lock iptables)"
    [net_lock_socket_nftables]="needs zdtm's host flavor and its hook on the host (--network-lock nftables)"
    [net_lock_socket_nftables6]="needs zdtm's host flavor and its hook on the host (--network-lock nftables)"
    [mnt_ext_auto]="needs zdtm's ns-flavor harness (ZDTM_ROOT, external mounts on CRIU's command line)"
    [mnt_ext_collision]="needs zdtm's ns-flavor harness (ZDTM_ROOT, external mounts on CRIU's command line)"
    [mnt_ext_file_bind_auto]="needs zdtm's ns-flavor harness (ZDTM_ROOT, external mounts on CRIU's command line)"
    [mnt_ext_manual]="needs zdtm's ns-flavor harness (ZDTM_ROOT, external mounts on CRIU's command line)"
    [mnt_ext_master]="needs zdtm's ns-flavor harness (ZDTM_ROOT, external mounts on CRIU's command line)"
    [mnt_ext_multiple]="needs zdtm's ns-flavor harness (ZDTM_ROOT, external mounts on CRIU's command line)"
    [mnt_ext_root]="needs zdtm's ns-flavor harness (ZDTM_ROOT, external mounts on CRIU's command line)"
    [mnt_ext_sharing]="needs zdtm's ns-flavor harness (ZDTM_ROOT, external mounts on CRIU's command line)"
    [mnt_root_ext]="needs zdtm's ns-flavor harness (ZDTM_ROOT, external mounts on CRIU's command line)"
)

# Tests that apply to one way and not the other, one reason each: the table shows N/A for that
# way, and the test passes on the other.
STOPPED_NA="a live migration refuses a process stopped by a signal up front (CRIU hangs attaching to it under the cgroup freezer the migration needs); vzctl chkpnt takes it"
INODE_NA="compares inode numbers from before the dump, which a move to another host's file system cannot keep"
LEASE_NA="the kernel breaks a file lease on any other open, and ferry reads the container's files from the host (the checkpoint's file snapshot, the migration's file passes)"
declare -A MODE_NA=(
    [stopped:migrate]=$STOPPED_NA [stopped01:migrate]=$STOPPED_NA [stopped02:migrate]=$STOPPED_NA
    [stopped03:migrate]=$STOPPED_NA [stopped04:migrate]=$STOPPED_NA [stopped12:migrate]=$STOPPED_NA
    [vdso02:migrate]=$STOPPED_NA
    [file_locks01:migrate]=$INODE_NA [unlink_fstat03:migrate]=$INODE_NA
    [file_lease02:chkpnt]=$LEASE_NA [file_lease02:migrate]=$LEASE_NA
    [file_lease03:chkpnt]=$LEASE_NA [file_lease03:migrate]=$LEASE_NA
    [file_lease04:chkpnt]=$LEASE_NA [file_lease04:migrate]=$LEASE_NA
)

# Known failures, each with its issue: the test runs, and a failure of that way is shown as
# KNOWN (with what this run said) and does not fail the run; a pass is shown as PASS.
declare -A KNOWN=()
# The tcpbuf tests restore connections whose buffers are full and whose receive windows are
# closed. From Linux 6.17 on, the kernel drops a segment beyond the receiver's window before it
# reads the ACK in it. The sockets ferry's restore makes send 524-byte segments at first (their
# MSS is set at CRIU's repair-mode connect, before the MSS clamp is restored; sockets CRIU
# restored here into a network namespace it kept came back at 65483), whose memory overhead
# soon puts a receive queue over its buffer; it refuses what the peer sends, and each side
# then drops all the other sends (nstat: TcpExtBeyondWindow), so the test hangs: through chkpnt
# as through a migration (chkpnt 3 of 4 runs when the test has run 1 s before the dump). On Debian 13's 6.12 the same
# passes every time, as does CRIU alone on this kernel (its own netns kept); CRIU's CI skips
# these tests on runners with such a kernel (checkpoint-restore/criu pull request 3042).
# Issue #23.
kernel_at_least() { # MAJOR MINOR
    local v; v=$(uname -r); v=${v%%-*}
    [ "${v%%.*}" -gt "$1" ] || { [ "${v%%.*}" -eq "$1" ] && [ "$(echo "$v" | cut -d. -f2)" -ge "$2" ]; }
}
if kernel_at_least 6 17; then
    TCPBUF_KNOWN="on Linux $(uname -r) (6.17 and later) each side of the restored full connection drops what the other sends as beyond its window (TcpExtBeyondWindow) and the test hangs, through chkpnt and migration alike; passes on 6.12 (issue #23)"
    for t in socket-tcpbuf socket-tcpbuf6 socket-tcpbuf-local socket-tcpbuf6-local; do
        KNOWN[$t:chkpnt]=$TCPBUF_KNOWN; KNOWN[$t:migrate]=$TCPBUF_KNOWN
    done
fi

# ---- The programs: CRIU's source, built once ------------------------------------------------------
need_pkgs() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] && return 0
    echo "zdtm: installing build dependencies from the host's Debian archive: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "could not install ${missing[*]}"
}

debian_uri() { # the Debian archive named in the host's apt sources (a mirror or proxy set there is used)
    local f u
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        u=$(awk '/^URIs:/{print $2; exit}' "$f")
        case "$u" in */debian) echo "$u"; return 0 ;; esac
    done
    if [ -f /etc/apt/sources.list ]; then
        u=$(awk '($1=="deb" || $1=="deb-src") && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list)
        [ -n "$u" ] && { echo "${u%/}"; return 0; }
    fi
    return 1
}

# Puts Debian unstable's criu .orig tarball into $1 and prints "TARBALL VERSION".
fetch_debian_source() {
    local dl=$1 uri state dsc orig want have ver
    uri=$(debian_uri) || die "no Debian archive found in /etc/apt sources to fetch criu's source from"
    state=$(mktemp -d /tmp/ferry-zdtm-apt.XXXXXX)
    mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc"
    : > "$state/status"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri sid main" > "$state/etc/sources.list"
    local o=(-o "Dir::Etc::SourceList=$state/etc/sources.list" -o Dir::Etc::SourceParts=/nonexistent
             -o "Dir::State::Lists=$state/lists" -o "Dir::State::status=$state/status"
             -o "Dir::Cache=$state/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    apt-get "${o[@]}" -qq update >&2 || { rm -rf "$state"; die "apt-get update of the private deb-src state failed"; }
    # Only the .dsc and the upstream tarball are used (Debian's packaging is not): a failed
    # download of the .debian.tar alone is not fatal, the checks below are.
    (cd "$dl" && apt-get "${o[@]}" -q source --download-only criu > "$state/source.log" 2>&1) || true
    dsc=$(ls "$dl"/criu_*.dsc 2>/dev/null | head -n1)
    [ -n "$dsc" ] || die "apt-get source --download-only criu fetched no .dsc: $(tail -n 3 "$state/source.log")"
    orig=$(sed -n 's/^ [0-9a-f]\{64\} [0-9]* \(criu_.*\.orig\.tar\.[a-z0-9]*\)$/\1/p' "$dsc" | head -n1)
    [ -n "$orig" ] && [ -f "$dl/$orig" ] || die "criu's upstream tarball ($orig) was not downloaded: $(tail -n 3 "$state/source.log")"
    rm -rf "$state"
    want=$(sed -n "s/^ \([0-9a-f]\{64\}\) [0-9]* $orig\$/\1/p" "$dsc")
    have=$(sha256sum "$dl/$orig" | cut -d' ' -f1)
    [ "$want" = "$have" ] || die "$orig: SHA-256 $have, the .dsc says $want"
    ver=$(sed -n 's/^Version: *//p' "$dsc" | head -n1)
    echo "$dl/$orig debian-$ver"
}

build_tests() {
    [ -f "$cache/stamp" ] && [ -f "$cache/tests.list" ] && [ -d "$cache/zdtm/static" ] && return 0
    need_pkgs gcc make libc6-dev libaio-dev libcap-dev xz-utils tar
    mkdir -p "$(dirname "$cache")"
    local stage="$cache.new.$$" src ver got tarball
    rm -rf "$stage"; mkdir -p "$stage/dl" "$stage/src"
    if [ -n "${FERRY_ZDTM_SRC:-}" ]; then
        if [ -d "$FERRY_ZDTM_SRC" ]; then
            [ -d "$FERRY_ZDTM_SRC/test/zdtm/static" ] || die "FERRY_ZDTM_SRC=$FERRY_ZDTM_SRC has no test/zdtm/static"
            cp -a "$FERRY_ZDTM_SRC/test/zdtm" "$stage/src/"
            ver="the CRIU source in $FERRY_ZDTM_SRC"
        else
            tar -xf "$FERRY_ZDTM_SRC" -C "$stage/src" --strip-components=2 --wildcards '*/test/zdtm/*' \
                || die "could not unpack test/zdtm from $FERRY_ZDTM_SRC"
            ver="$(basename "$FERRY_ZDTM_SRC") sha256 $(sha256sum "$FERRY_ZDTM_SRC" | cut -c1-16)"
        fi
    else
        echo "zdtm: fetching CRIU's source (Debian unstable's criu source package, private apt state)"
        got=$(fetch_debian_source "$stage/dl")
        tarball=${got%% *}
        tar -xf "$tarball" -C "$stage/src" --strip-components=2 --wildcards '*/test/zdtm/*' \
            || die "could not unpack test/zdtm from $tarball"
        ver="criu ${got#* } ($(basename "$tarball"), Debian unstable)"
    fi
    src="$stage/src/zdtm"
    [ -f "$src/static/Makefile" ] && [ -f "$src/lib/Makefile" ] || die "CRIU's source has no test/zdtm/{lib,static}/Makefile"
    echo "zdtm: building CRIU's zdtm static tests, statically linked ($ver); log: $cache/build.log"
    # The test lists as CRIU's Makefile names them (and so how each is started).
    printf 'ferry-print-%%:\n\t@echo $($*)\n' > "$stage/print.mk"
    local kind v t
    : > "$stage/tests.kinds"
    for kind in NOFILE FILE DIR DIR_FILE; do
        for t in $(make -s -C "$src/static" -f Makefile -f "$stage/print.mk" "ferry-print-TST_$kind"); do
            echo "$t $kind" >> "$stage/tests.kinds"
        done
    done
    for t in $(make -s -C "$src/static" -f Makefile -f "$stage/print.mk" ferry-print-TST); do
        grep -q "^$t " "$stage/tests.kinds" || echo "$t OTHER" >> "$stage/tests.kinds"
    done
    [ "$(wc -l < "$stage/tests.kinds")" -gt 100 ] || die "CRIU's test/zdtm/static/Makefile lists too few tests"
    LDFLAGS=-static make -C "$src/lib" libzdtmtst.a > "$stage/build.log" 2>&1 \
        || { cp "$stage/build.log" /tmp/ferry-zdtm-build.log; die "CRIU's libzdtmtst.a did not build: /tmp/ferry-zdtm-build.log"; }
    # -k: a test that does not build here (netns_sub_veth wants libnl) is no reason to stop; it
    # is shown as not applicable, with the reason.
    LDFLAGS=-static make -k -j"$(nproc)" -C "$src/static" $(cut -d' ' -f1 "$stage/tests.kinds") >> "$stage/build.log" 2>&1 || true
    : > "$stage/tests.list"
    local built=0
    while read -r t kind; do
        if [ -x "$src/static/$t" ]; then
            echo "$t $kind built" >> "$stage/tests.list"; built=$((built + 1))
        else
            echo "$t $kind unbuilt" >> "$stage/tests.list"
        fi
    done < "$stage/tests.kinds"
    [ "$built" -gt 100 ] || { cp "$stage/build.log" /tmp/ferry-zdtm-build.log; die "only $built tests built: /tmp/ferry-zdtm-build.log"; }
    find "$src" \( -name '*.o' -o -name '*.d' \) -delete
    mv "$src" "$stage/zdtm"
    rm -rf "$stage/src" "$stage/dl" "$stage/print.mk" "$stage/tests.kinds"
    echo "$ver" > "$stage/stamp"
    rm -rf "$cache"
    mv "$stage" "$cache"
    echo "zdtm: built $built tests into $cache"
}

mkdir -p "$(dirname "$cache")"
exec 9> "$cache.lock"
flock 9
build_tests
exec 9>&-
zsrc=$cache/zdtm/static
echo "zdtm: tests from $(cat "$cache/stamp") in $cache"

declare -A KIND BUILT
while read -r t k b; do KIND[$t]=$k; BUILT[$t]=$b; done < "$cache/tests.list"

desc_get() { # desc_get TEST KEY: a field of the test's .desc (CRIU's per-test flags)
    local f="$zsrc/$1.desc"
    [ -f "$f" ] || return 0
    tr '\n' ' ' < "$f" | sed -nE "s/.*['\"]$2['\"][[:space:]]*:[[:space:]]*['\"]([^'\"]*)['\"].*/\1/p"
}

# Why TEST cannot run here (empty when it can).
why_not() {
    local t=$1 flags arch
    [ -n "${KIND[$t]:-}" ] || { echo "no such test in CRIU's test/zdtm/static"; return; }
    [ -n "${EXCLUDED[$t]:-}" ] && { echo "${EXCLUDED[$t]}"; return; }
    [ "${BUILT[$t]}" = built ] || { echo "did not build here (see $cache/build.log)"; return; }
    flags=" $(desc_get "$t" flags) "
    case "$flags" in *" crfail "*) echo "crfail: CRIU must refuse it"; return ;; esac
    case "$flags" in *" noauto "*) echo "noauto in CRIU's desc (not run automatically)"; return ;; esac
    arch=$(desc_get "$t" arch)
    if [ -n "$arch" ] && ! [[ " $arch " == *" $(uname -m) "* ]]; then echo "for $arch only"; return; fi
}

selected=()
case "$sel" in
    default) selected=("${DEFAULT_TESTS[@]}") ;;
    all) while read -r t _ _; do selected+=("$t"); done < "$cache/tests.list" ;;
    only) IFS=, read -r -a selected <<< "$only" ;;
esac

if [ "$list" = 1 ]; then
    echo "selection ($sel): ${selected[*]}"
    echo "excluded from --all:"
    while read -r t _ _; do
        r=$(why_not "$t"); [ -z "$r" ] || printf '  %-34s %s\n' "$t" "$r"
    done < "$cache/tests.list"
    echo "known failures (shown as KNOWN, not failing the run):"
    for k in $(printf '%s\n' "${!KNOWN[@]}" | sort); do
        printf '  %-34s %s\n' "${k%%:*} (${k#*:})" "${KNOWN[$k]}"
    done
    echo "run one way only:"
    for k in $(printf '%s\n' "${!MODE_NA[@]}" | sort); do
        printf '  %-34s %s\n' "${k%%:*} (not ${k#*:})" "${MODE_NA[$k]}"
    done
    exit 0
fi

# ---- The lab ---------------------------------------------------------------------------------------
for c in nsenter timeout flock ip; do command -v "$c" >/dev/null 2>&1 || die "$c is missing"; done
[ -x "$FERRY_CRIU" ] || die "CRIU not found at FERRY_CRIU=$FERRY_CRIU (scripts/setup.sh installs it)"
# One run at a time: a second one would tear this one's lab down under it.
exec 8> /tmp/ferry-zdtm.lock
flock -n 8 || die "another scripts/zdtm.sh is running (it holds /tmp/ferry-zdtm.lock): its lab is ferry-zdtm-*"
cargo build -q --bins -p ferry -p ferry-testbed
bin=$here/target/debug
lab=zdtm
base=/tmp/ferry-zdtm
root() { echo "$base/$lab/$1"; }
on() { local h=$1; shift; nsenter --net="/run/netns/ferry-$lab-$h" -- "$@"; }
vz() { local h=$1; shift; on "$h" "$bin/vzctl" --root-dir "$(root "$h")" "$@"; }
ip_of() { [ "$1" = hostA ] && echo 198.18.0.1 || echo 198.18.0.2; }
agent_pid() { cat "$(root "$1")/vz/run/vzagentd.pid" 2>/dev/null || true; }
agent_alive() { local p; p=$(agent_pid "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
stop_agents() { # only the agents of this lab, by the pid each wrote, and only if it is still one
    local h p
    for h in hostA hostB; do
        p=$(agent_pid "$h")
        [ -n "$p" ] && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q "vzagentd --root-dir $(root "$h") " \
            && kill "$p" 2>/dev/null || true
    done
}
lab_down() {
    stop_agents
    [ -x "$bin/ferry-lab" ] && "$bin/ferry-lab" --base "$base" down --name "$lab" > /dev/null 2>&1 || true
}
run=$(mktemp -d /tmp/ferry-zdtm-run.XXXXXX)
cleanup() {
    local rc=$?
    lab_down
    if [ "$rc" = 0 ] && [ -z "$(ls -A "$run" 2>/dev/null | grep -v '^agent-')" ] && [ -z "${FERRY_ZDTM_KEEP:-}" ]; then
        rm -rf "$run"
    else
        echo "zdtm: logs kept in $run"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
lab_down
"$bin/ferry-lab" --base "$base" up --name "$lab" --hosts hostA,hostB > /dev/null
fa=$("$bin/vzagentd" --root-dir "$(root hostA)" fingerprint)
fb=$("$bin/vzagentd" --root-dir "$(root hostB)" fingerprint)
"$bin/vzagentd" --root-dir "$(root hostA)" trust add hostB 198.18.0.2 "$fb" > /dev/null
"$bin/vzagentd" --root-dir "$(root hostB)" trust add hostA 198.18.0.1 "$fa" > /dev/null
start_agent() {
    agent_alive "$1" && return 0
    on "$1" setsid "$bin/vzagentd" --root-dir "$(root "$1")" run --listen "$(ip_of "$1")" \
        >> "$run/agent-$1.log" 2>&1 < /dev/null 8>&- &
    local i
    for i in $(seq 1 100); do agent_alive "$1" && return 0; sleep 0.1; done
    die "the agent of $1 did not start: $(tail -n 5 "$run/agent-$1.log")"
}
start_agent hostA
start_agent hostB
echo "zdtm: lab $lab up (hostA 198.18.0.1, hostB 198.18.0.2); run directory $run"

# ---- One test in one mode ----------------------------------------------------------------------------
declare -A FEATURE
feature_ok() {
    if [ -z "${FEATURE[$1]:-}" ]; then
        "$FERRY_CRIU" check --feature "$1" > /dev/null 2>&1 && FEATURE[$1]=yes || FEATURE[$1]=no
    fi
    [ "${FEATURE[$1]}" = yes ]
}

test_args() { # how CRIU's Makefile starts it (cwd /zdtm/static)
    local t=$1 a="--pidfile=$1.pid --outfile=$1.out"
    case "${KIND[$t]}" in
        FILE) a+=" --filename=$t.test" ;;
        DIR) a+=" --dirname=$t.test" ;;
        DIR_FILE) a+=" --dirname=$t.dir.test --filename=$t.test" ;;
    esac
    case "$t" in
        cmdlinenv00) a+=" --arg1=arg1 --arg2=arg2 --arg3=arg3" ;;
        shm-unaligned) a+=" --shmem_size=5000" ;;
        shm-hugetlb) a+=" --shmem_size=4194304" ;;
        env00) a+=" --envname=ENV_00_TEST" ;;
        umask00) a+=" --mask=0345" ;;
        fifo-rowo-pair) a+=" --name_master=$t.master.test --name_slave=$t.slave.test" ;;
    esac
    echo "$a"
}

# The first line of CRIU's logs (or the command's output) that says what went wrong, skipping
# the rlimit complaint CRIU makes on every run here.
first_error() {
    local f l
    # CRIU's own error lines first (in vzctl's or vzmigrate's message, or in its logs)...
    for f in "$@"; do
        [ -s "$f" ] || continue
        l=$(grep -a 'Error (' "$f" | grep -a -v RLIMIT_NOFILE | head -n1)
        [ -n "$l" ] && { echo "$l" | sed -E 's/.*(Error \()/\1/' | cut -c1-200; return; }
    done
    # ...then ferry's.
    for f in "$@"; do
        [ -s "$f" ] || continue
        l=$(grep -a -E '^Error|[Ee]rror:|refus|timed out' "$f" | grep -a -v RLIMIT_NOFILE | head -n1)
        [ -n "$l" ] && { echo "$l" | cut -c1-200; return; }
    done
    for f in "$@"; do
        [ -s "$f" ] && { grep -a -v '^ *$' "$f" | tail -n1 | cut -c1-200; return; }
    done
    echo "no log"
}

ctid=1000
result=""    # PASS / FAIL / N/A
reason=""
# run_mode TEST MODE: sets $result and $reason; logs in $run/TEST/ (removed when it passes)
run_mode() {
    local t=$1 mode=$2 d="$run/$1" h=hostA c ip userns=no rc i priv out
    ctid=$((ctid + 1)); c=$ctid
    ip=198.18.0.$((80 + c % 20))
    [[ " ${USERNS_TESTS[*]} " == *" $t "* ]] && userns=yes
    [ -n "${FERRY_ZDTM_USERNS:-}" ] && userns=$FERRY_ZDTM_USERNS
    mkdir -p "$d"
    local log="$d/$mode.log"
    result=FAIL; reason=""
    {
        echo "== $t $mode: container $c (--userns $userns, $ip)"
        vz hostA create "$c" --userns "$userns" --ipadd "$ip" && vz hostA start "$c"
    } >> "$log" 2>&1 || { reason="container did not start: $(first_error "$log")"; finish_mode "$t" "$mode" "$c" "$h"; return; }
    priv=$(root hostA)/vz/private/$c
    mkdir -p "$priv/zdtm/static"
    cp "$zsrc/$t" "$priv/zdtm/static/"
    # Writable for everyone, as zdtm makes it: tests that switch to another user write their
    # outfile there after.
    chmod 0777 "$priv/zdtm/static"
    # Its descriptors 0-2 are the container's own files: one inherited from the host (vzctl
    # exec's) could not be dumped, and a helper the test forks before it daemonizes keeps them.
    local cmd="cd /zdtm/static && ./$t $(test_args "$t") < /dev/null > $t.start 2>&1"
    echo "+ start: $cmd" >> "$log"
    if ! timeout -k 5 90 nsenter --net="/run/netns/ferry-$lab-hostA" -- "$bin/vzctl" --root-dir "$(root hostA)" \
            exec "$c" "$cmd" >> "$log" 2>&1 \
        || [ ! -s "$priv/zdtm/static/$t.pid" ]; then
        # What it said first (its parent's "Test exited unexpectedly" comes last).
        reason=$(cat "$priv/zdtm/static/$t.start" "$priv/zdtm/static/$t.out"* 2>/dev/null | grep -a -v '^ *$' \
            | grep -a -v 'Test exited unexpectedly' | grep -a -m1 -E 'ERR|FAIL|rror|not found|^sh:' \
            | sed -E 's/^[0-9:.]+: +[0-9]+: *//' | cut -c1-160)
        reason="did not start: ${reason:-no message (its start timed out or it died)}"
        finish_mode "$t" "$mode" "$c" "$h"; return
    fi
    case "$mode" in
        chkpnt)
            echo "+ vzctl chkpnt $c" >> "$log"
            timeout -k 10 300 nsenter --net="/run/netns/ferry-$lab-hostA" -- "$bin/vzctl" --root-dir "$(root hostA)" chkpnt "$c" >> "$log" 2>&1; rc=$?
            if [ "$rc" != 0 ]; then
                [ "$rc" = 124 ] && echo "vzctl chkpnt timed out after 300 s" >> "$log"
                reason="$(first_error "$(root hostA)/vz/log/$c.dump.log" "$log")"
                finish_mode "$t" "$mode" "$c" "$h"; return
            fi
            echo "+ vzctl restore $c" >> "$log"
            timeout -k 10 300 nsenter --net="/run/netns/ferry-$lab-hostA" -- "$bin/vzctl" --root-dir "$(root hostA)" restore "$c" >> "$log" 2>&1; rc=$?
            if [ "$rc" != 0 ]; then
                [ "$rc" = 124 ] && echo "vzctl restore timed out after 300 s" >> "$log"
                reason="restore: $(first_error "$(root hostA)/vz/log/$c.restore.log" "$log")"
                finish_mode "$t" "$mode" "$c" "$h"; return
            fi ;;
        migrate)
            echo "+ vzmigrate --online hostB $c" >> "$log"
            timeout -k 10 300 nsenter --net="/run/netns/ferry-$lab-hostA" -- "$bin/vzmigrate" --root-dir "$(root hostA)" --online hostB "$c" >> "$log" 2>&1; rc=$?
            if [ "$rc" != 0 ]; then
                [ "$rc" = 124 ] && echo "vzmigrate timed out after 300 s" >> "$log"
                reason="$(grep -ao 'in phase [A-Za-z]*' "$log" | head -n1 | sed 's/$/: /')$(first_error "$log" "$(root hostB)/vz/log/$c.restore.log" "$(root hostA)/vz/log/$c.dump.log")"
                # Where does it run now? (A failed migration resumes it on the source.)
                vz hostB status "$c" 2>/dev/null | grep -q running && h=hostB
                finish_mode "$t" "$mode" "$c" "$h"; return
            fi
            h=hostB ;;
    esac
    priv=$(root "$h")/vz/private/$c
    echo "+ kill -TERM (on $h)" >> "$log"
    timeout -k 5 60 nsenter --net="/run/netns/ferry-$lab-$h" -- "$bin/vzctl" --root-dir "$(root "$h")" \
        exec "$c" "kill -TERM \$(cat /zdtm/static/$t.pid)" >> "$log" 2>&1 \
        || { reason="could not signal the test: $(first_error "$log")"; finish_mode "$t" "$mode" "$c" "$h"; return; }
    for i in $(seq 1 600); do [ -e "$priv/zdtm/static/$t.out" ] && break; sleep 0.1; done
    if [ ! -e "$priv/zdtm/static/$t.out" ]; then
        reason="no result within 60 s of SIGTERM (the test died or hangs)"
    elif grep -a -qw PASS "$priv/zdtm/static/$t.out"; then
        result=PASS
    else
        reason=$(grep -a -v '^ *$' "$priv/zdtm/static/$t.out" | grep -a -m1 -E 'FAIL|ERR|fail|rror' || tail -n1 "$priv/zdtm/static/$t.out")
        reason="test says: $(echo "$reason" | sed -E 's/^[0-9:.]+: +[0-9]+: *//' | cut -c1-160)"
    fi
    finish_mode "$t" "$mode" "$c" "$h"
}

# Keeps the failure's logs, removes the container (from wherever it is).
finish_mode() {
    local t=$1 mode=$2 c=$3 h=$4 d="$run/$1" x f
    if [ "$result" != PASS ]; then
        for x in hostA hostB; do
            for f in "$(root "$x")"/vz/log/"$c".*; do [ -e "$f" ] && cp "$f" "$d/$mode.$x.$(basename "$f")"; done
            for f in "$(root "$x")"/vz/private/"$c"/zdtm/static/"$t".{out,start}*; do [ -e "$f" ] && cp "$f" "$d/$mode.$x.$(basename "$f")"; done
        done
        echo "$reason" > "$d/$mode.reason"
    fi
    for x in hostA hostB; do
        [ -e "$(root "$x")/etc/vz/conf/$c.conf" ] || continue
        {
            timeout -k 5 60 nsenter --net="/run/netns/ferry-$lab-$x" -- "$bin/vzctl" --root-dir "$(root "$x")" stop --fast "$c"
            timeout -k 5 60 nsenter --net="/run/netns/ferry-$lab-$x" -- "$bin/vzctl" --root-dir "$(root "$x")" destroy "$c"
        } >> "$d/cleanup.log" 2>&1 || true
        [ -e "$(root "$x")/etc/vz/conf/$c.conf" ] && echo "container $c on $x could not be removed (see $d/cleanup.log)" >&2
    done
    return 0
}

# ---- Run -----------------------------------------------------------------------------------------------
set +e
passed=0
failed=0
ctl_failed=()
na=0
known=0
declare -A R W
t0=$(date +%s)
printf '%-30s %-8s %-8s %-8s %5s  %s\n' TEST CONTROL CHKPNT MIGRATE TIME "WHY (for what is not PASS)"
for t in "${selected[@]}"; do
    why=$(why_not "$t")
    [ -n "$why" ] && [ "$force" = 1 ] && [ "${BUILT[$t]:-}" = built ] && why=""
    if [ -z "$why" ]; then
        for f in $(desc_get "$t" feature); do
            feature_ok "$f" || { why="CRIU on this host lacks the '$f' feature"; break; }
        done
    fi
    if [ -n "$why" ]; then
        na=$((na + 1))
        printf '%-30s %-8s %-8s %-8s %5s  %s\n' "$t" N/A N/A N/A - "$why"
        continue
    fi
    ts=$(date +%s)
    R=(); W=()
    run_mode "$t" control; R[control]=$result; W[control]=$reason
    if [ "${R[control]}" = PASS ]; then
        for m in chkpnt migrate; do
            if [ -n "${MODE_NA[$t:$m]:-}" ]; then
                R[$m]=N/A; W[$m]="${MODE_NA[$t:$m]}"
            else
                run_mode "$t" "$m"; R[$m]=$result; W[$m]=$reason
                if [ "$result" = FAIL ] && [ -n "${KNOWN[$t:$m]:-}" ]; then
                    R[$m]=KNOWN; W[$m]="known failure: ${KNOWN[$t:$m]}; this run: $reason"
                    known=$((known + 1))
                fi
            fi
        done
    else
        R[chkpnt]=N/A; W[chkpnt]=""; R[migrate]=N/A; W[migrate]=""
    fi
    notes=""
    for m in control chkpnt migrate; do
        [ -n "${W[$m]}" ] && notes+="$m: ${W[$m]}; "
    done
    [ "${R[control]}" = PASS ] || notes="control failed, dumps not tried: ${W[control]}"
    printf '%-30s %-8s %-8s %-8s %4ss  %s\n' "$t" "${R[control]}" "${R[chkpnt]}" "${R[migrate]}" "$(( $(date +%s) - ts ))" "${notes%; }"
    if [ "${R[control]}" != PASS ]; then
        ctl_failed+=("$t")
    elif [ "${R[chkpnt]}" != FAIL ] && [ "${R[migrate]}" != FAIL ]; then
        passed=$((passed + 1)); rm -rf "${run:?}/$t"
    else
        failed=$((failed + 1))
    fi
done
elapsed=$(( $(date +%s) - t0 ))
echo "zdtm: ${#selected[@]} tests in ${elapsed} s: $passed passed every way that applies to them, $failed failed a dump mode, ${#ctl_failed[@]} failed their control, $na not applicable, $known known failures of one way (KNOWN)"
if [ ${#ctl_failed[@]} -gt 0 ]; then
    echo "zdtm: failed their control (the test cannot pass here even without a dump): ${ctl_failed[*]}"
    # The default selection holds tests that pass their control on such a host: there a control
    # failure is a finding too.
    [ "$sel" = default ] && failed=$((failed + ${#ctl_failed[@]}))
fi
echo "test result: $([ "$failed" = 0 ] && echo ok || echo FAILED). $passed passed; $failed failed (zdtm)"
[ "$failed" = 0 ]
