#!/usr/bin/env bash
# Many ranks across hosts: 16 ranks on 4 namespace hosts × 4 slots (oversubscribed on this machine),
# each host's link shaped to 1 Gbit/s (tc tbf, Scripts/cluster/netns-shape.sh), train 2 epochs with the
# fp64 exchange (--grad_compression none) and batch 1 per rank; passes when the weights are bit-identical
# to one rank training batch 16 on the same tiles, the 16 ranks ran 4 per host, and the shaped links
# carried the exchange.
# Exit 0 pass, 77 skip (no root / no network namespaces), else fail.
. "$(dirname "$0")/../../Scripts/cluster/testlib.sh"

require_netns_hosts

find_trainer
workdir
make_tiles "$WORK/train" 32 120 52

netns_hosts_up 4 4 --rate 1gbit
expect_ranks_per_host 4 120

log "1 rank × batch 16 (reference)"
OPENBLAS_NUM_THREADS=1 timeout 300 "$SEGGER_TRAIN" train --train_dir "$WORK/train" --default_root_dir "$WORK/one" \
    --epochs 2 --batch_size_train 16 --grad_compression none "${SMALL_MODEL[@]}" --seed 3 > "$WORK/one.log" 2>&1 \
    || { cat "$WORK/one.log"; fail "the 1-rank run failed"; }

log "16 ranks × batch 1 on $hosts (1 Gbit/s links)"
timeout 400 mpirun --hostfile "$WORK/net/hostfile" -np 16 -x OPENBLAS_NUM_THREADS=1 \
    "$SEGGER_TRAIN" train --train_dir "$WORK/train" --default_root_dir "$WORK/run" \
    --epochs 2 --batch_size_train 1 --grad_compression none "${SMALL_MODEL[@]}" --seed 3 > "$WORK/train.log" 2>&1 &
job=$!
on_exit 'stop_pid "$job" 5'
wait "$job"; rc=$?
cat "$WORK/train.log" >&2
[ $rc = 0 ] || fail "16 ranks across namespaces exited $rc"
grep -q "replicas: 16 ranks bit-identical" "$WORK/train.log" || fail "no 'replicas: 16 ranks bit-identical' line"
a=$(weights_digest "$WORK/one/checkpoints/last.safetensors")
b=$(weights_digest "$WORK/run/checkpoints/last.safetensors")
[ -n "$a" ] && [ "$a" = "$b" ] || fail "16 ranks differ from 1 rank: digest $b vs $a"

# Every host's shaped link carried traffic (the tbf counts what it sent).
shown=$("$ROOT/Scripts/cluster/netns-shape.sh" "$WORK/net" --show)
sent=$(awk '/^== / {dev=$0} /qdisc tbf/ {tbf=1} /Sent/ && tbf {print $2; tbf=0}' <<< "$shown")
[ "$(wc -l <<< "$sent")" = 8 ] || { echo "$shown"; fail "expected a tbf on 8 veth ends"; }
while read -r bytes; do [ "$bytes" -gt 100000 ] || { echo "$shown"; fail "a shaped link carried only $bytes bytes"; }; done <<< "$sent"
pass "16 ranks on 4 hosts × 4 over 1 Gbit/s links = 1 rank × batch 16, bit for bit (digest $a)"
