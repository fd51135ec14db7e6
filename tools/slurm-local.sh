#!/usr/bin/env bash
# tools/slurm-local.sh — a throw-away single-node SLURM on this machine, for tests.
#
#   tools/slurm-local.sh start    install (if missing), configure and start munged, slurmctld
#                                 and slurmd; wait until the node is idle. Idempotent.
#   tools/slurm-local.sh stop     stop the daemons this script started (by the pid files it wrote).
#   tools/slurm-local.sh status   show which of our daemons run, and sinfo.
#   tools/slurm-local.sh env      print the exports a caller needs (eval "$(tools/slurm-local.sh env)").
#
# Everything (slurm.conf, munge key and socket, spool, logs, pid files) lives under
#   CLIPGEOM_SLURM_DIR   (default /tmp/clipgeom-slurm)
# Other knobs (environment):
#   CLIPGEOM_SLURM_PARTITION  partition name              (default debug)
#   CLIPGEOM_SLURM_CPUS       CPUs of the node            (default nproc)
#   CLIPGEOM_SLURM_MEM_MB     RealMemory of the node (MB) (default MemTotal minus 10%, at most 2 GiB off)
#   CLIPGEOM_SLURM_PORT       slurmctld port; slurmd uses PORT+1 (default 6817)
#   CLIPGEOM_SLURM_TIMEOUT    seconds to wait for the node to become idle (default 60)
#
# Written for Debian 12 (SLURM 22.05, munge 0.5.15) on machines without systemd, including
# sandboxes where cgroups do not work: the cgroup plugins fail there *and the failure looks like
# success* (jobs hang or vanish), so this config uses proctrack/linuxproc, task/none and
# jobacct_gather/none. There is no slurmdbd, so `sacct` does not work: callers must poll with
# squeue (the snakemake SLURM executor: --slurm-status-command squeue); MinJobAge=600 keeps
# finished jobs visible to squeue/scontrol for 10 minutes.
# Inside a job, snakemake's slurm-jobstep executor starts `srun` with every SLURM_* variable
# but a few removed — SLURM_CONF included — so srun only finds the default config
# /etc/slurm/slurm.conf: `start` links that to our slurm.conf (only if it is absent or already
# our link; it refuses to replace a real one) and `stop` removes the link again.
set -euo pipefail

STATE_DIR="${CLIPGEOM_SLURM_DIR:-/tmp/clipgeom-slurm}"
PARTITION="${CLIPGEOM_SLURM_PARTITION:-debug}"
CTLD_PORT="${CLIPGEOM_SLURM_PORT:-6817}"
SLURMD_PORT=$((CTLD_PORT + 1))
TIMEOUT="${CLIPGEOM_SLURM_TIMEOUT:-60}"
CONF="$STATE_DIR/slurm.conf"
RUN="$STATE_DIR/run"
LOG="$STATE_DIR/log"
MUNGE_DIR="$STATE_DIR/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket"
NODE="$(hostname -s)"

SYSTEM_CONF=/etc/slurm/slurm.conf

MUNGED=/usr/sbin/munged
SLURMCTLD=/usr/sbin/slurmctld
SLURMD=/usr/sbin/slurmd
PACKAGES=(slurmctld slurmd slurm-client munge)

export SLURM_CONF="$CONF"

