#!/usr/bin/env bash
# Nexus vs nginx benchmark (issue 2, item 9). Not a test: targets that are
# not met are printed; the exit status is non-zero only when a server fails
# to start, dies during the run, or wrk fails.
#
#   bench/run.sh /abs/path/to/build/nexus        (what `make bench` runs)
#
# Environment overrides (defaults in brackets):
#   BENCH_DURATION [10s]  BENCH_CONNECTIONS [256]  BENCH_THREADS [1]
#   BENCH_WARMUP [2s, 0 = none]  BENCH_PIPELINE [16]
#   BENCH_ROUNDS [1; more runs every scenario again, alternating, and reports medians]
#   BENCH_IDLE_CONNECTIONS [10000, 0 = skip the idle phase]
#   BENCH_SERVER_CPU [0]  BENCH_CLIENT_CPU [1]
#   BENCH_NGINX [/usr/sbin/nginx]  BENCH_PYTHON [/usr/bin/python3]
#   BENCH_OUT [<dir of nexus>/bench/results.txt]
#   BENCH_DB [1; 0 skips the database shapes of bench/db.sh, run at the end]
# See bench/README.md for what is measured and how to read the table.

set -euo pipefail

usage() {
    echo "usage: $0 /abs/path/to/nexus" >&2
    exit 2
}
[[ $# -eq 1 ]] || usage

NEXUS=$1
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-256}
THREADS=${BENCH_THREADS:-1}
WARMUP=${BENCH_WARMUP:-2s}
DEPTH=${BENCH_PIPELINE:-16}
ROUNDS=${BENCH_ROUNDS:-1}
IDLE_CONNS=${BENCH_IDLE_CONNECTIONS:-10000}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
NGINX=${BENCH_NGINX:-/usr/sbin/nginx}
PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
HOST=127.0.0.1

[[ -x $NEXUS ]] || { echo "bench: $NEXUS is not an executable" >&2; exit 1; }
NEXUS=$(cd "$(dirname "$NEXUS")" && pwd)/$(basename "$NEXUS")
PLUGINS_DIR=$(dirname "$NEXUS")/plugins
OUT=${BENCH_OUT:-$(dirname "$NEXUS")/bench/results.txt}
OUT_DIR=$(dirname "$OUT")
RAW_DIR=$OUT_DIR/raw

for tool in wrk taskset curl "$NGINX" "$PYTHON"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found (scripts/install-deps.sh)" >&2; exit 1; }
done

NCPU=$(getconf _NPROCESSORS_ONLN)
if ((NCPU < 2)); then
    echo "bench: warning: only $NCPU CPU; server and wrk share it" >&2
    SERVER_CPU=0 CLIENT_CPU=0
fi
HZ=$(getconf CLK_TCK)

# Open files: 10,000 idle connections need more than the usual 1024. Raise
# the hard limit where allowed, then the soft limit as far as it goes; the
# servers inherit it.
if [[ $(ulimit -Hn) != unlimited ]] && (($(ulimit -Hn) < 65536)); then
    ulimit -Hn 65536 2>/dev/null || true
fi
if [[ $(ulimit -Hn) == unlimited ]] || (($(ulimit -Hn) >= 65536)); then
    ulimit -Sn 65536
else
    ulimit -Sn "$(ulimit -Hn)"
fi
NOFILE=$(ulimit -Sn)
if ((IDLE_CONNS > 0 && NOFILE < IDLE_CONNS + 100)); then
    echo "bench: warning: open-file limit $NOFILE < $((IDLE_CONNS + 100)); idle phase will fall short" >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nexus-bench.XXXXXX")
mkdir -p "$OUT_DIR" "$RAW_DIR"
# the previous run's wrk output and logs
rm -f "$RAW_DIR"/wrk-*.txt "$RAW_DIR"/wrk-*.txt.warmup "$RAW_DIR"/idle-*.txt \
    "$RAW_DIR"/nexus-*.log "$RAW_DIR"/nginx-*.log
RESULTS=$TMP/results.tsv
NOTES=$TMP/notes.txt
: >"$RESULTS"
: >"$NOTES"
STARTED=()   # server pids still to stop on exit
FAILED=0
REPORTED=0

log() {
    echo "bench: [${SECONDS}s] $*" >&2
}

# note, alive, proc_scan, tree_pids, busy_ticks, children_cpu, free_port, stop_server
# shellcheck source=bench/proc.sh
. "$BENCH_DIR/proc.sh"

# shellcheck disable=SC2317  # reached through the trap
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${STARTED[@]}"; do
        stop_server "$pid" server || true
    done
    # a failure after some runs still shows what was measured
    if ((!REPORTED)) && [[ -s $RESULTS ]]; then
        echo "bench: failed; partial results:" >&2
        report | tee "$OUT" || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_ready PID PORT NAME LOG: until GET /health is 200, the process lives,
# and /plaintext and /json answer with the expected bodies.
wait_ready() {
    local pid=$1 port=$2 name=$3 log=$4 i code
    for ((i = 0; i < 100; i++)); do
        if ! alive "$pid"; then
            echo "bench: $name exited during start-up; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            return 1
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HOST:$port/health" || true)
        [[ $code == 200 ]] && break
        sleep 0.1
    done
    if [[ $code != 200 ]]; then
        echo "bench: $name: GET /health did not answer 200 within 10 s (last: $code); log:" >&2
        tail -n 20 "$log" >&2 || true
        return 1
    fi
    check_body "$port" "$name" /plaintext 'Hello, World!' text/plain &&
        check_body "$port" "$name" /json '{"message":"Hello, World!"}' application/json
}

check_body() {
    local port=$1 name=$2 path=$3 body=$4 ctype=$5 got meta
    got=$TMP/body.$$
    meta=$(curl -s -o "$got" -w '%{http_code} %{content_type}' --max-time 2 "http://$HOST:$port$path" || true)
    if [[ ${meta%% *} != 200 || $(<"$got") != "$body" ]]; then
        echo "bench: $name: GET $path answered '$meta' with body '$(head -c 200 "$got")', want 200 '$body'" >&2
        return 1
    fi
    if [[ ${meta#* } != "$ctype"* ]]; then
        note "$name: GET $path Content-Type is '${meta#* }', nginx sends '$ctype'"
    fi
}

# start_nexus TAG PORT [EXTRA ARGS...]: sets SERVER_PID.
start_nexus() {
    local tag=$1 port=$2
    shift 2
    local log=$TMP/nexus-$tag.log
    # keep-alive as long as nginx's (keepalive_timeout 300s) so idle connections stay
    NEXUS_SERVER_KEEPALIVE_TIMEOUT=300s \
        taskset -c "$SERVER_CPU" "$NEXUS" serve --host "$HOST" --port "$port" --workers 1 \
        --access-log off --plugins-dir "$PLUGINS_DIR" "$@" >>"$log" 2>&1 &
    local pid=$!
    STARTED+=("$pid")
    if ! wait_ready "$pid" "$port" "nexus" "$log"; then
        return 1
    fi
    SERVER_PID=$pid
}

# start_nginx TAG PORT WORKER_CONNECTIONS: sets SERVER_PID.
start_nginx() {
    local tag=$1 port=$2 wc=$3
    local dir=$TMP/nginx-$tag
    mkdir -p "$dir"
    sed -e "s|@TMP@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@WORKER_CONNECTIONS@|$wc|g" \
        -e "s|@NOFILE@|$NOFILE|g" "$BENCH_DIR/nginx.conf.in" >"$dir/nginx.conf"
    taskset -c "$SERVER_CPU" "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" \
        -g 'daemon off;' >"$dir/stderr.log" 2>&1 &
    local pid=$!
    STARTED+=("$pid")
    if ! wait_ready "$pid" "$port" "nginx" "$dir/error.log"; then
        tail -n 20 "$dir/stderr.log" >&2 || true
        return 1
    fi
    SERVER_PID=$pid
}

# Logs worth keeping for the lead (errors, sanitizer reports) after the run.
save_logs() {
    local f
    for f in "$TMP"/nexus-*.log; do
        [[ -e $f ]] && cp "$f" "$RAW_DIR/"
    done
    for f in "$TMP"/nginx-*/error.log; do
        [[ -e $f ]] && cp "$f" "$RAW_DIR/$(basename "$(dirname "$f")").log"
    done
    return 0
}

# ---------------------------------------------------------------- throughput

# ms VALUE-WITH-UNIT: wrk's "812.00us", "2.31ms", "1.02s", "1.50m" -> ms
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0) print "nan"; else printf "%.3f", n * f
    }'
}

declare -A PID_OF PORT_OF

# ensure_server NAME: (re)start it if it died.
ensure_server() {
    local name=$1
    alive "${PID_OF[$name]}" && return 0
    note "$name (pid ${PID_OF[$name]}) had died; restarting it"
    FAILED=1
    local port
    port=$(free_port)
    if [[ $name == nexus ]]; then
        start_nexus bench "$port" "${NEXUS_BENCH_ARGS[@]}" || exit 1
    else
        start_nginx bench "$port" "$NGINX_BENCH_WC" || exit 1
    fi
    PID_OF[$name]=$SERVER_PID
    PORT_OF[$name]=$port
}

# run_wrk SCENARIO NAME PATH PIPELINE(0|1) ROUND
run_wrk() {
    local scenario=$1 name=$2 path=$3 pipe=$4 round=$5
    ensure_server "$name"
    local pid=${PID_OF[$name]}
    local url="http://$HOST:${PORT_OF[$name]}$path"
    local -a script=() script_args=()
    if ((pipe)); then
        script=(-s "$BENCH_DIR/pipeline.lua")
        script_args=(-- "$DEPTH")
    fi
    local raw=$RAW_DIR/wrk-$scenario-$name.txt
    ((ROUNDS == 1)) || raw=$RAW_DIR/wrk-$scenario-$name-$round.txt

    if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
        taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "${script[@]}" \
            "$url" "${script_args[@]}" >"$raw.warmup" 2>&1 || true
    fi

    local before after t0 t1 rc=0 workers_before workers_after
    log "$scenario / $name$( ((ROUNDS == 1)) || echo " (round $round/$ROUNDS)"): wrk -t$THREADS -c$CONNS -d$DURATION $url"
    before=$(proc_scan "$pid")
    workers_before=${before#* }
    local sys_before sys_after wrk_before wrk_after
    sys_before=$(busy_ticks)
    children_cpu
    wrk_before=$CHILD_CPU
    t0=$(date +%s.%N)
    taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${script[@]}" \
        "$url" "${script_args[@]}" >"$raw" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    children_cpu
    wrk_after=$CHILD_CPU
    sys_after=$(busy_ticks)
    after=$(proc_scan "$pid")
    workers_after=${after#* }

    if ((rc != 0)) || ! grep -q '^Requests/sec:' "$raw"; then
        echo "bench: wrk failed (exit $rc) for $scenario / $name:" >&2
        cat "$raw" >&2
        exit 1
    fi
    if ! alive "$pid"; then
        note "$name DIED during $scenario (master pid $pid)"
        FAILED=1
    elif [[ $workers_before != "$workers_after" ]]; then
        note "$name: process tree changed during $scenario ($workers_before -> $workers_after): a worker was replaced"
    fi

    local rps total p99 maxlat non2xx sockerr errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$raw")
    total=$(awk '/ requests in / {print $1; exit}' "$raw")
    if grep -q '^Pipelined latency p99 (us):' "$raw"; then
        # wrk's own percentiles are broken when pipelining; see pipeline.lua
        p99=$(awk -F': ' '/^Pipelined latency p99/ {printf "%.3f", $2 / 1000}' "$raw")
    else
        p99=$(to_ms "$(awk '$1 == "99%" {print $2; exit}' "$raw")")
    fi
    maxlat=$(to_ms "$(awk '$1 == "Latency" {print $4; exit}' "$raw")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$raw")
    sockerr=$(awk -F': ' '/Socket errors:/ {print $2}' "$raw")
    errors=""
    [[ -n $non2xx ]] && errors="non-2xx $non2xx"
    [[ -n $sockerr ]] && errors="${errors:+$errors; }$sockerr"
    [[ -n $errors ]] || errors=-
    if [[ $errors != - ]]; then
        note "$name $scenario: wrk reported errors: $errors"
    fi
    local cpu wall wrk_cpu other
    cpu=$(awk -v a="${before%% *}" -v b="${after%% *}" -v hz="$HZ" 'BEGIN {printf "%.2f", (b - a) / hz}')
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
    wrk_cpu=$(awk -v a="$wrk_before" -v b="$wrk_after" 'BEGIN {printf "%.2f", b - a}')
    # everything else that ran on the box meanwhile (the lead's build, tests...)
    other=$(awk -v a="$sys_before" -v b="$sys_after" -v hz="$HZ" -v s="$cpu" -v w="$wrk_cpu" \
        'BEGIN {o = (b - a) / hz - s - w; printf "%.2f", (o < 0) ? 0 : o}')
    if awk -v o="$other" -v w="$wall" 'BEGIN {exit !(o > 0.1 * w)}'; then
        note "$name $scenario: other processes used $other CPU-s of the box during the $wall s run; requests/s and latency are disturbed, req/CPU-s less so"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$name" "$rps" "$total" \
        "$p99" "$maxlat" "$cpu" "$wall" "$errors" "$wrk_cpu" "$other" >>"$RESULTS"
}

# ---------------------------------------------------------------- idle memory

IDLE_RESULTS=$TMP/idle.tsv
: >"$IDLE_RESULTS"

# measure_idle NAME PID PORT
measure_idle() {
    local name=$1 pid=$2 port=$3 out
    log "idle / $name: $IDLE_CONNS keep-alive connections"
    out=$("$PYTHON" "$BENCH_DIR/idle_conns.py" --host "$HOST" --port "$port" --pid "$pid" \
        --count "$IDLE_CONNS") || { note "idle_conns.py failed against $name"; FAILED=1; return 0; }
    echo "$out" >"$RAW_DIR/idle-$name.txt"
    local -A kv=()
    local line k v
    while IFS='=' read -r k v; do kv[$k]=$v; done <<<"$out"
    for line in conns_ok conns_open rss_before_kib rss_after_kib kib_per_conn open_seconds; do
        [[ -n ${kv[$line]:-} ]] || kv[$line]=nan
    done
    if [[ ${kv[conns_ok]} != "$IDLE_CONNS" || ${kv[conns_open]} != "${kv[conns_ok]}" ]]; then
        note "$name idle: ${kv[conns_ok]} of $IDLE_CONNS connections answered, ${kv[conns_open]} still open after settling"
    fi
    alive "$pid" || { note "$name DIED in the idle-connection phase"; FAILED=1; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "${kv[conns_ok]}" "${kv[conns_open]}" \
        "${kv[rss_before_kib]}" "${kv[rss_after_kib]}" "${kv[kib_per_conn]}" >>"$IDLE_RESULTS"
}

# ---------------------------------------------------------------- report

report() {
    local nexus_version nginx_version cpu_model
    nexus_version=$(timeout 2 "$NEXUS" version </dev/null 2>/dev/null | head -n 1 || true)
    nginx_version=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
    cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    echo "Nexus vs nginx - $(date -u '+%Y-%m-%d %H:%M UTC') - $(uname -r)"
    echo "CPU: ${cpu_model:-unknown}, $NCPU online; servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU"
    echo "nexus: $NEXUS ${nexus_version:+($nexus_version)}; nginx: $nginx_version; $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency (warm-up ${WARMUP}), pipeline depth $DEPTH; one worker each$( ((ROUNDS == 1)) || echo "; $ROUNDS rounds: medians of requests/s and p99, CPU-s summed")"
    echo "nexus binary built $(date -u -r "$NEXUS" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$NEXUS" | cut -c1-12)"
    echo "load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on the box skew requests/s more than req/CPU-s)"
    echo
    awk -F'\t' -v idle="$IDLE_RESULTS" '
    function ratio(a, b) { return (b > 0) ? a / b : 0 }
    function mark(ok) { return ok ? "met" : "NOT MET" }
    # median of the values in list[key, 1..cnt]
    function median(list, key, cnt,    i, j, t, v) {
        for (i = 1; i <= cnt; i++) v[i] = list[key, i]
        for (i = 2; i <= cnt; i++)
            for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
        return (cnt % 2) ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
    }
    {
        key = $1 SUBSEP $2
        if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
        r = ++runs[key]
        rpsl[key, r] = $3; p99l[key, r] = $5
        total[key] += $4; cpu[key] += $7; wall[key] += $8; wrk[key] += $10; oth[key] += $11
        if ($6 > mx[key]) mx[key] = $6
        if ($9 != "-") err[key] = (nerr[key]++ ? err[key] " | " : "") $9
    }
    END {
        # several rounds: medians of requests/s and p99, sums of requests and CPU
        for (k in runs) {
            rps[k] = median(rpsl, k, runs[k]); p99[k] = median(p99l, k, runs[k])
            rpc[k] = (cpu[k] > 0) ? total[k] / cpu[k] : 0
            if (!nerr[k]) err[k] = "-"
        }
        fmt = "%-22s %-6s %11s %8s %8s %6s %5s %11s %5s %6s  %s\n"
        printf fmt, "scenario", "server", "requests/s", "p99 ms", "max ms", "CPU-s", "CPU%", "req/CPU-s", "wrk%", "other", "errors"
        for (i = 1; i <= n; i++) {
            s = order[i]
            for (j = 1; j <= 2; j++) {
                sv = (j == 1) ? "nexus" : "nginx"; k = s SUBSEP sv
                if (!(k in rps)) continue
                printf "%-22s %-6s %11.0f %8.2f %8.2f %6.2f %4.0f%% %11.0f %4.0f%% %6.2f  %s\n", s, sv, rps[k], p99[k], mx[k], cpu[k], (wall[k] > 0 ? 100 * cpu[k] / wall[k] : 0), rpc[k], (wall[k] > 0 ? 100 * wrk[k] / wall[k] : 0), oth[k], err[k]
            }
        }
        print ""
        print "Nexus / nginx"
        fmt = "%-22s %10s %11s %22s\n"
        printf fmt, "scenario", "req/s", "req/CPU-s", "p99 nexus vs nginx"
        for (i = 1; i <= n; i++) {
            s = order[i]; a = s SUBSEP "nexus"; b = s SUBSEP "nginx"
            if (!(a in rps) || !(b in rps)) continue
            R[s] = ratio(rps[a], rps[b]); C[s] = ratio(rpc[a], rpc[b])
            P[s] = (p99[a] <= p99[b]); have[s] = 1
            printf "%-22s %9.2fx %10.2fx %10.2f vs %.2f ms\n", s, R[s], C[s], p99[a], p99[b]
        }
        print ""
        print "Targets (issue 2, item 9)"
        fmt = "  %-52s %9s  %s\n"
        pl = order[2]
        for (i = 1; i <= n; i++) if (order[i] ~ /pipelined/) pl = order[i]
        if (have[pl]) {
            printf fmt, pl ": req/s >= 3x nginx", sprintf("%.2fx", R[pl]), mark(R[pl] >= 3)
            printf fmt, pl ": req/CPU-s >= 10x nginx", sprintf("%.2fx", C[pl]), mark(C[pl] >= 10)
        }
        for (i = 1; i <= n; i++) {
            s = order[i]
            if (s == pl || !have[s]) continue
            printf fmt, s ": req/CPU-s >= 1.2x nginx", sprintf("%.2fx", C[s]), mark(C[s] >= 1.2)
        }
        for (i = 1; i <= n; i++) {
            s = order[i]; a = s SUBSEP "nexus"; b = s SUBSEP "nginx"
            if (!have[s]) continue
            printf fmt, s ": p99 no worse than nginx", sprintf("%.2f/%.2f", p99[a], p99[b]), mark(P[s])
        }
        m = 0
        while ((getline line < idle) > 0) {
            split(line, f, "\t"); m++
            iname[m] = f[1]; iok[m] = f[2]; iopen[m] = f[3]; ib[m] = f[4]; ia[m] = f[5]; ik[m] = f[6]
            if (f[1] == "nexus") nexus_kib = f[6]
        }
        if (m > 0)
            printf fmt, "idle keep-alive: < 2 KiB per connection", sprintf("%.2f KiB", nexus_kib), mark(nexus_kib != "nan" && nexus_kib + 0 < 2)
        if (m > 0) {
            print ""
            print "Idle keep-alive connections (one GET /plaintext each, then idle; VmRSS of master + workers)"
            fmt = "%-6s %8s %11s %16s %16s %10s\n"
            printf fmt, "server", "opened", "still open", "RSS before KiB", "RSS after KiB", "KiB/conn"
            for (i = 1; i <= m; i++)
                printf "%-6s %8s %11s %16s %16s %10.2f\n", iname[i], iok[i], iopen[i], ib[i], ia[i], ik[i]
        }
    }' "$RESULTS"
    if [[ -s $NOTES ]]; then
        echo
        echo "Notes"
        sed 's/^/  - /' "$NOTES"
    fi
}

# ---------------------------------------------------------------- main

# Room for twice wrk's connections: those of the warm-up may still be closing
# when the timed run connects (nginx then logs "worker_connections are not
# enough" and wrk counts read errors).
BENCH_WC=$((2 * CONNS + 100))
NEXUS_BENCH_ARGS=()
if ((BENCH_WC > 1000)); then
    NEXUS_BENCH_ARGS=(--worker-connections "$BENCH_WC")
fi
NGINX_BENCH_WC=$((BENCH_WC > 1024 ? BENCH_WC : 1024))

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "starting nexus and nginx (servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU)"
PORT_OF[nexus]=$(free_port)
start_nexus bench "${PORT_OF[nexus]}" "${NEXUS_BENCH_ARGS[@]}" || exit 1
PID_OF[nexus]=$SERVER_PID
PORT_OF[nginx]=$(free_port)
start_nginx bench "${PORT_OF[nginx]}" "$NGINX_BENCH_WC" || exit 1
PID_OF[nginx]=$SERVER_PID

for spec in "plaintext /plaintext 0" "plaintext-pipelined /plaintext 1" "json /json 0"; do
    read -r scenario path pipe <<<"$spec"
    [[ $scenario == plaintext-pipelined ]] && scenario=plaintext-pipelined$DEPTH
    for ((round = 1; round <= ROUNDS; round++)); do
        run_wrk "$scenario" nexus "$path" "$pipe" "$round"
        run_wrk "$scenario" nginx "$path" "$pipe" "$round"
    done
done

for name in nexus nginx; do
    status=0
    stop_server "${PID_OF[$name]}" "$name" || status=$?
    if ((status != 0)); then
        note "$name exited with status $status on SIGTERM after the throughput runs"
    fi
done

if ((IDLE_CONNS > 0)); then
    port=$(free_port)
    start_nexus idle "$port" --worker-connections $((IDLE_CONNS + 1000)) || exit 1
    measure_idle nexus "$SERVER_PID" "$port"
    stop_server "$SERVER_PID" nexus || note "nexus (idle instance) exited with status $? on SIGTERM"
    port=$(free_port)
    start_nginx idle "$port" $((IDLE_CONNS + 1000)) || exit 1
    measure_idle nginx "$SERVER_PID" "$port"
    stop_server "$SERVER_PID" nginx || true
fi

save_logs
ERR_RE='level=(warn|error|fatal|crit)|sanitizer|segv|abort|core dumped'
if grep -qiE "$ERR_RE" "$TMP"/nexus-*.log 2>/dev/null; then
    note "nexus logged $(cat "$TMP"/nexus-*.log | grep -ciE "$ERR_RE") warning/error lines, see $RAW_DIR/nexus-*.log; first: $(grep -hiE "$ERR_RE" "$TMP"/nexus-*.log | head -n 1)"
fi

REPORTED=1
report | tee "$OUT"
log "table saved to $OUT; raw wrk output and server logs in $RAW_DIR/"

# The database shapes: Nexus vs FastAPI and pgbench on a throwaway PostgreSQL.
if [[ ${BENCH_DB:-1} != 0 ]]; then
    BENCH_DB_OUT=${BENCH_DB_OUT:-$OUT_DIR/db-results.txt} "$BENCH_DIR/db.sh" "$NEXUS" || FAILED=1
fi
exit "$FAILED"
