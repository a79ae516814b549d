#!/usr/bin/env bash
# Stop the private SLURM cluster started by slurm-up.sh and remove STATE_DIR.
#
#   Scripts/cluster/slurm-down.sh STATE_DIR [--keep-dir]
#
# Cancels remaining jobs, stops slurmd(s), slurmctld and munged by the pid files under STATE_DIR, then
# stops any process still holding files under STATE_DIR (orphaned slurmstepd / job steps). Never matches
# processes by name. Safe to run twice and after a partial start.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# -ge 1 ] || die "usage: $0 STATE_DIR [--keep-dir]"
state=$1; keep=${2:-}
[ -d "$state" ] || exit 0
state=$(cd "$state" && pwd)
cd /
export PATH="$PATH:/usr/sbin:/sbin"
[ -f "$state/slurm.conf" ] && [ "$state" != / ] || { [ "$keep" = --keep-dir ] || rm -rf "$state"; exit 0; }
export SLURM_CONF=$state/slurm.conf

# Jobs first, so slurmstepd tears its steps down while slurmd is still there to help.
if [ -f "$state/run/slurmctld.pid" ] && proc_alive "$(tr -dc 0-9 < "$state/run/slurmctld.pid")"; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 50); do
        [ -z "$(squeue -h -t running,completing,pending -o %i 2>/dev/null)" ] && break
        sleep 0.2
    done
fi
for f in "$state"/run/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile "$f" 10; done
stop_pidfile "$state/run/slurmctld.pid" 10
stop_pidfile "$state/munge/munged.pid" 5
# Whatever still holds our files was started by our daemons.
for pid in $(pids_using "$state"); do stop_pid "$pid" 3; done
[ "$keep" = --keep-dir ] || rm -rf "$state"
log "SLURM down"
