#!/usr/bin/env bash
# Shape the links of the namespace hosts made by netns-up.sh: a token bucket (tc tbf) on both ends of
# every host's veth, so that each host sends and receives at most RATE — a stand-in for a 1 Gbit/s or
# 100 Mbit/s Ethernet port. Can be run again on live hosts to change the rate (or remove the shaping).
#
#   Scripts/cluster/netns-shape.sh STATE_DIR --rate 1gbit [--delay 2ms] [--burst BYTES] [--latency 50ms]
#   Scripts/cluster/netns-shape.sh STATE_DIR --rate none        # back to the unshaped veth
#   Scripts/cluster/netns-shape.sh STATE_DIR --show             # the qdiscs and their counters
#
# Where: the host side (`eth0` inside the namespace) limits what the host sends; the root side of the same
# veth (on the bridge) limits what it receives. Traffic from host A to host B crosses A's eth0 egress and
# B's bridge-port egress: two buckets at the same rate in series, as a host NIC and a switch port are.
#
# RATE is tc's syntax: 100mbit, 1gbit, 10gbit (bits per second; "mbit" is 10^6).
# Burst (bucket size): by default the larger of 1 ms at RATE and 68 KiB. veth hands tbf whole 64 KiB
#   GSO packets (a NIC would cut them into frames in hardware); a bucket smaller than one makes tbf cut
#   every packet into 1,500-byte frames in software, which on a 2-core machine costs the ranks' CPU
#   (measured: steps 20 % slower at 100 Mbit/s with a 16 KiB bucket than with 68 KiB, at the same rate).
#   The price of 68 KiB: a burst of 5.6 ms of line time at 100 Mbit/s may pass at once after a pause;
#   sustained transfers still run at RATE.
# Latency (queue): 50 ms of RATE may wait in the queue before packets are dropped — a switch-like buffer
#   that keeps a bulk TCP flow at the full rate (a queue of a few ms makes TCP back off after drops and
#   the link then runs below RATE); the price is up to 50 ms of queueing delay for a message that waits
#   behind a bulk transfer, which a real full-duplex port also has.
# Delay: needs the netem qdisc (sch_netem). It is added as the root qdisc with the tbf beneath it
#   (the usual recipe); a kernel without netem makes --delay an error, never a silent no-op. The tbf alone
#   adds no delay beyond the serialization and queueing it models.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

usage="usage: $0 STATE_DIR (--rate RATE|none [--delay D] [--burst BYTES] [--latency T] | --show)"
[ $# -ge 1 ] || die "$usage"
state=$1; shift
rate="" delay="" burst="" latency=50ms show=0
while [ $# -gt 0 ]; do
    case $1 in
        --rate) [ $# -ge 2 ] || die "--rate needs a value"; rate=$2; shift 2 ;;
        --delay) [ $# -ge 2 ] || die "--delay needs a value"; delay=$2; shift 2 ;;
        --burst) [ $# -ge 2 ] || die "--burst needs a value"; burst=$2; shift 2 ;;
        --latency) [ $# -ge 2 ] || die "--latency needs a value"; latency=$2; shift 2 ;;
        --show) show=1; shift ;;
        *) die "unknown option $1 ($usage)" ;;
    esac
done
[ -f "$state/links" ] || die "$state/links missing: not a directory made by netns-up.sh"
[ "$(id -u)" = 0 ] || die "needs root (tc)"
export PATH="$PATH:/usr/sbin:/sbin"
have_cmd tc || ensure_packages tc:iproute2 || die "tc (iproute2) not available"

# tc_in NETNS ARGS... — tc inside NETNS, or in the root namespace when NETNS is "-".
tc_in() {
    local ns=$1; shift
    if [ "$ns" = - ]; then tc "$@"; else tc -n "$ns" "$@"; fi
}

if [ $show = 1 ]; then
    while read -r ns dev; do
        echo "== ${ns/#-/root} $dev"
        tc_in "$ns" -s qdisc show dev "$dev"
    done < "$state/links"
    exit 0
fi
[ -n "$rate" ] || die "$usage"

# rate_bits RATE — bits per second of a tc rate (bit, kbit, mbit, gbit, tbit; decimal multiples).
rate_bits() {
    local v=$1 num unit
    num=${v%%[a-zA-Z]*}; unit=${v#"$num"}
    [[ $num =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--rate $v: expected a number with a unit such as 100mbit or 1gbit"
    case ${unit,,} in
        bit|"") awk -v n="$num" 'BEGIN{printf "%.0f", n}' ;;
        kbit) awk -v n="$num" 'BEGIN{printf "%.0f", n*1e3}' ;;
        mbit) awk -v n="$num" 'BEGIN{printf "%.0f", n*1e6}' ;;
        gbit) awk -v n="$num" 'BEGIN{printf "%.0f", n*1e9}' ;;
        tbit) awk -v n="$num" 'BEGIN{printf "%.0f", n*1e12}' ;;
        *) die "--rate $v: unit must be bit, kbit, mbit, gbit or tbit (tc's bits-per-second units)" ;;
    esac
}

if [ "$rate" != none ]; then
    bits=$(rate_bits "$rate")
    [ "$bits" -ge 8000 ] || die "--rate $rate is below 8 kbit/s"
    if [ -z "$burst" ]; then
        burst=$((bits / 8 / 1000))              # 1 ms at the rate, in bytes
        [ "$burst" -ge 69632 ] || burst=69632   # one 64 KiB GSO packet and its headers
    fi
    [[ $burst =~ ^[0-9]+$ ]] && [ "$burst" -ge 2048 ] || die "--burst must be a byte count ≥ 2048 (got $burst)"
fi
if [ -n "$delay" ]; then
    [ "$rate" != none ] || die "--delay needs --rate (netem shapes nothing by itself here)"
    # Probe netem on a throwaway dummy device in the first host's namespace: the links stay untouched if
    # the kernel has no netem.
    probe_ns=$(awk '$1 != "-" {print $1; exit}' "$state/links")
    ok=0
    if ip -n "$probe_ns" link add sgnetemprobe type dummy 2>/dev/null; then
        tc -n "$probe_ns" qdisc add dev sgnetemprobe root netem delay 1ms 2>/dev/null && ok=1
        ip -n "$probe_ns" link del sgnetemprobe 2>/dev/null || true
    fi
    [ $ok = 1 ] || die "--delay needs the netem qdisc, which this kernel does not have (sch_netem missing: $(uname -r)); shape the rate alone"
fi

while read -r ns dev; do
    tc_in "$ns" qdisc del dev "$dev" root 2>/dev/null || true
    [ "$rate" = none ] && continue
    if [ -n "$delay" ]; then
        tc_in "$ns" qdisc add dev "$dev" root handle 1: netem delay "$delay"
        tc_in "$ns" qdisc add dev "$dev" parent 1:1 handle 10: tbf rate "$rate" burst "$burst" latency "$latency"
    else
        tc_in "$ns" qdisc add dev "$dev" root handle 10: tbf rate "$rate" burst "$burst" latency "$latency"
    fi
done < "$state/links"
if [ "$rate" = none ]; then
    rm -f "$state/shape"
    log "links unshaped"
else
    echo "rate=$rate burst=$burst latency=$latency delay=${delay:-none}" > "$state/shape"
    log "links shaped: $(cat "$state/shape") on $(wc -l < "$state/links") veth ends"
fi
