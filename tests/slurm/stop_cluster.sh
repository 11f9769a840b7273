#!/usr/bin/env bash
# Stop the private SLURM cluster started by start_cluster.sh and remove its state.
# Only processes recorded in the cluster's own pid files (and slurmstepd
# children of its jobs) are signalled -- never by broad name matching.
set -uo pipefail

LAB="${SLURM_LAB_DIR:?set SLURM_LAB_DIR to a private folder for the cluster}"
CONF="$LAB/etc/slurm.conf"
KEEP_LOGS="${KEEP_LOGS:-0}"   # KEEP_LOGS=1 keeps $LAB/log for inspection

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
pidof_file() { [[ -f "$1" ]] && cat "$1" 2>/dev/null || true; }
wait_gone() { # pid timeout_s
    local i; for i in $(seq $(( $2 * 10 ))); do alive "$1" || return 0; sleep 0.1; done; return 1
}

if [[ ! -f "$CONF" ]]; then echo "[stop_cluster] nothing to do (no cluster in $LAB)"; exit 0; fi

CTLD_PID=$(pidof_file "$LAB/run/slurmctld.pid")
SLURMD_PID=$(pidof_file "$LAB/run/slurmd-localhost.pid")
MUNGE_PID=$(pidof_file "$LAB/munge/munged.pid")

if [[ -f "$CONF" ]] && alive "$CTLD_PID"; then
    export SLURM_CONF="$CONF"
    # 1. cancel every job still known to slurmctld, so no job step survives
    if [[ -n "$(squeue -h -o %i 2>/dev/null)" ]]; then
        echo "[stop_cluster] cancelling remaining jobs"
        scancel --full $(squeue -h -o %i) 2>/dev/null || true
        for _ in $(seq 50); do [[ -z "$(squeue -h -t R,CG,PD -o %i 2>/dev/null)" ]] && break; sleep 0.2; done
    fi
    # 2. orderly shutdown of slurmctld + all slurmd
    scontrol shutdown >/dev/null 2>&1 || true
fi

for name in SLURMD CTLD; do
    var="${name}_PID"; pid="${!var}"
    if alive "$pid"; then
        wait_gone "$pid" 10 || { echo "[stop_cluster] $name ($pid) still alive -> SIGTERM"; kill "$pid" 2>/dev/null; }
        wait_gone "$pid" 10 || { echo "[stop_cluster] $name ($pid) still alive -> SIGKILL"; kill -9 "$pid" 2>/dev/null; }
    fi
done

# 3. leftover slurmstepd processes (only exist if a job step was still running
#    when slurmd went away): identify them by the step sockets they hold open in
#    OUR SlurmdSpoolDir (needs fuser from psmisc; skipped if missing).
if command -v fuser >/dev/null; then
    for sock in "$LAB"/spool/*/localhost_*; do
        [[ -S "$sock" ]] || continue
        for pid in $(fuser "$sock" 2>/dev/null); do
            echo "[stop_cluster] killing leftover slurmstepd $pid"; kill -9 "$pid" 2>/dev/null || true
        done
    done
fi

# 4. munged (our private instance only)
if alive "$MUNGE_PID"; then
    kill "$MUNGE_PID" 2>/dev/null
    wait_gone "$MUNGE_PID" 10 || kill -9 "$MUNGE_PID" 2>/dev/null
fi

# 5. remove state
if [[ "$KEEP_LOGS" == 1 ]]; then
    find "$LAB" -mindepth 1 -maxdepth 1 ! -name log -exec rm -rf {} +
    echo "[stop_cluster] stopped; logs kept in $LAB/log"
else
    rm -rf "$LAB"
    echo "[stop_cluster] stopped; removed $LAB"
fi
