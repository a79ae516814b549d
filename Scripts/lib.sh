# Shared helpers for Scripts/*: sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/opt/swift/usr/bin:$PATH"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

# Installs the Debian packages the project needs when they are missing (needs root or sudo).
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing missing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_build_deps() {
    ensure_packages libopenmpi-dev openmpi-bin libopenblas-dev libzstd-dev pkg-config
    command -v swift >/dev/null || { echo "error: swift not found (expected at /opt/swift/usr/bin)" >&2; exit 1; }
}

# The Python that the Parquet tests read files back with (pyarrow and DuckDB, as independent readers):
# $SEGGER_TEST_PYTHON when set, else a venv in $ROOT/.venv-test, made and filled on first use (kept between
# runs, one per checkout, never shared with another checkout's). Without network the install fails with a
# warning and those tests skip, naming the reason.
ensure_test_python() {
    if [ -n "${SEGGER_TEST_PYTHON:-}" ]; then export SEGGER_TEST_PYTHON; return 0; fi
    local venv="$ROOT/.venv-test"
    if ! "$venv/bin/python" -c 'import pyarrow, duckdb' 2>/dev/null; then
        log "installing pyarrow and duckdb into $venv (for the Parquet reader tests)"
        if [ ! -x "$venv/bin/python" ] && ! python3 -m venv "$venv" >/dev/null 2>&1; then
            ensure_packages python3-venv   # Debian's python3 splits venv out
            rm -rf "$venv"
            python3 -m venv "$venv" >/dev/null 2>&1 || { echo "warning: cannot create $venv; the Parquet reader tests will skip" >&2; return 0; }
        fi
        if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --retries 1 --timeout 30 \
                pyarrow duckdb >"$venv/pip.log" 2>&1; then
            echo "warning: pip could not install pyarrow and duckdb (offline?): $(tail -1 "$venv/pip.log"); the Parquet reader tests will skip" >&2
        fi
    fi
    SEGGER_TEST_PYTHON="$venv/bin/python"
    export SEGGER_TEST_PYTHON
}

# mpirun refuses root unless told; the project's scripts and tests run as root in CI.
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# Release build tuned for this machine's vector units (see Package.swift).
build_release() {
    ensure_build_deps
    log "building segger-train (release, tuned for this CPU)"
    (cd "$ROOT" && SEGGER_TARGET_CPU="${SEGGER_TARGET_CPU:-native}" swift build -c release --product segger-train 2>&1 \
        | grep -vE '^\[[0-9]+/[0-9]+\]' || true)
    [ -x "$ROOT/.build/release/segger-train" ] || { echo "error: release build failed" >&2; exit 1; }
    SEGGER_TRAIN="$ROOT/.build/release/segger-train"
    export SEGGER_TRAIN
}
