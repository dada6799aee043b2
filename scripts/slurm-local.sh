#!/usr/bin/env bash
# A Slurm cluster of one or more nodes on this machine, for CI and for trying the slurm profile.
#   scripts/slurm-local.sh up   [STATE_DIR]   start munged, slurmctld and the nodes' slurmd; wait until idle
#   scripts/slurm-local.sh down [STATE_DIR]   stop them; remove the namespaces, links and /etc/slurm link
#   scripts/slurm-local.sh kill-node NODE [STATE_DIR]    SIGKILL every process of an extra node
#                                                        (its slurmd, job steps and tasks): a lost node
#   scripts/slurm-local.sh start-node NODE [STATE_DIR]   start that node's slurmd again
# Needs root and Debian's slurmctld, slurmd, slurm-client and munge packages. One partition,
# "main", no GPUs, no accounting database (so Snakemake must poll with squeue). SLURM_NODE_CPUS
# (default: all cores) sets the CPUs each node offers. SLURM_LOCAL_NODES (default 1) sets the
# nodes: the first is this machine ($(hostname -s)); each further one, <host>-n2, <host>-n3, ...,
# is a slurmd in a network, UTS and mount namespace of its own (its own hostname, its own address
# on a bridge the script makes, its own /etc/hosts), sharing this machine's file system. The
# bridge has no uplink: the nodes' traffic stays on this machine. The recipe and its traps are in
# ../docs/cluster.md and ../shared/notes/slurm-on-one-machine.md.
set -euo pipefail

action=${1:?usage: slurm-local.sh up|down [STATE_DIR] | kill-node|start-node NODE [STATE_DIR]}
case $action in
    kill-node | start-node)
        node=${2:?usage: slurm-local.sh $action NODE [STATE_DIR]}
        state=${3:-}
        ;;
    *) state=${2:-} ;;
esac
R=$(realpath -m "${state:-/tmp/wcgan-slurm}")
H=$(hostname -s)
CONF_LINK=/etc/slurm/slurm.conf
BRIDGE=wcgan0            # on this machine; each node's end of its veth pair has the same name
SUBNET=${SLURM_LOCAL_SUBNET:-10.213.0}  # a /24 for the bridge: .1 this machine, .K node K
MADE=$R/run/made         # what up made: "netns NAME" and "link NAME" lines, for down

