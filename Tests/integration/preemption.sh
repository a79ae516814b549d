#!/usr/bin/env bash
# Preemption and exact resume: `mpirun -np 2 segger-train train --resume auto` gets SIGUSR1 (what SLURM's
# --signal sends) after its first epoch checkpoint; it must finish the step, write last.safetensors, print
# `preempted: checkpoint written at epoch E step S` and exit 0. The same command then resumes and
# completes, and its final checkpoint must equal, bit for bit (every model and optimizer tensor, and the
# trainer's weights digest), that of an uninterrupted twin run in another root dir.
# Exit 0 pass, 77 skip (no mpirun), else fail. Sizes: PREEMPT_EPOCHS, PREEMPT_TILES, PREEMPT_TX.
. "$(dirname "$0")/../../Scripts/cluster/testlib.sh"

have_cmd mpirun || skip "mpirun (openmpi-bin) not installed"
find_trainer
workdir
epochs=${PREEMPT_EPOCHS:-150}
tiles=${PREEMPT_TILES:-16}
make_tiles "$WORK/train" "$tiles" "${PREEMPT_TX:-400}" 11
make_tiles "$WORK/val" 2 300 12

# train_cmd ROOT — the command under test, 2 ranks (placed by the committed hostfiles/localhost). Always started with `&` so that `exec` makes $! the
# mpirun itself (the one to signal), not a subshell.
train_cmd() {
    exec mpirun --hostfile "$ROOT/hostfiles/localhost" -np 2 --bind-to none -x OPENBLAS_NUM_THREADS=1 \
        "$SEGGER_TRAIN" train --train_dir "$WORK/train" --val_dir "$WORK/val" --default_root_dir "$1" \
        --epochs "$epochs" --batch_size_train 1 "${SMALL_MODEL[@]}" --seed 5 --resume auto
}
# An mpirun still running when the test ends is ours: stop it.
stop_job() { [ -n "${job:-}" ] && stop_pid "$job" 5; job=""; }
on_exit stop_job

# ---- 1. interrupted run
train_cmd "$WORK/a" > "$WORK/a1.log" 2>&1 &
job=$!
first_ckpt() { ls "$WORK"/a/checkpoints/epoch=*-step=*.safetensors >/dev/null 2>&1 || ! proc_alive "$job"; }
wait_until 120 first_ckpt || fail "no epoch checkpoint within 120 s"
proc_alive "$job" || { cat "$WORK/a1.log"; fail "run ended before it could be signalled (raise PREEMPT_EPOCHS)"; }
log "first epoch checkpoint written; sending SIGUSR1 to mpirun (it forwards to the ranks)"
kill -USR1 "$job"
wait "$job"; rc=$?; job=""
cat "$WORK/a1.log" >&2
[ $rc = 0 ] || fail "signalled run exited $rc, expected 0"
line=$(grep -o 'preempted: checkpoint written at epoch [0-9]* step [0-9]*' "$WORK/a1.log") \
    || fail "no 'preempted: checkpoint written at epoch E step S' line"
[ -f "$WORK/a/checkpoints/last.safetensors" ] || fail "no last.safetensors after preemption"
# 2 ranks x 1 tile per step: an uninterrupted run takes epochs x tiles / 2 steps.
stopped=${line##* }
[ "$stopped" -lt $((epochs * tiles / 2)) ] || fail "the run completed (step $stopped) instead of stopping early (raise PREEMPT_EPOCHS)"
log "$line"

# ---- 2. same command again: resumes from last.safetensors and completes
train_cmd "$WORK/a" > "$WORK/a2.log" 2>&1 &
wait $!; rc=$?
cat "$WORK/a2.log" >&2
[ $rc = 0 ] || fail "resumed run exited $rc"
grep -q "resumed from" "$WORK/a2.log" || fail "second run did not resume (--resume auto)"
grep -q "replicas: 2 ranks bit-identical" "$WORK/a2.log" || fail "resumed run did not complete with identical replicas"

# ---- 3. uninterrupted twin
train_cmd "$WORK/b" > "$WORK/b.log" 2>&1 &
wait $!; rc=$?
[ $rc = 0 ] || { cat "$WORK/b.log"; fail "uninterrupted run exited $rc"; }
grep -q "resumed from" "$WORK/b.log" && fail "twin run resumed from something"

# ---- 4. final weights (and optimizer state) bit for bit
da=$(weights_digest "$WORK/a/checkpoints/last.safetensors")
db=$(weights_digest "$WORK/b/checkpoints/last.safetensors")
[ -n "$da" ] && [ "$da" = "$db" ] || fail "weights digest differs: resumed $da, uninterrupted $db"
if command -v python3 >/dev/null; then
    python3 - "$WORK/a/checkpoints/last.safetensors" "$WORK/b/checkpoints/last.safetensors" <<'PY' || fail "checkpoint tensors differ"
import json, struct, sys
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    return meta, {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}
(ma, a), (mb, b) = load(sys.argv[1]), load(sys.argv[2])
if sorted(a) != sorted(b):
    sys.exit(f"tensor names differ: {sorted(set(a) ^ set(b))}")
bad = [k for k in sorted(a) if a[k] != b[k]]
if bad:
    sys.exit(f"{len(bad)} of {len(a)} tensors differ, e.g. {bad[:5]}")
def position(meta):
    # Where training stands; the best checkpoint's path differs only by the root dir.
    p = json.loads(meta.get("training_position", "{}"))
    # Each run has its own id (which checkpoints it may replace or delete); the twin is another run.
    p.pop("runID", None)
    if p.get("bestCheckpoint"):
        p["bestCheckpoint"] = p["bestCheckpoint"].rsplit("/", 1)[-1]
    return p
for key in ("epoch", "global_step"):
    if ma.get(key) != mb.get(key):
        sys.exit(f"metadata {key} differs: {ma.get(key)} vs {mb.get(key)}")
if position(ma) != position(mb):
    sys.exit(f"training position differs: {position(ma)} vs {position(mb)}")
print(f"{len(a)} tensors bit-identical", file=sys.stderr)
PY
fi
pass "$line; resumed run equals the uninterrupted one bit for bit (weights digest $da)"