say() { echo "slurm-local: $*" >&2; }
die() { echo "slurm-local: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- install
missing_packages() {
    local p missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    echo "${missing[@]:-}"
}

install_packages() {
    local missing
    missing="$(missing_packages)"
    [[ -z "$missing" ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "packages missing ($missing) and not root: install them with apt-get as root"
    command -v apt-get >/dev/null || die "packages missing ($missing) and no apt-get on this machine"
    say "installing $missing"
    # Keep the packages' maintainer scripts from starting system daemons (munge's init script
    # would start a system munged): a policy-rc.d that denies all starts, only while installing,
    # and only if the machine has none of its own.
    local policy=/usr/sbin/policy-rc.d ours=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
    fi
    local rc=0
    # shellcheck disable=SC2086
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
            >"$STATE_DIR/apt.log" 2>&1; then
        say "apt-get install failed; running apt-get update and retrying"
        # shellcheck disable=SC2086
        { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; } \
            >>"$STATE_DIR/apt.log" 2>&1 || rc=$?
    fi
    [[ $ours -eq 1 ]] && rm -f "$policy"
    [[ $rc -eq 0 ]] || { tail -n 20 "$STATE_DIR/apt.log" >&2; die "apt-get install $missing failed (log: $STATE_DIR/apt.log)"; }
    for b in "$MUNGED" "$SLURMCTLD" "$SLURMD" /usr/bin/sbatch /usr/bin/squeue; do
        [[ -x $b ]] || die "$b missing after installing $missing"
    done
}

# ---------------------------------------------------------------- config
node_mem_mb() {
    if [[ -n "${CLIPGEOM_SLURM_MEM_MB:-}" ]]; then echo "$CLIPGEOM_SLURM_MEM_MB"; return; fi
    local total reserve
    total=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
    reserve=$((total / 10)); ((reserve > 2048)) && reserve=2048
    echo $((total - reserve))
}

write_config() {
    local cpus mem defmem
    cpus="${CLIPGEOM_SLURM_CPUS:-$(nproc)}"
    mem="$(node_mem_mb)"
    # Without DefMemPerCPU a job that asks for no memory is given the whole node's memory
    # (CR_Core_Memory), so it runs alone. Half the per-CPU share, at most 2 GiB.
    defmem=$((mem / cpus / 2)); ((defmem > 2048)) && defmem=2048; ((defmem < 100)) && defmem=100
    mkdir -p "$STATE_DIR/spool/ctld" "$STATE_DIR/spool/d" "$RUN" "$LOG"
    cat >"$CONF.tmp" <<EOF
# Written by tools/slurm-local.sh — single-node test cluster; regenerated on each start.
ClusterName=clipgeom
SlurmctldHost=${NODE}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${MUNGE_SOCKET}
StateSaveLocation=${STATE_DIR}/spool/ctld
SlurmdSpoolDir=${STATE_DIR}/spool/d
SlurmctldPidFile=${RUN}/slurmctld.self.pid
SlurmdPidFile=${RUN}/slurmd.self.pid
SlurmctldLogFile=${LOG}/slurmctld.log
SlurmdLogFile=${LOG}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# cgroup plugins fail silently in containers/sandboxes: use the non-cgroup ones.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
# Reject at submission (not pend forever) a job the node can never run, e.g. more CPUs than it has.
EnforcePartLimits=ALL
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=${defmem}
# Finished jobs stay visible to squeue/scontrol for 10 minutes (no accounting database).
MinJobAge=600
ReturnToService=2
# The node below is what we configure, not what slurmd detects: do not drain on a mismatch.
SlurmdParameters=config_overrides
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

setup_munge() {
    mkdir -p "$MUNGE_DIR"
    chmod 0700 "$MUNGE_DIR"
    if [[ ! -s "$MUNGE_DIR/munge.key" ]]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_DIR/munge.key" --force
        else
            dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
        fi
    fi
    chmod 0600 "$MUNGE_DIR/munge.key"
}

# srun inside jobs runs without SLURM_CONF (see the header): point the default path at ours.
link_system_conf() {
    if [[ -L $SYSTEM_CONF && "$(readlink "$SYSTEM_CONF")" == "$CONF" ]]; then return 0; fi
    if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]]; then
        if [[ -L $SYSTEM_CONF && "$(readlink "$SYSTEM_CONF")" == */clipgeom-slurm*/slurm.conf \
              && ! -e "$(readlink "$SYSTEM_CONF")" ]]; then
            rm -f "$SYSTEM_CONF"   # dangling link left by an earlier run of this script
        else
            die "$SYSTEM_CONF exists and is not this script's link; this machine seems to have its own SLURM. Jobs' inner srun reads that file (snakemake's jobstep executor drops SLURM_CONF), so a private test cluster cannot work here."
        fi
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$CONF" "$SYSTEM_CONF"
    say "linked $SYSTEM_CONF -> $CONF"
}

unlink_system_conf() {
    if [[ -L $SYSTEM_CONF && "$(readlink "$SYSTEM_CONF")" == "$CONF" ]]; then
        rm -f "$SYSTEM_CONF"
        say "removed link $SYSTEM_CONF"
    fi
}

# ---------------------------------------------------------------- daemons
pidfile() { echo "$RUN/$1.pid"; }
exe_of() {
    case $1 in munged) echo "$MUNGED" ;; slurmctld) echo "$SLURMCTLD" ;; slurmd) echo "$SLURMD" ;; esac
}

running() {  # running NAME -> 0 if the daemon from our pid file is alive
    local pf; pf=$(pidfile "$1")
    [[ -s $pf ]] || return 1
    start-stop-daemon --status --pidfile "$pf" --exec "$(exe_of "$1")" >/dev/null 2>&1
}

start_daemon() {  # start_daemon NAME ARGS... (foreground daemon, backgrounded by start-stop-daemon)
    local name=$1; shift
    if running "$name"; then say "$name already running (pid $(cat "$(pidfile "$name")"))"; return 0; fi
    rm -f "$(pidfile "$name")"
    start-stop-daemon --start --background --make-pidfile --pidfile "$(pidfile "$name")" \
        --output "$LOG/$name.out" --chdir "$STATE_DIR" \
        --exec "$(exe_of "$name")" -- "$@" \
        || die "could not start $name (see $LOG/$name.out)"
    sleep 0.5
    running "$name" || { tail -n 20 "$LOG/$name.out" "$LOG/$name.log" 2>/dev/null >&2 || true
                         die "$name exited right after starting (see $LOG/$name.out, $LOG/$name.log)"; }
    say "started $name (pid $(cat "$(pidfile "$name")"))"
}