stop_pid() {
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

stop_pidfile() {
    local file=$1
    [ -f "$file" ] || return 0
    stop_pid "$(cat "$file")"
    rm -f "$file"
}

namespace() { echo "wcgan-$1"; }  # an extra node's network namespace

kill_namespace() {  # every process in it: its slurmd, slurmstepd and the job's tasks
    local ns=$1 pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    for _ in $(seq 50); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && return 0; sleep 0.1; done
    echo "slurm-local: processes still in namespace $ns: $(ip netns pids "$ns" | tr '\n' ' ')" >&2
    return 1
}

down() {
    for file in "$R"/run/slurmd-*.pid "$R/run/slurmd.pid"; do
        [ -e "$file" ] && stop_pidfile "$file"
    done
    if [ -f "$MADE" ]; then
        while read -r kind name; do
            [ "$kind" = netns ] && kill_namespace "$name"
        done < "$MADE"
    fi
    stop_pidfile "$R/run/slurmctld.pid"
    stop_pidfile "$R/munge/munged.pid"
    if [ -f "$MADE" ]; then
        # Namespaces first (their veth ends go with them), then the bridge.
        while read -r kind name; do
            if [ "$kind" = netns ] && ip netns list | grep -qx "$name\( .*\)\?"; then
                ip netns delete "$name"
            fi
        done < "$MADE"
        while read -r kind name; do
            if [ "$kind" = link ] && ip link show "$name" > /dev/null 2>&1; then
                ip link delete "$name"
            fi
        done < "$MADE"
        rm -f "$MADE"
    fi
    if [ -L "$CONF_LINK" ] && [ "$(readlink "$CONF_LINK")" = "$R/etc/slurm.conf" ]; then
        rm -f "$CONF_LINK"
    fi
    echo "slurm-local: stopped ($R)" >&2
}

start_extra_slurmd() {  # in the node's namespaces: its hostname, its /etc/hosts
    local name=$1
    # nsenter, not ip netns exec: that mounts a fresh /sys, without the cgroup tree slurmd reads.
    mkdir -p "$R/var/d/$name"
    nsenter --net="/run/netns/$(namespace "$name")" unshare --uts --mount --propagation private \
        sh -c 'mount --bind "$1" /etc/hosts && hostname "$2" && exec slurmd -D -N "$2" -f "$3"' \
        sh "$R/etc/hosts" "$name" "$R/etc/slurm.conf" > "$R/log/slurmd-$name.out" 2>&1 &
}

make_network() {  # a bridge on this machine, a namespace and a veth pair per extra node
    local nodes=$1 k name ns
    ip link add "$BRIDGE" type bridge
    echo "link $BRIDGE" >> "$MADE"
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    {
        echo "127.0.0.1 localhost"
        echo "$SUBNET.1 $H"
        for k in $(seq 2 "$nodes"); do echo "$SUBNET.$k $H-n$k"; done
    } > "$R/etc/hosts"
    for k in $(seq 2 "$nodes"); do
        name=$H-n$k
        ns=$(namespace "$name")
        ip netns add "$ns"
        echo "netns $ns" >> "$MADE"
        ip link add "wcgan-v$k" type veth peer name "$BRIDGE" netns "$ns"
        echo "link wcgan-v$k" >> "$MADE"
        ip link set "wcgan-v$k" master "$BRIDGE"
        ip link set "wcgan-v$k" up
        ip -n "$ns" addr add "$SUBNET.$k/24" dev "$BRIDGE"
        ip -n "$ns" link set "$BRIDGE" up
        ip -n "$ns" link set lo up
    done
}

node_states() { timeout 5 sinfo -h -N -o '%N %T' 2>/dev/null || true; }

wait_idle() {  # every node idle (or mixed/allocated: jobs may already run)
    local nodes=$1 deadline=$((SECONDS + 60)) ready
    while :; do
        ready=$(node_states | awk '$2 ~ /^(idle|mixed|allocated)$/' | wc -l)
        [ "$ready" -ge "$nodes" ] && return 0
        for file in "$R/run/slurmctld.pid" "$R"/run/slurmd-*.pid; do
            if [ -f "$file" ] && ! kill -0 "$(cat "$file")" 2>/dev/null; then
                echo "slurm-local: $(basename "$file" .pid) died; see $R/log/" >&2; exit 1
            fi
        done
        [ $SECONDS -lt "$deadline" ] || {
            echo "slurm-local: $ready of $nodes nodes idle after 60 s ($(node_states | tr '\n' ' ')); see $R/log/" >&2
            exit 1
        }
        sleep 0.5
    done
}

up() {
    for tool in munged slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null || { echo "slurm-local: '$tool' is not installed" >&2; exit 1; }
    done
    local nodes=${SLURM_LOCAL_NODES:-1}
    [[ $nodes =~ ^[1-9][0-9]?$ ]] || { echo "slurm-local: SLURM_LOCAL_NODES '$nodes' is not a number of nodes (1-99)" >&2; exit 1; }
    if [ "$nodes" -gt 1 ]; then
        for tool in ip unshare nsenter; do
            command -v "$tool" >/dev/null || { echo "slurm-local: '$tool' is not installed (needed for $nodes nodes)" >&2; exit 1; }
        done
    fi
    down 2>/dev/null || true
    mkdir -p "$R"/{etc,var/ctld,var/d,run,log,munge}
    : > "$MADE"
    chmod 755 "$R/munge"  # the socket folder must be searchable by all
    dd if=/dev/urandom of="$R/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$R/munge/munge.key"
    munged --key-file="$R/munge/munge.key" --socket="$R/munge/munge.sock" \
        --pid-file="$R/munge/munged.pid" --log-file="$R/munge/munged.log" --seed-file="$R/munge/munged.seed"

    local cpus=${SLURM_NODE_CPUS:-$(nproc)}
    local memory=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 / nodes))
    local overrides="" controller=$H node_lines names k
    [ "$cpus" -gt "$(nproc)" ] && overrides="SlurmdParameters=config_overrides"
    if [ "$nodes" -eq 1 ]; then
        node_lines="NodeName=$H CPUs=$cpus RealMemory=$memory State=UNKNOWN"
        names=$H
        multi=""
        auth_extra=""
    else
        make_network "$nodes"
        # The namespaces reach this machine at the bridge's address only ($H is 127.0.0.1 there).
        controller="$H($SUBNET.1)"
        node_lines="NodeName=$H NodeAddr=$SUBNET.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN"
        names=$H
        for k in $(seq 2 "$nodes"); do
            node_lines+=$'\n'"NodeName=$H-n$k NodeHostname=$H-n$k NodeAddr=$SUBNET.$k CPUs=$cpus RealMemory=$memory State=UNKNOWN"
            names+=",$H-n$k"
        done
        # A node that stops answering is DOWN after SlurmdTimeout (Slurm's default 300 s), its
        # batch jobs requeued; least-loaded-node placement spreads jobs over the nodes.
        multi="SlurmdTimeout=${SLURM_LOCAL_SLURMD_TIMEOUT:-10}"$'\n'"JobRequeue=1"
        # A requeued job waits the credential lifetime (Slurm's default 120 s) before it may start
        # again; a short one keeps the lost-node tests short.
        auth_extra=",cred_expire=${SLURM_LOCAL_CRED_EXPIRE:-20}"
    fi
    local partition_options=""
    [ "$nodes" -gt 1 ] && partition_options=" LLN=YES"
    cat > "$R/etc/slurm.conf" <<CONF
