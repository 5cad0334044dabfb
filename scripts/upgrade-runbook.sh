#!/bin/bash
# Hardware-upgrade runbook: move every container off this host, wait while the host is
# serviced, then bring them all back.
#
#   upgrade-runbook.sh [--to PEER[,PEER...]] [--parallel N] [--bwlimit RATE] [--max-downtime D]
#                      [--all] [--force] [--wait-file FILE] [--root-dir DIR] [--bin DIR]
#
# 1. Plan: `vzevacuate --dry-run`. If any container cannot be placed the runbook stops here and
#    changes nothing, unless --force (those containers then stay and are reported).
# 2. Evacuate: `vzevacuate`, run again (it resumes from its journal) up to three times while
#    containers are left that could move.
# 3. Check that no container of the plan runs here any more.
# 4. Wait for the upgrade: with --wait-file FILE, until FILE is removed (it is created here);
#    otherwise until the operator types "done" on the terminal. The host can be rebooted in
#    between: run the runbook again with the same options and it carries on (the evacuation
#    journal says what was moved).
# 5. Return: `vzevacuate --return`, again retried, then check every container is back.
#
# Exit status: 0 when everything moved and came back, 1 when a step failed (the output says
# which, and what runs where), 2 for bad usage.
set -u -o pipefail

evac=()
all=()
force=0
wait_file=""
root=()
bin=""
usage() { echo "usage: see the head of $0" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --to|--parallel|--bwlimit|--max-downtime) [ $# -ge 2 ] || usage; evac+=("$1" "$2"); shift 2 ;;
        --all) all=(--all); shift ;;
        --force) force=1; shift ;;
        --wait-file) [ $# -ge 2 ] || usage; wait_file=$2; shift 2 ;;
        --root-dir) [ $# -ge 2 ] || usage; root=(--root-dir "$2"); shift 2 ;;
        --bin) [ $# -ge 2 ] || usage; bin="$2/"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) usage ;;
    esac
done
command -v jq >/dev/null || { echo "$0: jq is needed (apt-get install jq)" >&2; exit 2; }

step() { echo "== $(date -u +%T) $*"; }
fail() { echo "== FAILED: $*" >&2; exit 1; }
journal_file() {
    local r=/
    [ ${#root[@]} -eq 2 ] && r=${root[1]}
    echo "$r/vz/run/evacuation.json"
}

# Containers the journal says were moved away (an earlier, interrupted run of this runbook).
moved=$(jq -r '.entries[]? | select(.state == "moved") | .ctid' "$(journal_file)" 2>/dev/null | sort -n)

if [ -z "$moved" ]; then
    step "1. plan"
    plan=$("${bin}vzevacuate" "${root[@]}" "${evac[@]}" "${all[@]}" --dry-run --json) || fail "planning: vzevacuate --dry-run"
    jq -r '.plan[] | "   \(.ctid) -> \(.peer // "NOWHERE: \(.why_not)")"' <<<"$plan"
    stuck=$(jq -r '.plan[] | select(.peer == null) | .ctid' <<<"$plan")
    if [ -n "$stuck" ] && [ "$force" -eq 0 ]; then
        fail "containers $(echo $stuck) cannot be placed; nothing was moved (free room on a peer, or --force to leave them here)"
    fi
    [ "$(jq '.plan | length' <<<"$plan")" -gt 0 ] || step "   no container to move"

    step "2. evacuate"
    for try in 1 2 3; do
        if "${bin}vzevacuate" "${root[@]}" "${evac[@]}" "${all[@]}"; then
            break
        fi
        echo "   vzevacuate left containers behind (try $try of 3)"
        [ "$try" -lt 3 ] || [ "$force" -eq 1 ] || fail "evacuation incomplete; the containers above stay here and run"
    done
    step "3. check"
    moved=$(jq -r '.entries[]? | select(.state == "moved") | .ctid' "$(journal_file)" 2>/dev/null | sort -n)
    for ctid in $moved; do
        st=$("${bin}vzctl" "${root[@]}" status "$ctid" --json 2>/dev/null | jq -r '.running // false')
        [ "$st" != "true" ] || fail "container $ctid still runs here"
    done
    echo "   moved away: $(echo $moved)"
else
    step "1-3. already evacuated by an earlier run: $(echo $moved)"
fi

step "4. the host is ready for maintenance"
if [ -n "$wait_file" ]; then
    touch "$wait_file"
    echo "   remove $wait_file when the upgrade is done"
    while [ -e "$wait_file" ]; do sleep 1; done
else
    answer=""
    while [ "$answer" != "done" ]; do
        read -r -p "   type 'done' when the upgrade is finished: " answer || fail "no terminal to wait on (use --wait-file)"
    done
fi

step "5. return"
ret=()
for ((i = 0; i < ${#evac[@]}; i += 2)); do
    case "${evac[i]}" in --parallel|--bwlimit|--max-downtime) ret+=("${evac[i]}" "${evac[i+1]}") ;; esac
done
for try in 1 2 3; do
    if "${bin}vzevacuate" "${root[@]}" "${ret[@]}" --return; then
        break
    fi
    echo "   some containers did not come back (try $try of 3)"
    [ "$try" -lt 3 ] || fail "return incomplete: run $0 again, or vzevacuate --return"
done
for ctid in $moved; do
    st=$("${bin}vzctl" "${root[@]}" status "$ctid" --json 2>/dev/null | jq -r '.running // false')
    [ "$st" = "true" ] || fail "container $ctid is not running here after the return"
done
step "done: $(echo $moved | wc -w) container(s) back"
