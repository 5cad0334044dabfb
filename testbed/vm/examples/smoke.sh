# A busybox container's life in a guest: cache, create, start, exec, chkpnt/restore, stop.
#   scripts/guests.sh run bookworm testbed/vm/examples/smoke.sh
set -e
R=/var/lib/ferry
t() { local s=$EPOCHREALTIME; echo "+ $*"; "$@"; local rc=$?; echo "  -> rc=$rc ($(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $s}")s)"; return $rc; }
t vzpkg --root-dir $R create-cache busybox
t vzctl --root-dir $R create 101 --ostemplate busybox
t vzctl --root-dir $R start 101
t vzctl --root-dir $R exec 101 'echo hi'
t vzctl --root-dir $R chkpnt 101
t vzctl --root-dir $R restore 101
t vzctl --root-dir $R exec 101 'echo hi after restore'
t vzctl --root-dir $R stop 101
