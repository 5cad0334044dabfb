#!/bin/bash
# Nightly offline checkpoints: every running container is checkpointed with --keep-running
# (frozen for a fraction of a second, then it runs on), and only the newest N checkpoints of
# each are kept (with what they depend on: see `vzctl chkpnt --keep`).
#
#   nightly-checkpoints.sh [--keep N] [--root-dir DIR] [--bin DIR]
#
# Copy it to /usr/local/sbin and run it from cron, for instance
#   30 2 * * *  root  /usr/local/sbin/nightly-checkpoints.sh --keep 7 >>/var/log/ferry-nightly.log 2>&1
#
# One container failing does not stop the others. Exit status: 0 when every running container
# was checkpointed, 1 when any failed (each failure is logged with vzctl's reason), 2 for bad
# usage. Stopped containers are skipped (there is nothing to checkpoint).
set -u -o pipefail

keep=7
root=()
bin=""
usage() { echo "usage: $0 [--keep N] [--root-dir DIR] [--bin DIR]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --keep) [ $# -ge 2 ] || usage; keep=$2; shift 2 ;;
        --root-dir) [ $# -ge 2 ] || usage; root=(--root-dir "$2"); shift 2 ;;
        --bin) [ $# -ge 2 ] || usage; bin="$2/"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) usage ;;
    esac
done
case "$keep" in ''|*[!0-9]*|0) echo "$0: --keep needs a positive number, not '$keep'" >&2; exit 2 ;; esac
command -v jq >/dev/null || { echo "$0: jq is needed (apt-get install jq)" >&2; exit 2; }

log() { echo "$(date -u +%FT%TZ) $*"; }

# Running containers only, as vzlist lists them by default; --json for a stable format.
if ! list=$("${bin}vzlist" "${root[@]}" --json); then
    log "vzlist failed; nothing checkpointed"
    exit 1
fi
ctids=$(jq -r '.[] | select(.status == "running") | .ctid' <<<"$list") || exit 1

failed=0
count=0
for ctid in $ctids; do
    count=$((count + 1))
    if out=$("${bin}vzctl" "${root[@]}" chkpnt "$ctid" --keep-running --keep "$keep" 2>&1); then
        log "container $ctid: $(grep -E '^(Checkpoint|Deleted)' <<<"$out" | tr '\n' ';' | sed 's/;$//')"
    else
        failed=$((failed + 1))
        log "container $ctid: checkpoint FAILED: $(tail -n 1 <<<"$out")"
    fi
done
log "done: $count running container(s), $failed failed, keeping $keep checkpoint(s) each"
[ "$failed" -eq 0 ]
