# shellcheck shell=bash
# Helpers shared by rolling-deploy.sh and blue-green-switch.sh (sourced, never run).
#
# Commands given by the operator (restart, nginx test, nginx reload) are templates run with
# `bash -c`; {addr}, {host} and {port} stand for the instance they act on.

PROG=${0##*/}

say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

# value OPTION VALUE...: the option's value, or an error naming the option.
value() {
    (($# >= 2)) || die "$1 needs a value"
    printf '%s' "$2"
}

# Seconds as a plain or decimal number (sleep and the loops below take both).
check_seconds() {
    [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$1 must be a number of seconds, not '$2'"
}

# fill TEMPLATE HOST:PORT -> the template with {addr}, {host} and {port} replaced.
fill() {
    local t=$1 addr=$2
    local host=${addr%:*} port=${addr##*:}
    t=${t//\{addr\}/$addr}
    t=${t//\{host\}/$host}
    t=${t//\{port\}/$port}
    printf '%s' "$t"
}

# run DESCRIPTION COMMAND: runs COMMAND with bash -c; on failure shows its output. The
# command does not inherit fd 9 (rolling-deploy.sh's lock), so a process it leaves running
# cannot hold the lock.
run() {
    local out
    if ! out=$(bash -c "$2" 2>&1 9<&-); then
        printf '%s: %s failed: %s\n%s\n' "$PROG" "$1" "$2" "$out" >&2
        return 1
    fi
}

# http_status URL -> the status code, 000 when nothing answered. Never through a proxy:
# the URLs name instances and nginx directly.
http_status() {
    curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 3 "$1" || true
}

# Seconds since the epoch with a fraction, for deadlines.
now() {
    local t=${EPOCHREALTIME:-$(date +%s)}
    printf '%s' "${t/,/.}" # a decimal comma under some locales
}
# before DEADLINE: true while the deadline has not passed.
before() { awk -v d="$1" -v n="$(now)" 'BEGIN { exit !(n < d) }'; }
# deadline SECONDS -> now + SECONDS.
deadline() { awk -v s="$1" -v n="$(now)" 'BEGIN { printf "%.3f", n + s }'; }

# ---- the nginx master, when this host can see it ------------------------------------------

# Prints the pid of the nginx master named by NGINX_PID_FILE, if it runs in this pid
# namespace (nginx in a container is not visible from the host: callers then fall back to
# fixed waits).
nginx_master() {
    local pid
    [[ -n ${NGINX_PID_FILE:-} && -r $NGINX_PID_FILE ]] || return 1
    read -r pid <"$NGINX_PID_FILE" || return 1
    [[ $pid =~ ^[0-9]+$ && -d /proc/$pid ]] || return 1
    printf '%s' "$pid"
}

# The master's children (workers, cache processes), one pid a line.
nginx_children() {
    pgrep -P "$1" || true
}

# accepting PIDS...: prints those of the given nginx workers that still take connections
# (alive, and not retitled "worker process is shutting down", which nginx does once a
# worker has closed its listening sockets).
accepting() {
    local p title
    for p in "$@"; do
        [[ -r /proc/$p/cmdline ]] || continue
        title=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
        [[ $title == *"shutting down"* ]] || printf '%s ' "$p"
    done
}

# alive PIDS...: prints those still running.
alive() {
    local p
    for p in "$@"; do
        [[ -d /proc/$p ]] && printf '%s ' "$p"
    done
    return 0
}

# wait_until SECONDS FUNCTION ARGS...: polls FUNCTION until its output is empty; prints
# the last output and fails on timeout.
wait_until() {
    local until out
    until=$(deadline "$1")
    shift
    while :; do
        out=$("$@")
        [[ -z $out ]] && return 0
        before "$until" || {
            printf '%s' "$out"
            return 1
        }
        sleep 0.05
    done
}

# reload_nginx DRAIN_SECONDS
#
# Reloads nginx and returns once only the new configuration takes new connections. A
# reload is graceful: the master starts workers with the new configuration, then asks the
# old ones to close their listening sockets, finish the requests they are serving and
# exit. With DRAIN_SECONDS > 0 this also waits, at most that long, for the old workers to
# exit: then no request begun under the previous configuration is still running. When the
# master is not visible from here (nginx in a container), it waits DRAIN_SECONDS (at
# least 1s) instead.
reload_nginx() {
    local drain=$1 master old left
    if ! master=$(nginx_master) || ! command -v pgrep >/dev/null; then
        run "nginx reload" "$NGINX_RELOAD_CMD" || return 1
        sleep "$(awk -v d="$drain" 'BEGIN { print (d < 1 ? 1 : d) }')"
        return 0
    fi
    read -r -a old <<<"$(nginx_children "$master" | tr '\n' ' ')"
    run "nginx reload" "$NGINX_RELOAD_CMD" || return 1
    if ! left=$(wait_until 10 accepting ${old[@]+"${old[@]}"}); then
        warn "nginx workers $left still take connections 10s after the reload" \
            "(see its error log)"
        return 1
    fi
    [[ $drain == 0 ]] && return 0
    if ! left=$(wait_until "$drain" alive ${old[@]+"${old[@]}"}); then
        warn "old nginx workers $left still finish requests after ${drain}s" \
            "(long downloads, WebSockets); going on"
    fi
    return 0
}
