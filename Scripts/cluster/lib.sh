# Shared helpers for Scripts/cluster/* and Tests/integration/*.sh (sourced, not run).
# Plain POSIX-ish bash; every function is small and says what it touches.

# die MESSAGE... — print to stderr and exit 1.
die() { echo "error: $*" >&2; exit 1; }

# log MESSAGE... — progress line on stderr (stdout stays free for results).
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# have_cmd NAME — true when NAME is on PATH (sbin included; daemons live there).
have_cmd() { PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }

# ensure_packages CMD:PACKAGE... — install the Debian packages whose command is missing.
# Needs root and apt-get; returns 1 (without exiting) when that is impossible, so tests can skip.
ensure_packages() {
    local want=() pair cmd pkg
    for pair in "$@"; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        have_cmd "$cmd" || want+=("$pkg")
    done
    [ ${#want[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! have_cmd apt-get; then
        echo "cannot install ${want[*]}: need root and apt-get" >&2
        return 1
    fi
    log "installing ${want[*]}"
    # A fresh machine (CI) may have no package lists yet.
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}" >/dev/null 2>&1; then
        apt-get update >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}" >/dev/null 2>&1 \
            || { echo "apt-get install ${want[*]} failed" >&2; return 1; }
    fi
    for pair in "$@"; do have_cmd "${pair%%:*}" || { echo "${pair%%:*} still missing" >&2; return 1; }; done
}

# proc_alive PID — true while PID runs. A killed daemon whose parent never reaps it stays a zombie,
# which `kill -0` still reports as alive; read the state letter from /proc/PID/stat instead.
proc_alive() {
    local stat state
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    state=${stat##*) }; state=${state%% *}
    [ "$state" != Z ] && [ "$state" != X ]
}

# stop_pid PID [SECONDS] — SIGTERM, wait up to SECONDS (default 5), then SIGKILL. Only for pids we started.
stop_pid() {
    local pid=$1 wait=${2:-5} i
    [ -n "$pid" ] || return 0
    proc_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait * 10; i++)); do proc_alive "$pid" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do proc_alive "$pid" || return 0; sleep 0.1; done
    echo "warning: pid $pid did not exit" >&2
}

# stop_pidfile FILE [SECONDS] — stop the process named in FILE (if any) and remove FILE.
stop_pidfile() {
    local pid
    [ -f "$1" ] || return 0
    pid=$(tr -dc 0-9 < "$1")
    stop_pid "$pid" "${2:-5}"
    rm -f "$1"
}

# pids_using DIR — pids of live processes whose cwd, executable or an open file lies under DIR.
# Used at teardown to find what our daemons left behind (slurmstepd, job steps) without matching by name.
pids_using() {
    local dir=$1 p link mine=" " a=$BASHPID
    # Never report ourselves or our ancestors (the caller may sit in DIR).
    while [ -n "$a" ] && [ "$a" -gt 1 ]; do
        mine="$mine$a "; a=$(awk '{print $4}' "/proc/$a/stat" 2>/dev/null || true)
    done
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        case "$mine" in *" $p "*) continue ;; esac
        for link in /proc/$p/cwd /proc/$p/exe /proc/$p/fd/*; do
            case "$(readlink "$link" 2>/dev/null)" in
                "$dir"|"$dir"/*) proc_alive "$p" && echo "$p"; break ;;
            esac
        done
    done
}

# free_tcp_port START — first TCP port >= START that nothing listens on (checked with ss).
free_tcp_port() {
    local port=$1
    while ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; do port=$((port + 1)); done
    echo "$port"
}

# repo_root — the package root (two levels above this file).
repo_root() { (cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd); }
