# bench/proc.sh - process helpers of bench/run.sh and bench/db.sh, sourced by both.
# The caller defines log(), TMP (a scratch folder), NOTES (a file collecting notes for the
# report), PYTHON, and the array STARTED (server pids still to stop on exit).
# shellcheck shell=bash

note() {
    log "$*"
    echo "$*" >>"$NOTES"
}

# ---------------------------------------------------------------- processes

# alive PID: the process exists and is not a zombie
alive() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# proc_scan ROOT: prints "TICKS PIDS..." - utime+stime of ROOT and all its
# descendants plus ROOT's cutime+cstime (workers that died and were reaped
# keep counting), then the pids of the tree, ROOT first.
proc_scan() {
    local root=$1 f line rest pid
    local -A ppid_of=() ticks_of=()
    local -a fields
    local reaped=0
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        pid=${line%% *}
        rest=${line##*) }
        read -r -a fields <<<"$rest"
        ppid_of[$pid]=${fields[1]}
        ticks_of[$pid]=$((fields[11] + fields[12]))
        if [[ $pid == "$root" ]]; then
            reaped=$((fields[13] + fields[14]))
        fi
    done
    local -a tree=("$root") queue=("$root")
    local total=$reaped p c
    while ((${#queue[@]})); do
        p=${queue[0]}
        queue=("${queue[@]:1}")
        total=$((total + ${ticks_of[$p]:-0}))
        for c in "${!ppid_of[@]}"; do
            if [[ ${ppid_of[$c]} == "$p" ]]; then
                tree+=("$c")
                queue+=("$c")
            fi
        done
    done
    # root first, then the descendants in pid order (stable between scans)
    echo "$total $root $(printf '%s\n' "${tree[@]:1}" | sort -n | tr '\n' ' ')"
}

tree_pids() {
    local scan
    scan=$(proc_scan "$1")
    echo "${scan#* }"
}

# busy_ticks: CPU ticks the whole machine spent not idle (from /proc/stat)
busy_ticks() {
    awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

# children_cpu: sets CHILD_CPU to the user+sys seconds of this shell's reaped
# children (wrk among them). Not in $(...): a subshell has its own counters.
# shellcheck disable=SC2034  # CHILD_CPU is read by the caller
children_cpu() {
    times >"$TMP/times"
    CHILD_CPU=$(awk 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); t += a[1] * 60 + a[2] }
        printf "%.3f", t
    }' "$TMP/times")
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# stop_server PID NAME: SIGTERM, up to 10 s, then SIGKILL the whole tree.
stop_server() {
    local pid=$1 name=$2 kids i status=0
    kids=$(tree_pids "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        note "$name (pid $pid) still running 10 s after SIGTERM; killed"
    fi
    # shellcheck disable=SC2086  # word splitting of the pid list is intended
    kill -KILL $kids 2>/dev/null || true
    wait "$pid" 2>/dev/null || status=$?
    local -a rest=()
    local p
    for p in "${STARTED[@]}"; do
        [[ $p == "$pid" ]] || rest+=("$p")
    done
    STARTED=("${rest[@]}")
    return "$status"
}
