#!/usr/bin/env bash
# slurm/train_1node_4tasks.sbatch really runs under SLURM: a private one-node cluster (munged, slurmctld,
# slurmd under a temp dir; Scripts/cluster/slurm-up.sh), the template submitted with sbatch on tiny
# synthetic tiles, 4 ranks via srun --mpi=pmix. Passes when the job ends COMPLETED with exit 0, the ranks
# agreed bit for bit, and metrics.csv and the checkpoints exist. Then the same with LAUNCHER=mpirun and a
# SIGUSR1 to the batch shell (what --signal=B:USR1@120 sends): the ranks must checkpoint and stop, the job
# requeue itself, and the requeued run resume from last.safetensors to completion.
# Exit 0 pass, 77 skip (no root / no SLURM packages obtainable), else fail.
. "$(dirname "$0")/../../Scripts/cluster/testlib.sh"

[ "$(id -u)" = 0 ] || skip "needs root to run a private slurmctld/slurmd"
ensure_packages slurmd:slurmd slurmctld:slurmctld sbatch:slurm-client munged:munge ss:iproute2 \
    || skip "SLURM/munge not installed and apt-get could not install them"
have_cmd mpirun || skip "mpirun (openmpi-bin) not installed"

# The two templates share their body; a fix in one must not miss the other.
diff <(sed '1,/^# ---- body/d' "$ROOT/slurm/train_1node_4tasks.sbatch") \
     <(sed '1,/^# ---- body/d' "$ROOT/slurm/train_multinode.sbatch") >&2 \
    || fail "slurm/*.sbatch bodies differ"

find_trainer
workdir
make_tiles "$WORK/train" 8 300 1
make_tiles "$WORK/val" 2 300 2

Scripts_cluster=$ROOT/Scripts/cluster
on_exit "'$Scripts_cluster/slurm-down.sh' '$WORK/slurm'"
"$Scripts_cluster/slurm-up.sh" "$WORK/slurm" --cpus 8 >&2 || fail "could not start the private SLURM"
. "$WORK/slurm/env"

# job_state ID — JobState from scontrol (the job record lives MinJobAge=600 s after it ends).
job_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
# wait_job ID SECONDS — poll every 0.5 s until the job is finished; sets st to the final state.
# (Runs in this shell, not in $(...), so Ctrl-C / SIGTERM reach the cleanup trap within 0.5 s.)
wait_job() {
    local id=$1 limit=$2 i
    for ((i = 0; i < limit * 2; i++)); do
        st=$(job_state "$id")
        case $st in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) return ;; esac
        sleep 0.5
    done
}
show_job() { echo "---- job $1 output:"; cat "$WORK/job-$1.out" 2>/dev/null; echo "----"; scontrol show job "$1" 2>/dev/null | head -20; }

export SEGGER_TRAIN TRAIN_DIR=$WORK/train VAL_DIR=$WORK/val BATCH_SIZE=1
export EXTRA_ARGS="${SMALL_MODEL[*]} --seed 7"

# ---- 1. default launcher (srun --mpi=pmix when available), 2 epochs to completion
export ROOT_DIR=$WORK/run-srun EPOCHS=2
cd "$ROOT"
# The node claims 8 CPUs (config_overrides; the machine may have 2): 4 tasks x 2 CPUs -> 2 BLAS threads each.
id=$(sbatch --parsable --cpus-per-task=2 --time=10 --output="$WORK/job-%j.out" slurm/train_1node_4tasks.sbatch) \
    || fail "sbatch refused the template"
log "submitted job $id (default launcher)"
wait_job "$id" 150
[ "$st" = COMPLETED ] || { show_job "$id"; fail "job $id ended $st, expected COMPLETED"; }
out=$WORK/job-$id.out
grep -q "via srun" "$out" || { show_job "$id"; fail "auto launcher did not pick srun --mpi=pmix (srun --mpi=list: $(srun --mpi=list 2>&1 | tr '\n' ' '))"; }
grep -q "replicas: 4 ranks bit-identical" "$out" || { show_job "$id"; fail "no 'replicas: 4 ranks bit-identical' line"; }
csv=$(metrics_csv "$ROOT_DIR")
[ -n "$csv" ] && [ -s "$csv" ] || { show_job "$id"; fail "no metrics.csv under $ROOT_DIR/lightning_logs"; }
[ -f "$ROOT_DIR/checkpoints/last.safetensors" ] || fail "no checkpoints/last.safetensors"
ls "$ROOT_DIR"/checkpoints/epoch=*-step=*.safetensors >/dev/null 2>&1 || fail "no checkpoints/epoch=E-step=S.safetensors"
cat "$out" >&2
grep -q "2 BLAS thread(s) per rank" "$out" || { show_job "$id"; fail "--cpus-per-task=2 did not give 2 BLAS threads per rank"; }
log "job $id COMPLETED via srun: $(grep replicas "$out")"

# ---- 2. mpirun launcher, SIGUSR1 to the batch shell mid-run -> checkpoint, requeue, resume, complete
export ROOT_DIR=$WORK/run-mpirun EPOCHS=${PREEMPT_EPOCHS:-40} LAUNCHER=mpirun
id=$(sbatch --parsable --cpus-per-task=1 --time=10 --output="$WORK/job-%j.out" slurm/train_1node_4tasks.sbatch) \
    || fail "sbatch refused the template"
log "submitted job $id (mpirun); will send SIGUSR1 after the first epoch checkpoint"
# (An empty state means scontrol does not know the job yet: not finished. Signalling before the batch
# shell has installed its USR1 trap would kill the shell itself, so wait for the first epoch checkpoint.)
job_ended() { local s; s=$(job_state "$1"); [ -n "$s" ] && [ "$s" != RUNNING ] && [ "$s" != PENDING ] && [ "$s" != CONFIGURING ]; }
wait_until 120 eval 'ls "$ROOT_DIR"/checkpoints/epoch=*-step=*.safetensors >/dev/null 2>&1 || job_ended $id' \
    || { show_job "$id"; fail "job $id wrote no epoch checkpoint in 120 s"; }
[ "$(job_state "$id")" = RUNNING ] || { show_job "$id"; fail "job $id finished before it could be signalled; raise PREEMPT_EPOCHS"; }
scancel --batch --signal=USR1 "$id" || fail "scancel --signal=USR1 failed"
# Requeued: the job goes PENDING (or REQUEUED) and then runs again; wait for its second run to finish.
wait_until 60 eval 'grep -q "requeueing job" "$WORK/job-$id.out"' || { show_job "$id"; fail "job $id did not requeue itself after SIGUSR1"; }
wait_job "$id" 150
out=$WORK/job-$id.out
[ "$st" = COMPLETED ] || { show_job "$id"; fail "requeued job $id ended $st, expected COMPLETED"; }
grep -q "preempted: checkpoint written" "$out" || { show_job "$id"; fail "no 'preempted: checkpoint written' line after SIGUSR1"; }
grep -q "restart 1" "$out" || { show_job "$id"; fail "job $id did not run a second time"; }
grep -q "resumed from" "$out" || { show_job "$id"; fail "the requeued run did not resume from last.safetensors"; }
sed -n '/(restart 1)/,$p' "$out" | grep -q "replicas: 4 ranks bit-identical" \
    || { show_job "$id"; fail "no 'replicas: 4 ranks bit-identical' line from the resumed run"; }
cat "$out" >&2
log "job $id: USR1 -> checkpoint -> requeue -> resumed -> COMPLETED"
pass "sbatch template ran 4 ranks via srun and via mpirun (with USR1 checkpoint, requeue and resume)"
