#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for CI and for trying the slurm profile locally.
#   scripts/slurm-local.sh up   [STATE_DIR]   start munged, slurmctld and slurmd; wait until idle
#   scripts/slurm-local.sh down [STATE_DIR]   stop them and remove the /etc/slurm link
# Needs root and Debian's slurmctld, slurmd, slurm-client and munge packages. One partition,
# "main", no GPUs, no accounting database (so Snakemake must poll with squeue). SLURM_NODE_CPUS
# (default: all cores) sets the CPUs the node offers. The recipe and its traps are written up in
# ../shared/notes/slurm-on-one-machine.md.
set -euo pipefail

action=${1:?usage: slurm-local.sh up|down [STATE_DIR]}
R=$(realpath -m "${2:-/tmp/wcgan-slurm}")
H=$(hostname -s)
CONF_LINK=/etc/slurm/slurm.conf

stop_pidfile() {
    local file=$1
    [ -f "$file" ] || return 0
    local pid
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$file"
}

down() {
    stop_pidfile "$R/run/slurmd.pid"
    stop_pidfile "$R/run/slurmctld.pid"
    stop_pidfile "$R/munge/munged.pid"
    if [ -L "$CONF_LINK" ] && [ "$(readlink "$CONF_LINK")" = "$R/etc/slurm.conf" ]; then
        rm -f "$CONF_LINK"
    fi
    echo "slurm-local: stopped ($R)" >&2
}

up() {
    for tool in munged slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null || { echo "slurm-local: '$tool' is not installed" >&2; exit 1; }
    done
    down 2>/dev/null || true
    mkdir -p "$R"/{etc,var/ctld,var/d,run,log,munge}
    chmod 755 "$R/munge"  # the socket folder must be searchable by all
    dd if=/dev/urandom of="$R/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$R/munge/munge.key"
    munged --key-file="$R/munge/munge.key" --socket="$R/munge/munge.sock" \
        --pid-file="$R/munge/munged.pid" --log-file="$R/munge/munged.log" --seed-file="$R/munge/munged.seed"

    local cpus=${SLURM_NODE_CPUS:-$(nproc)}
    local memory=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10))
    local overrides=""
    [ "$cpus" -gt "$(nproc)" ] && overrides="SlurmdParameters=config_overrides"
    cat > "$R/etc/slurm.conf" <<CONF
ClusterName=wcgan
SlurmctldHost=$H
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$R/munge/munge.sock
StateSaveLocation=$R/var/ctld
SlurmdSpoolDir=$R/var/d
SlurmctldPidFile=$R/run/slurmctld.pid
SlurmdPidFile=$R/run/slurmd.pid
SlurmctldLogFile=$R/log/slurmctld.log
SlurmdLogFile=$R/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SchedulerType=sched/backfill
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
MailProg=/bin/true
DefMemPerCPU=500
KillWait=30
$overrides
NodeName=$H CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=main Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
    # Snakemake's job step wrapper drops SLURM_CONF, so srun inside jobs needs the default path.
    mkdir -p "$(dirname "$CONF_LINK")"
    ln -sfn "$R/etc/slurm.conf" "$CONF_LINK"

    slurmctld -D -c -f "$R/etc/slurm.conf" > "$R/log/slurmctld.out" 2>&1 &
    slurmd -D -f "$R/etc/slurm.conf" > "$R/log/slurmd.out" 2>&1 &
    # Client commands hang ~9 s when slurmctld is down: check the daemons, bound every wait.
    local deadline=$((SECONDS + 60))
    until [ "$(timeout 5 sinfo -h -o %T 2>/dev/null | head -1)" = "idle" ]; do
        for pidfile in slurmctld slurmd; do
            if [ -f "$R/run/$pidfile.pid" ] && ! kill -0 "$(cat "$R/run/$pidfile.pid")" 2>/dev/null; then
                echo "slurm-local: $pidfile died; see $R/log/" >&2; exit 1
            fi
        done
        [ $SECONDS -lt $deadline ] || { echo "slurm-local: node not idle after 60 s; see $R/log/" >&2; exit 1; }
        sleep 0.5
    done
    echo "slurm-local: node $H idle with $cpus CPUs, partition main ($R)" >&2
}

case $action in
    up) up ;;
    down) down ;;
    *) echo "usage: slurm-local.sh up|down [STATE_DIR]" >&2; exit 2 ;;
esac
