#!/usr/bin/env bash
# A network failure between hosts ends the job instead of hanging it: 4 ranks on two namespace hosts
# (as in netns_multihost.sh) train; once they are past the first epoch the second host's link is cut
# (its veth set down). With the TCP keepalive settings of Scripts/cluster/netns-up.sh's env
# (oob_tcp_keepalive_time 3, intvl 1, probes 3) mpirun must exit non-zero within 30 s (default settings
# hang ~490 s), and no rank or daemon may survive on either host.
# Exit 0 pass, 77 skip (no root / no network namespaces), else fail.
. "$(dirname "$0")/../../Scripts/cluster/testlib.sh"

require_netns_hosts

find_trainer
workdir
make_tiles "$WORK/train" 16 300 1

netns_hosts_up 2 2
h2=$(sed -n 2p "$WORK/net/hostfile" | cut -d' ' -f1)
veth2=${h2%-h2}v2      # root-side end of h2's link (netns-up.sh naming: <tag>-h<i> ... <tag>v<i>)
ip link show "$veth2" >/dev/null 2>&1 || fail "no link $veth2 for $h2"

timeout 300 mpirun --hostfile "$WORK/net/hostfile" -np 4 -x OPENBLAS_NUM_THREADS=1 \
    "$SEGGER_TRAIN" train --train_dir "$WORK/train" --default_root_dir "$WORK/run" \
    --epochs 100000 --batch_size_train 1 "${SMALL_MODEL[@]}" > "$WORK/train.log" 2>&1 &
job=$!
on_exit 'stop_pid "$job" 5'
running() { ls "$WORK"/run/checkpoints/epoch=*-step=*.safetensors >/dev/null 2>&1 || ! proc_alive "$job"; }
wait_until 120 running || fail "no epoch checkpoint within 120 s"
proc_alive "$job" || { cat "$WORK/train.log"; fail "training ended before the link was cut"; }

log "cutting $h2's link ($veth2 down)"
ip link set "$veth2" down
cut_at=$SECONDS
ended() { ! proc_alive "$job"; }
wait_until 30 ended || { tail -20 "$WORK/train.log"; fail "mpirun still running 30 s after the link was cut"; }
wait "$job"; rc=$?
took=$((SECONDS - cut_at))
cat "$WORK/train.log" >&2
[ $rc != 0 ] || fail "mpirun exited 0 after losing a host"
for h in $(cut -d' ' -f1 "$WORK/net/hostfile"); do
    empty() { [ -z "$(ip netns pids "$h" 2>/dev/null)" ]; }
    wait_until 15 empty || fail "processes left on $h after the job ended: $(ip netns pids "$h" | xargs)"
done
pass "link cut: mpirun exited $rc after ${took} s, nothing left on either host"