stop_daemon() {
    local name=$1 pf; pf=$(pidfile "$name")
    if [[ ! -e $pf ]]; then return 0; fi
    if running "$name"; then
        start-stop-daemon --stop --quiet --pidfile "$pf" --exec "$(exe_of "$name")" \
            --retry TERM/15/KILL/5 --remove-pidfile || die "could not stop $name (pid $(cat "$pf"))"
        say "stopped $name"
    else
        say "$name was not running (stale pid file removed)"
        rm -f "$pf"
    fi
}

node_state() { sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n1 || true; }

wait_node_idle() {
    local t0=$SECONDS state="" resumed=0
    while ((SECONDS - t0 < TIMEOUT)); do
        state=$(node_state)
        case $state in
            idle|mixed|allocated|completing) say "node $NODE is $state (partition $PARTITION)"; return 0 ;;
            down*|drain*|drained*|fail*)
                if ((resumed == 0)); then
                    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi ;;
        esac
        running slurmctld || die "slurmctld died (see $LOG/slurmctld.log)"
        running slurmd || die "slurmd died (see $LOG/slurmd.log)"
        sleep 1
    done
    scontrol show node "$NODE" >&2 2>&1 || true
    tail -n 20 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2 2>/dev/null || true
    die "node $NODE not idle after ${TIMEOUT}s (state: '${state:-unknown}')"
}

all_running() { running munged && running slurmctld && running slurmd; }

# ---------------------------------------------------------------- commands
cmd_start() {
    mkdir -p "$STATE_DIR" "$RUN" "$LOG"
    if all_running && [[ -f $CONF ]]; then
        say "already running"
        link_system_conf
        wait_node_idle
        print_env
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "must run as root (slurmd runs jobs as their users; munged/slurmctld here run as root)"
    command -v start-stop-daemon >/dev/null || die "start-stop-daemon not found (package dpkg)"
    install_packages
    # a half-running set (e.g. slurmd died) is restarted from scratch with a fresh config
    running slurmd && stop_daemon slurmd
    running slurmctld && stop_daemon slurmctld
    setup_munge
    write_config
    link_system_conf
    start_daemon munged -F --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$RUN/munged.self.pid" --log-file="$LOG/munged.log" --seed-file="$MUNGE_DIR/munge.seed" --force
    local i
    for i in $(seq 50); do [[ -S $MUNGE_SOCKET ]] && break; sleep 0.1; done
    [[ -S $MUNGE_SOCKET ]] || die "munged did not create $MUNGE_SOCKET (see $LOG/munged.log)"
    if ! munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1; then
        die "munge round trip failed (see $LOG/munged.log)"
    fi
    # -D: foreground (start-stop-daemon backgrounds it and records the real pid);
    # -i: tolerate unreadable state files left by a previous run (state is kept across restarts).
    start_daemon slurmctld -D -i -f "$CONF"
    for i in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
    scontrol ping 2>/dev/null | grep -q UP || {
        tail -n 20 "$LOG/slurmctld.log" >&2 2>/dev/null || true
        die "slurmctld does not answer (see $LOG/slurmctld.log)"; }
    start_daemon slurmd -D -f "$CONF" -N "$NODE"
    wait_node_idle
    print_env
}

cmd_stop() {
    local any=0 n
    for n in slurmd slurmctld munged; do [[ -e $(pidfile "$n") ]] && any=1; done
    if ((any == 0)); then say "nothing to stop (no pid files in $RUN)"; unlink_system_conf; return 0; fi
    # jobs still queued or running on this private cluster would outlive slurmd (their
    # slurmstepd keeps running): cancel them first
    if running slurmctld; then
        local left
        left=$(squeue -h -t PENDING,RUNNING,SUSPENDED -o %i 2>/dev/null | wc -l || echo 0)
        if ((left > 0)); then
            say "cancelling $left unfinished job(s)"
            scancel -p "$PARTITION" 2>/dev/null || true
            for _ in $(seq 20); do
                [[ -z "$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null)" ]] && break
                sleep 0.5
            done
        fi
    fi
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
    unlink_system_conf
}

cmd_status() {
    local n rc=0
    for n in munged slurmctld slurmd; do
        if running "$n"; then echo "$n: running (pid $(cat "$(pidfile "$n")"))"
        else echo "$n: not running"; rc=3; fi
    done
    if ((rc == 0)); then sinfo; squeue -a 2>/dev/null | head -n 20 || true; fi
    return $rc
}

print_env() {
    echo "export SLURM_CONF=$CONF"
    echo "export CLIPGEOM_SLURM_DIR=$STATE_DIR"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) print_env ;;
    *) echo "usage: $0 {start|stop|status|env}" >&2; exit 2 ;;
esac
