#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for `recast run --executor slurm`
# and its tests (tests/test_slurm.py). Idempotent; needs root. Debian's
# slurm-wlm 22.05 with munge, no systemd, no cgroups, no accounting: the
# recipe of ../shared/ENVIRONMENT.md. Prints the partition's name when the node is idle.
#
# Without accounting, `sacct` never reports: recast's slurm executor asks
# `squeue` for job states instead (recast/executors/slurm.py).
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "slurm.sh: must run as root (installs packages, starts munged, slurmctld and slurmd)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm.sh: installing slurm-wlm and munge" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))
conf=/etc/slurm/slurm.conf
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
wanted=$(cat <<EOF
ClusterName=ci
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=300
KillWait=5
Waittime=0
NodeName=localhost CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)
changed=0
if [[ ! -f $conf ]] || [[ "$(cat "$conf")" != "$wanted" ]]; then
    printf '%s\n' "$wanted" >"$conf"
    changed=1
fi

running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -f /etc/munge/munge.key ]]; then
    /usr/sbin/mungekey --create 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
if ! running /run/munge/munged.pid; then
    runuser -u munge -- /usr/sbin/munged
fi

if (( changed )); then  # a new configuration: restart whatever runs with the old one
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        if running "$pidfile"; then
            kill "$(cat "$pidfile")"
            for _ in $(seq 50); do running "$pidfile" || break; sleep 0.1; done
        fi
    done
fi
running /run/slurmctld.pid || /usr/sbin/slurmctld
running /run/slurmd.pid || /usr/sbin/slurmd -N localhost  # -N: the hostname is not 'localhost'

for _ in $(seq 300); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
    case $state in
        idle|mixed|allocated) echo debug; exit 0 ;;
        down*|drain*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.2
done
echo "slurm.sh: the node did not become idle within 60 s (state: ${state:-none}); see /var/log/slurm/" >&2
exit 1
