# What the guest offers ferry: CRIU's checks, the cgroup controllers, `vzctl check`.
#   scripts/guests.sh run trixie testbed/vm/examples/check.sh
set -x
uname -r
/opt/ferry/criu/criu check
/opt/ferry/criu/criu check --feature mem_dirty_track
cat /sys/fs/cgroup/cgroup.subtree_control
vzctl --root-dir /var/lib/ferry-check check
