#!/usr/bin/env bash
# Make N stand-in "hosts" on this machine as network namespaces, for testing mpirun across nodes.
#
#   Scripts/cluster/netns-up.sh STATE_DIR [--hosts N] [--slots S] [--subnet A.B.C]
#                                         [--rate RATE [--delay D] [--burst BYTES] [--latency T]]
#   . STATE_DIR/env        # exports SEGGER_NETNS_DIR and the OMPI_MCA_* settings below
#   mpirun --hostfile STATE_DIR/hostfile -np 4 ./app
#   Scripts/cluster/netns-down.sh STATE_DIR
#
# Each host is a namespace NAME (also its hostname) with one veth `eth0` on a private bridge, address
# A.B.C.(i+1)/24, no default route: the subnet exists only between these namespaces and the bridge address
# A.B.C.1 in the root namespace (where mpirun runs). Open MPI reaches the hosts through
# Scripts/cluster/netns-rsh (the plm_rsh_agent, standing in for ssh). Every object made is listed in
# STATE_DIR/created and removed by netns-down.sh (also on a failed start). Needs root and iproute2.
# --rate (and --delay, --burst, --latency) shape every host's link with netns-shape.sh (a tc tbf on both
# ends of its veth; see that script for the choices); STATE_DIR/links lists the veth ends it shapes, so
# `netns-shape.sh STATE_DIR --rate R|none` changes the rate of live hosts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# -ge 1 ] || die "usage: $0 STATE_DIR [--hosts N] [--slots S] [--subnet A.B.C] [--rate R [--delay D] [--burst B] [--latency T]]"
state=$1; shift
hosts=2 slots=2 subnet=
shape=()
while [ $# -gt 0 ]; do
    case $1 in
        --hosts) hosts=$2; shift 2 ;;
        --slots) slots=$2; shift 2 ;;
        --subnet) subnet=$2; shift 2 ;;
        --rate|--delay|--burst|--latency) [ $# -ge 2 ] || die "$1 needs a value"; shape+=("$1" "$2"); shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "needs root (ip netns)"
ensure_packages ip:iproute2 nsenter:util-linux unshare:util-linux || die "could not install iproute2"
export PATH="$PATH:/usr/sbin:/sbin"

mkdir -p "$state"
state=$(cd "$state" && pwd)
[ -z "$(ls -A "$state")" ] || die "$state is not empty"
chmod 0755 "$state"
: > "$state/created"
: > "$state/links"
trap 'rc=$?; if [ $rc -ne 0 ]; then log "netns-up failed, removing what it made"; "$here/netns-down.sh" "$state" || true; fi' EXIT

# A short unique prefix: interface names are limited to 15 characters.
tag=sg$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')
if [ -z "$subnet" ]; then
    # A random 10.X.Y.0/24 that no interface here uses yet.
    for _ in $(seq 20); do
        subnet=10.$((200 + RANDOM % 50)).$((RANDOM % 250))
        ip -o addr | grep -q " $subnet\." || break
    done
fi

bridge=${tag}br
ip link add "$bridge" type bridge
echo "link $bridge" >> "$state/created"
ip addr add "$subnet.1/24" dev "$bridge"
ip link set "$bridge" up

{
    echo "127.0.0.1 localhost"
    echo "$subnet.1 ${tag}-root"
    for ((i = 1; i <= hosts; i++)); do echo "$subnet.$((i + 1)) ${tag}-h$i"; done
} > "$state/hosts"
: > "$state/hostfile"

for ((i = 1; i <= hosts; i++)); do
    name=${tag}-h$i
    ip netns add "$name"
    echo "netns $name" >> "$state/created"
    ip link add "${tag}v$i" type veth peer name "${tag}p$i"
    echo "link ${tag}v$i" >> "$state/created"   # deleting one end deletes the pair
    ip link set "${tag}p$i" netns "$name"
    ip -n "$name" link set "${tag}p$i" name eth0
    ip -n "$name" addr add "$subnet.$((i + 1))/24" dev eth0
    ip -n "$name" link set eth0 up
    ip -n "$name" link set lo up
    ip link set "${tag}v$i" master "$bridge"
    ip link set "${tag}v$i" up
    echo "$name slots=$slots" >> "$state/hostfile"
    printf '%s eth0\n- %s\n' "$name" "${tag}v$i" >> "$state/links"
done

# Reachability: every host answers on the subnet (no ping binary needed: bash's /dev/tcp to a closed
# port fails fast with "connection refused" when the host is there, and hangs when it is not).
for ((i = 1; i <= hosts; i++)); do
    ok=0
    for _ in $(seq 30); do
        out=$(timeout 1 bash -c "exec 3<>/dev/tcp/$subnet.$((i + 1))/9" 2>&1 || true)
        case $out in *refused*) ok=1; break ;; esac
        sleep 0.2
    done
    [ $ok = 1 ] || die "host ${tag}-h$i ($subnet.$((i + 1))) unreachable from the root namespace"
done

cat > "$state/env" <<ENV
# Open MPI over the namespace hosts: netns-rsh instead of ssh, TCP only on the private subnet,
# short keepalives so a cut link ends mpirun in seconds instead of minutes.
export SEGGER_NETNS_DIR=$state
export OMPI_MCA_plm_rsh_agent=$here/netns-rsh
export OMPI_MCA_plm_rsh_no_tree_spawn=1
export OMPI_MCA_btl=self,tcp
export OMPI_MCA_btl_tcp_if_include=$subnet.0/24
export OMPI_MCA_oob_tcp_if_include=$subnet.0/24
export OMPI_MCA_oob_tcp_keepalive_time=3
export OMPI_MCA_oob_tcp_keepalive_intvl=1
export OMPI_MCA_oob_tcp_keepalive_probes=3
ENV
echo "$subnet" > "$state/subnet"
if [ ${#shape[@]} -gt 0 ]; then
    "$here/netns-shape.sh" "$state" "${shape[@]}" || die "shaping the links failed"
fi
log "netns hosts up: $(cut -d' ' -f1 "$state/hostfile" | tr '\n' ' ')on $subnet.0/24"