ClusterName=wcgan
SlurmctldHost=$controller
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$R/munge/munge.sock$auth_extra
StateSaveLocation=$R/var/ctld
SlurmdSpoolDir=$R/var/d/%n
SlurmctldPidFile=$R/run/slurmctld.pid
SlurmdPidFile=$R/run/slurmd-%n.pid
SlurmctldLogFile=$R/log/slurmctld.log
SlurmdLogFile=$R/log/slurmd-%n.log
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
$multi
$overrides
$node_lines
PartitionName=main Nodes=$names Default=YES MaxTime=INFINITE State=UP$partition_options
CONF
    # Snakemake's job step wrapper drops SLURM_CONF, so srun inside jobs needs the default path.
    mkdir -p "$(dirname "$CONF_LINK")"
    ln -sfn "$R/etc/slurm.conf" "$CONF_LINK"

    slurmctld -D -c -f "$R/etc/slurm.conf" > "$R/log/slurmctld.out" 2>&1 &
    mkdir -p "$R/var/d/$H"
    slurmd -D -N "$H" -f "$R/etc/slurm.conf" > "$R/log/slurmd-$H.out" 2>&1 &
    for k in $(seq 2 "$nodes"); do start_extra_slurmd "$H-n$k"; done
    # Client commands hang ~9 s when slurmctld is down: check the daemons, bound every wait.
    wait_idle "$nodes"
    echo "slurm-local: $nodes node(s) idle ($names) with $cpus CPUs each, partition main ($R)" >&2
}

extra_node() {  # NODE must be an extra node of the running cluster
    if [ "$node" = "$H" ] || ! grep -qx "netns $(namespace "$node")" "$MADE" 2>/dev/null; then
        echo "slurm-local: '$node' is not an extra node of the cluster in $R (nodes: $(node_states | cut -d' ' -f1 | tr '\n' ' '))" >&2
        exit 1
    fi
}

case $action in
    up) up ;;
    down) down ;;
    kill-node)
        extra_node
        kill_namespace "$(namespace "$node")"
        rm -f "$R/run/slurmd-$node.pid"
        echo "slurm-local: node $node killed (slurmd and every process of its jobs)" >&2
        ;;
    start-node)
        extra_node
        start_extra_slurmd "$node"
        echo "slurm-local: slurmd of $node started" >&2
        ;;
    *) echo "usage: slurm-local.sh up|down [STATE_DIR] | kill-node|start-node NODE [STATE_DIR]" >&2; exit 2 ;;
esac
