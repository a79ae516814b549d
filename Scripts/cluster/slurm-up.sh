#!/usr/bin/env bash
# Start a private SLURM cluster on this machine: munged + slurmctld + one slurmd per node, all files under
# STATE_DIR, /etc untouched. Clients reach it through SLURM_CONF (source STATE_DIR/env).
#
#   Scripts/cluster/slurm-up.sh STATE_DIR [--nodes N] [--cpus C]
#   . STATE_DIR/env            # exports SLURM_CONF (and PATH with /usr/sbin)
#   sbatch ... ; squeue ; scontrol show job ID
#   Scripts/cluster/slurm-down.sh STATE_DIR
#
# --nodes N (default 1) starts N slurmd named n1..nN on this host, each on its own port (`slurmd -N`).
# --cpus C  (default 4) is the CPU count each node claims; `SlurmdParameters=config_overrides` lets it claim
#           more than the machine has, so `--ntasks-per-node=4` runs on 2 cores.
# Installs slurmd/slurmctld/slurm-client/munge with apt-get when missing (root, Debian; no systemd needed).
# On any failure it stops what it started (STATE_DIR keeps the logs). Needs root (SlurmUser=root, munged run as user munge).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# -ge 1 ] || die "usage: $0 STATE_DIR [--nodes N] [--cpus C]"
state=$1; shift
nodes=1 cpus=4
while [ $# -gt 0 ]; do
    case $1 in
        --nodes) nodes=$2; shift 2 ;;
        --cpus) cpus=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "needs root (private slurmctld runs with SlurmUser=root)"
ensure_packages slurmd:slurmd slurmctld:slurmctld sbatch:slurm-client munged:munge ss:iproute2 \
    || die "could not install SLURM/munge"
export PATH="$PATH:/usr/sbin:/sbin"

mkdir -p "$state"
state=$(cd "$state" && pwd)
[ -z "$(ls -A "$state")" ] || die "$state is not empty"
# On failure, undo everything started so far.
trap 'rc=$?; if [ $rc -ne 0 ]; then log "slurm-up failed, tearing down"; "$here/slurm-down.sh" "$state" --keep-dir || true; fi' EXIT

# munged (running as user munge) must traverse to its socket, key and log: world-executable dirs.
chmod 0755 "$state"
mkdir -p "$state"/{munge,state,log,run,spool,tmp}
chmod 0755 "$state"/{munge,log,run}
chown munge: "$state/munge"
chmod 0711 "$state/munge"   # socket dir: traversable, not listable
head -c 1024 /dev/urandom > "$state/munge/munge.key"
chown munge: "$state/munge/munge.key"; chmod 0400 "$state/munge/munge.key"

log "starting munged"
runuser -u munge -- munged --force \
    --socket="$state/munge/munge.socket" --key-file="$state/munge/munge.key" \
    --log-file="$state/munge/munged.log" --pid-file="$state/munge/munged.pid" \
    --seed-file="$state/munge/munged.seed"
for _ in $(seq 50); do [ -S "$state/munge/munge.socket" ] && break; sleep 0.1; done
[ -S "$state/munge/munge.socket" ] || die "munged did not create its socket (see $state/munge/munged.log)"

host=$(hostname -s)
# Ports from a random base, so two private clusters started at once (parallel test runs) rarely race.
ctld_port=$(free_tcp_port $((20000 + RANDOM % 200 * 16)))
node_port=$(free_tcp_port $((ctld_port + 1)))

{
cat <<CONF
# Private test cluster written by Scripts/cluster/slurm-up.sh — do not use in production.
ClusterName=seggertest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$state/munge/munge.socket,cred_expire=15
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool/%n
TmpFS=$state/tmp/%n
SlurmctldPidFile=$state/run/slurmctld.pid
SlurmdPidFile=$state/run/slurmd-%n.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd-%n.log
PlugStackConfig=$state/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=0
SchedulerParameters=batch_sched_delay=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=10
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
CONF
port=$node_port
for ((i = 1; i <= nodes; i++)); do
    if [ "$nodes" = 1 ]; then name=$host; else name=n$i; fi
    [ "$i" = 1 ] || port=$(free_tcp_port $((port + 1)))
    mkdir -p "$state/spool/$name" "$state/tmp/$name"   # %n dirs: slurmd/pmix do not create them
    echo "NodeName=$name NodeHostname=$host NodeAddr=127.0.0.1 Port=$port CPUs=$cpus RealMemory=1000 State=UNKNOWN"
done
echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
} > "$state/slurm.conf"
: > "$state/plugstack.conf"
cat > "$state/env" <<ENV
export SLURM_CONF=$state/slurm.conf
export PATH="\$PATH:/usr/sbin:/sbin"
ENV
export SLURM_CONF=$state/slurm.conf

log "starting slurmctld on port $ctld_port"
slurmctld -i -f "$SLURM_CONF"   # -i: ignore (absent) saved state
if [ "$nodes" = 1 ]; then
    slurmd -f "$SLURM_CONF"
else
    for ((i = 1; i <= nodes; i++)); do slurmd -f "$SLURM_CONF" -N "n$i"; done
fi

# Wait until every node is up (idle) and the controller answers.
for _ in $(seq 100); do
    idle=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 == "idle"' | wc -l || true)
    [ "${idle:-0}" -ge "$nodes" ] && break
    sleep 0.2
done
[ "${idle:-0}" -ge "$nodes" ] || { sinfo -N >&2 || true; die "nodes did not come up (logs in $state/log)"; }
log "SLURM up: $nodes node(s) x $cpus CPUs; SLURM_CONF=$SLURM_CONF"
