#!/usr/bin/env bash
# Remove the namespace hosts made by netns-up.sh: stop processes still inside them, delete namespaces,
# veths and the bridge listed in STATE_DIR/created, then STATE_DIR itself (unless --keep-dir).
#
#   Scripts/cluster/netns-down.sh STATE_DIR [--keep-dir]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# -ge 1 ] || die "usage: $0 STATE_DIR [--keep-dir]"
state=$1; keep=${2:-}
[ -d "$state" ] || exit 0
state=$(cd "$state" && pwd)
cd /
export PATH="$PATH:/usr/sbin:/sbin"
if [ -f "$state/created" ]; then
    # Namespaces first (their processes, then the name), then links in reverse order of creation.
    # `ip netns del` is asynchronous about the veth ends inside, so the root-side veths are deleted by hand.
    while read -r kind name; do
        [ "$kind" = netns ] || continue
        for pid in $(ip netns pids "$name" 2>/dev/null); do stop_pid "$pid" 3; done
        ip netns del "$name" 2>/dev/null || true
    done < "$state/created"
    tac "$state/created" | while read -r kind name; do
        [ "$kind" = link ] && ip link del "$name" 2>/dev/null || true
    done
fi
[ "$keep" = --keep-dir ] || rm -rf "$state"
log "netns hosts removed"
