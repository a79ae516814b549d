#!/usr/bin/env bash
# slurm/train_multinode.sbatch really runs across SLURM nodes: a private cluster of two slurmd (n1, n2,
# `slurmd -N` on this host, Scripts/cluster/slurm-up.sh --nodes 2), the template submitted unchanged
# (2 nodes x 4 tasks = 8 ranks, srun --mpi=pmix, TCP between ranks) on tiny synthetic tiles. Passes when
# the job ends COMPLETED, ran on both nodes, rank 0 reports 8 bit-identical replicas, and metrics.csv and
# last.safetensors exist. Exit 0 pass, 77 skip (no root / no SLURM packages obtainable), else fail.
. "$(dirname "$0")/../../Scripts/cluster/testlib.sh"

[ "$(id -u)" = 0 ] || skip "needs root to run a private slurmctld/slurmd"
ensure_packages slurmd:slurmd slurmctld:slurmctld sbatch:slurm-client munged:munge ss:iproute2 \
    || skip "SLURM/munge not installed and apt-get could not install them"
have_cmd mpirun || skip "mpirun (openmpi-bin) not installed"

find_trainer
workdir
make_tiles "$WORK/train" 8 200 1
make_tiles "$WORK/val" 2 200 2

on_exit "'$ROOT/Scripts/cluster/slurm-down.sh' '$WORK/slurm'"
"$ROOT/Scripts/cluster/slurm-up.sh" "$WORK/slurm" --nodes 2 --cpus 4 >&2 || fail "could not start the private SLURM"
. "$WORK/slurm/env"

job_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
# Both "nodes" are this host: Open MPI's shared-memory segments would collide, so TCP only (real clusters
# need nothing of the kind).
export OMPI_MCA_btl=self,tcp
export SEGGER_TRAIN TRAIN_DIR=$WORK/train VAL_DIR=$WORK/val ROOT_DIR=$WORK/run EPOCHS=2 BATCH_SIZE=1
export EXTRA_ARGS="${SMALL_MODEL[*]} --seed 9"
cd "$ROOT"
id=$(sbatch --parsable --cpus-per-task=1 --time=10 --output="$WORK/job-%j.out" slurm/train_multinode.sbatch) \
    || fail "sbatch refused the template"
log "submitted job $id (2 nodes x 4 tasks)"
for ((i = 0; i < 300; i++)); do
    st=$(job_state "$id")
    case $st in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) break ;; esac
    sleep 0.5
done
out=$WORK/job-$id.out
show() { echo "---- job $id output:"; cat "$out" 2>/dev/null; echo "----"; scontrol show job "$id" | head -20; }
[ "$st" = COMPLETED ] || { show; fail "job $id ended ${st:-still running}, expected COMPLETED"; }
nodes=$(scontrol show job "$id" | grep -o ' NodeList=[^ ]*' | cut -d= -f2)
[ "$nodes" = "n[1-2]" ] || { show; fail "job ran on '$nodes', expected n[1-2]"; }
grep -q "replicas: 8 ranks bit-identical" "$out" || { show; fail "no 'replicas: 8 ranks bit-identical' line"; }
csv=$(metrics_csv "$ROOT_DIR")
[ -n "$csv" ] && [ -s "$csv" ] || { show; fail "no metrics.csv under $ROOT_DIR/lightning_logs"; }
[ -f "$ROOT_DIR/checkpoints/last.safetensors" ] || fail "no checkpoints/last.safetensors"
cat "$out" >&2
pass "job $id on $nodes: $(grep -o 'replicas: .*' "$out")"
