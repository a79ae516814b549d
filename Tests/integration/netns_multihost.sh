#!/usr/bin/env bash
# mpirun across two "hosts": two network namespaces on a private bridge (Scripts/cluster/netns-up.sh),
# Open MPI starting its daemons through Scripts/cluster/netns-rsh instead of ssh, TCP only, 2 ranks per
# host. Trains 2 epochs on tiny synthetic tiles and passes when rank 0 reports 4 bit-identical replicas,
# the ranks really ran in both namespaces, and metrics and checkpoints were written.
# Exit 0 pass, 77 skip (no root / no network namespaces), else fail.
. "$(dirname "$0")/../../Scripts/cluster/testlib.sh"

require_netns_hosts

find_trainer
workdir
make_tiles "$WORK/train" 8 300 1
make_tiles "$WORK/val" 2 300 2

netns_hosts_up 2 2
expect_ranks_per_host 2 60

log "training on $hosts (2 ranks each, TCP on $(cat "$WORK/net/subnet").0/24)"
# In the background + wait, so a Ctrl-C / SIGTERM to the test runs its cleanup at once.
timeout 150 mpirun --hostfile "$WORK/net/hostfile" -np 4 -x OPENBLAS_NUM_THREADS=1 \
    "$SEGGER_TRAIN" train --train_dir "$WORK/train" --val_dir "$WORK/val" --default_root_dir "$WORK/run" \
    --epochs 2 --batch_size_train 1 "${SMALL_MODEL[@]}" --seed 3 > "$WORK/train.log" 2>&1 &
job=$!
on_exit 'stop_pid "$job" 5'
wait "$job"; rc=$?
cat "$WORK/train.log" >&2
[ $rc = 0 ] || fail "mpirun across namespaces exited $rc"
grep -q "replicas: 4 ranks bit-identical" "$WORK/train.log" || fail "no 'replicas: 4 ranks bit-identical' line"
csv=$(metrics_csv "$WORK/run")
[ -n "$csv" ] && [ -s "$csv" ] || fail "no metrics.csv under $WORK/run/lightning_logs"
[ -f "$WORK/run/checkpoints/last.safetensors" ] || fail "no checkpoints/last.safetensors"
pass "4 ranks on 2 namespace hosts over TCP: $(grep -o 'replicas: .*' "$WORK/train.log")"
