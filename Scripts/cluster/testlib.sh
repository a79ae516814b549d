# Helpers for Tests/integration/*.sh (sourced). Exit protocol: 0 pass, 77 skip (one-line reason as the
# last line on stdout), anything else fail. Every test registers its cleanups with `on_exit`; they run
# in reverse order on any exit, including failures and Ctrl-C.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -uo pipefail
ROOT=$(repo_root)
export PATH="$PATH:/usr/sbin:/sbin"
# Open MPI refuses root without these; CI runs as root.
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

_cleanups=()
# on_exit COMMAND... — run COMMAND (one string, eval'd) at exit, last registered first.
on_exit() { _cleanups+=("$*"); }
run_cleanups() {
    local i
    for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[$i]}" || true; done
    _cleanups=()
}
trap 'rc=$?; trap - EXIT INT TERM; run_cleanups; exit $rc' EXIT
trap 'exit 130' INT TERM

# skip REASON — clean up, print REASON as the last line, exit 77.
skip() { trap - EXIT; run_cleanups >/dev/null 2>&1; echo "skip: $*"; exit 77; }
# fail REASON — print REASON and exit 1 (cleanups run from the trap).
fail() { echo "FAIL: $*"; exit 1; }
pass() { echo "PASS: $*"; exit 0; }

# workdir — a fresh private temp dir, removed at exit. Sets WORK.
workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/segger-it.XXXXXX")
    chmod 0755 "$WORK"
    on_exit "rm -rf '$WORK'"
}

# find_trainer — sets SEGGER_TRAIN to a segger-train binary: $SEGGER_TRAIN or $SEGGER_TRAIN_BIN when
# set, else .build/release/segger-train (built with Scripts/build when missing). Skips without swift.
find_trainer() {
    SEGGER_TRAIN=${SEGGER_TRAIN:-${SEGGER_TRAIN_BIN:-}}
    if [ -z "$SEGGER_TRAIN" ]; then
        SEGGER_TRAIN=$ROOT/.build/release/segger-train
        if [ ! -x "$SEGGER_TRAIN" ]; then
            PATH="/opt/swift/usr/bin:$PATH" command -v swift >/dev/null || skip "no segger-train binary and no swift to build it"
            log "building segger-train (release)"
            if [ -x "$ROOT/Scripts/build" ]; then "$ROOT/Scripts/build" >&2 || fail "Scripts/build failed"
            else (cd "$ROOT" && PATH="/opt/swift/usr/bin:$PATH" swift build -c release --product segger-train >&2) || fail "swift build failed"; fi
        fi
    fi
    [ -x "$SEGGER_TRAIN" ] || fail "segger-train not executable: $SEGGER_TRAIN"
    export SEGGER_TRAIN
}

# Small model flags: a few seconds per epoch on tiny tiles, in debug or release.
SMALL_MODEL=(--heads 2 --hidden_channels 16 --out_channels 8 --init_emb 8 --num_tx_tokens 500)

# make_tiles DIR TILES TX_PER_TILE SEED — synthetic tile directory.
make_tiles() {
    "$SEGGER_TRAIN" synth --out "$1" --tiles "$2" --tx_per_tile "$3" --seed "$4" >&2 \
        || fail "segger-train synth --out $1 failed"
}

# wait_until SECONDS COMMAND... — poll COMMAND every 0.2 s until it succeeds; false on timeout.
wait_until() {
    local limit=$1 i; shift
    for ((i = 0; i < limit * 5; i++)); do "$@" && return 0; sleep 0.2; done
    return 1
}

# weights_digest CHECKPOINT — the trainer's own digest of a checkpoint's weights.
weights_digest() { "$SEGGER_TRAIN" digest --checkpoint "$1" 2>/dev/null | tail -1; }

# metrics_csv ROOT_DIR — path of the newest lightning_logs/version_N/metrics.csv (empty if none).
metrics_csv() { ls -1v "$1"/lightning_logs/version_*/metrics.csv 2>/dev/null | tail -1; }

# require_netns_hosts — skip (exit 77, with the reason) unless this machine can make namespace "hosts" and
# run mpirun across them: root, iproute2/util-linux (installed when missing), mpirun, and a kernel/container
# that allows creating a network namespace at all (no CAP_SYS_ADMIN: cannot).
require_netns_hosts() {
    [ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
    ensure_packages ip:iproute2 nsenter:util-linux unshare:util-linux || skip "iproute2/util-linux not installable"
    have_cmd mpirun || skip "mpirun (openmpi-bin) not installed"
    local probe=sgprobe$$
    ip netns add "$probe" 2>/dev/null || skip "cannot create network namespaces here"
    ip netns del "$probe"
}

# netns_hosts_up N SLOTS [netns-up.sh options] — N namespace hosts with SLOTS slots each in $WORK/net
# (removed at exit), their MPI environment exported; sets $hosts to their names.
netns_hosts_up() {
    local n=$1 slots=$2
    shift 2
    on_exit "'$ROOT/Scripts/cluster/netns-down.sh' '$WORK/net'"
    "$ROOT/Scripts/cluster/netns-up.sh" "$WORK/net" --hosts "$n" --slots "$slots" "$@" >&2 || fail "could not create the namespace hosts"
    . "$WORK/net/env"
    hosts=$(cut -d' ' -f1 "$WORK/net/hostfile" | xargs)
}

# expect_ranks_per_host PER SECONDS — mpirun across $hosts places PER ranks on every host (each rank
# prints its hostname, i.e. its namespace, through the same agent training uses), within SECONDS.
expect_ranks_per_host() {
    local per=$1 limit=$2 where h
    where=$(timeout "$limit" mpirun --hostfile "$WORK/net/hostfile" -np $((per * $(wc -w <<< "$hosts"))) hostname 2>&1) \
        || { echo "$where"; fail "mpirun hostname across $hosts failed"; }
    for h in $hosts; do
        [ "$(grep -cx "$h" <<< "$where")" = "$per" ] || { echo "$where"; fail "expected $per ranks on $h"; }
    done
}
