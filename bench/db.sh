#!/usr/bin/env bash
# Nexus vs FastAPI on the TechEmpower database shapes, and PostgreSQL's own ceiling
# (pgbench -S); Nexus's cached queries (memory cache, and a throwaway Redis) against its
# uncached /queries. Not a test: targets that are not met are printed; the exit status is
# non-zero only when PostgreSQL or a server fails to start or answers an endpoint wrongly,
# a server dies during the run, or wrk or pgbench fails.
#
#   bench/db.sh /abs/path/to/build/nexus         (bench/run.sh calls it at its end)
#
# Environment overrides (defaults in brackets):
#   BENCH_DURATION [10s]  BENCH_WARMUP [2s, 0 = none]  BENCH_THREADS [1]  BENCH_ROUNDS [1]
#   BENCH_DB_CONNECTIONS [64: wrk -c]  BENCH_DB_POOL [16: database connections per server
#   and pgbench's clients]  BENCH_DB_QUERIES [20]  BENCH_DB_SERVERS ["nexus fastapi"]
#   BENCH_DB_SHAPES ["db queries cached fortunes updates"; pgbench runs with db; cached
#   runs on Nexus only, as nexus (memory cache) and nexus-redis (Redis cache)]
#   BENCH_SERVER_CPU [0]  BENCH_CLIENT_CPU [1]  (PostgreSQL is not pinned)
#   BENCH_PYTHON [/usr/bin/python3]  BENCH_PG_BIN [/usr/lib/postgresql/15/bin]
#   BENCH_DB_OUT [<dir of nexus>/bench/db-results.txt]
# See bench/README.md for what is measured and how to read the table.

set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 /abs/path/to/nexus" >&2; exit 2; }

NEXUS=$1
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
THREADS=${BENCH_THREADS:-1}
ROUNDS=${BENCH_ROUNDS:-1}
CONNS=${BENCH_DB_CONNECTIONS:-64}
POOL=${BENCH_DB_POOL:-16}
QUERIES=${BENCH_DB_QUERIES:-20}
read -r -a SERVERS <<<"${BENCH_DB_SERVERS:-nexus fastapi}"
read -r -a SHAPES <<<"${BENCH_DB_SHAPES:-db queries cached fortunes updates}"
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
PG_BIN=${BENCH_PG_BIN:-/usr/lib/postgresql/15/bin}
HOST=127.0.0.1
PG_USER=bench
PG_DB=bench
REDIS_PASSWORD=bench

[[ -x $NEXUS ]] || { echo "bench-db: $NEXUS is not an executable" >&2; exit 1; }
NEXUS=$(cd "$(dirname "$NEXUS")" && pwd)/$(basename "$NEXUS")
PLUGINS_DIR=$(dirname "$NEXUS")/plugins
OUT=${BENCH_DB_OUT:-$(dirname "$NEXUS")/bench/db-results.txt}
RAW_DIR=$(dirname "$OUT")/raw

for tool in wrk taskset curl "$PYTHON" "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/psql" \
    "$PG_BIN/pgbench"; do
    command -v "$tool" >/dev/null || {
        echo "bench-db: $tool not found (scripts/install-deps.sh bench)" >&2
        exit 1
    }
done
# the cached shape: Nexus with the memory cache, and nexus-redis against a throwaway Redis
CACHED=0
if [[ " ${SHAPES[*]} " == *" cached "* ]]; then
    if [[ " ${SERVERS[*]} " == *" nexus "* ]]; then
        CACHED=1
    else
        echo "bench-db: warning: the cached shape runs on Nexus only; skipped (nexus not in BENCH_DB_SERVERS)" >&2
    fi
fi
if ((CACHED)); then
    for tool in redis-server redis-cli; do
        command -v "$tool" >/dev/null || {
            echo "bench-db: $tool not found (Debian: redis-server; or leave cached out of BENCH_DB_SHAPES)" >&2
            exit 1
        }
    done
fi
if [[ " ${SERVERS[*]} " == *" fastapi "* ]] &&
    ! "$PYTHON" -c 'import fastapi, uvicorn, asyncpg' 2>/dev/null; then
    echo "bench-db: $PYTHON lacks fastapi, uvicorn or asyncpg (scripts/install-deps.sh bench)" >&2
    exit 1
fi

NCPU=$(getconf _NPROCESSORS_ONLN)
if ((NCPU < 2)); then
    echo "bench-db: warning: only $NCPU CPU; servers, wrk and PostgreSQL share it" >&2
    SERVER_CPU=0 CLIENT_CPU=0
fi
HZ=$(getconf CLK_TCK)

# Short: PostgreSQL's Unix socket lives in it (107-byte limit).
TMP=$(mktemp -d /tmp/nexus-bench-db.XXXXXX)
mkdir -p "$RAW_DIR"
rm -f "$RAW_DIR"/db-*
RESULTS=$TMP/results.tsv
NOTES=$TMP/notes.txt
: >"$RESULTS"
: >"$NOTES"
STARTED=() # server pids still to stop on exit
PG_UP=0
FAILED=0
REPORTED=0

log() { echo "bench-db: [${SECONDS}s] $*" >&2; }

# note, alive, proc_scan, tree_pids, busy_ticks, children_cpu, free_port, stop_server
# shellcheck source=bench/proc.sh
. "$BENCH_DIR/proc.sh"

# ---------------------------------------------------------------- PostgreSQL

# A throwaway PostgreSQL 15 in $TMP/pg, on 127.0.0.1 only, tuned like a benchmark box
# (no fsync): the servers' and pgbench's connections all go to it over TCP. As root it
# runs as the postgres user (it refuses root).
PG_DIR=$TMP/pg
as_pg() {
    if (($(id -u) == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_ctl() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" "$@"; }

psql_bench() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U "$PG_USER" "$@"; }

pg_start() {
    mkdir -p "$PG_DIR"
    if (($(id -u) == 0)); then
        chmod o+x "$TMP"
        chown postgres "$PG_DIR"
    fi
    if ! as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" --auth=trust -E UTF8 \
        --no-locale --no-sync --no-instructions >"$TMP/initdb.log" 2>&1; then
        tail -n 20 "$TMP/initdb.log" >&2
        echo "bench-db: initdb failed" >&2
        return 1
    fi
    PG_PORT=$(free_port)
    # the servers' pools, pgbench's clients, psql
    local max=$((3 * POOL + 20 > 300 ? 3 * POOL + 20 : 300))
    cat >>"$PG_DIR/data/postgresql.conf" <<EOF

# bench/db.sh: a throwaway benchmark server
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
max_connections = $max
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
EOF
    if ! pg_ctl -w -t 60 start >/dev/null 2>"$TMP/pg_ctl.err"; then
        cat "$TMP/pg_ctl.err" >&2
        tail -n 20 "$PG_DIR/server.log" >&2 || true
        echo "bench-db: PostgreSQL did not start" >&2
        return 1
    fi
    PG_UP=1
    PG_PID=$(head -n 1 "$PG_DIR/data/postmaster.pid")
    psql_bench -d postgres -c "CREATE DATABASE $PG_DB" -c "CREATE DATABASE pgbench"
    DB_URL="postgresql://$PG_USER@$HOST:$PG_PORT/$PG_DB"
}

# shellcheck disable=SC2317  # reached through the trap
pg_stop() {
    ((PG_UP)) || return 0
    pg_ctl -m fast -w -t 60 stop >/dev/null 2>&1 || pg_ctl -m immediate -w stop >/dev/null 2>&1 ||
        note "PostgreSQL (pid ${PG_PID:-?}) did not stop"
    PG_UP=0
}

# The tables of the TechEmpower shapes, for when `nexus migrate` cannot make them (the
# hello plugin's migrations are the reference; this is the same schema, unquoted names).
seed_tables() {
    psql_bench -d "$PG_DB" <<'EOF'
CREATE TABLE IF NOT EXISTS World (id integer PRIMARY KEY, randomNumber integer NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS Fortune (id integer PRIMARY KEY, message varchar(2048) NOT NULL);
INSERT INTO World (id, randomNumber)
    SELECT x, 1 + floor(random() * 10000)::integer FROM generate_series(1, 10000) AS x
    ON CONFLICT DO NOTHING;
INSERT INTO Fortune (id, message) VALUES
    (1, 'fortune: No such file or directory'),
    (2, 'A computer scientist is someone who fixes things that aren''t broken.'),
    (3, 'After enough decimal places, nobody gives a damn.'),
    (4, 'A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1'),
    (5, 'A computer program does what you tell it to do, not what you want it to do.'),
    (6, 'Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen'),
    (7, 'Any program that runs right is obsolete.'),
    (8, 'A list is only as strong as its weakest link. — Donald Knuth'),
    (9, 'Feature: A bug with seniority.'),
    (10, 'Computers make very fast, very accurate mistakes.'),
    (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
    (12, 'フレームワークのベンチマーク')
    ON CONFLICT DO NOTHING;
VACUUM ANALYZE World;
VACUUM ANALYZE Fortune;
EOF
}

# "WORLD FORTUNE" row counts, or nothing when a table is missing.
table_counts() {
    psql_bench -d "$PG_DB" -tA -c "SELECT (SELECT count(*) FROM World) || ' ' || (SELECT count(*) FROM Fortune)" \
        2>/dev/null || true
}

make_tables() {
    local counts
    if NEXUS_DATABASE_URL=$DB_URL "$NEXUS" migrate --plugins-dir "$PLUGINS_DIR" \
        >"$TMP/migrate.log" 2>&1; then
        counts=$(table_counts)
        if [[ $counts == "10000 12" ]]; then
            SCHEMA_FROM="nexus migrate"
            psql_bench -d "$PG_DB" -c "VACUUM ANALYZE"
            return 0
        fi
        note "nexus migrate succeeded but World/Fortune hold '${counts:-no tables}' rows, not '10000 12'; seeding them with psql"
    else
        note "nexus migrate failed ($(tail -n 1 "$TMP/migrate.log")); tables made with psql instead"
    fi
    seed_tables
    counts=$(table_counts)
    [[ $counts == "10000 12" ]] || { echo "bench-db: seeding failed: rows '$counts'" >&2; return 1; }
    SCHEMA_FROM="psql (bench/db.sh)"
}

# ---------------------------------------------------------------- Redis

# A throwaway Redis for nexus-redis: 127.0.0.1 on a free port, a password, no persistence,
# its files in $TMP/redis, not pinned (like PostgreSQL). Not daemonized: a child
# of this shell, in STARTED, so the exit trap stops it like a server.
REDIS_PID=
redis_cli() { redis-cli -h "$HOST" -p "$REDIS_PORT" -a "$REDIS_PASSWORD" --no-auth-warning "$@"; }

redis_start() {
    local i
    mkdir -p "$TMP/redis"
    REDIS_PORT=$(free_port)
    redis-server --bind "$HOST" --port "$REDIS_PORT" --dir "$TMP/redis" --logfile "$TMP/redis.log" \
        --daemonize no --save '' --appendonly no --requirepass "$REDIS_PASSWORD" </dev/null \
        >>"$TMP/redis-stdout.log" 2>&1 &
    REDIS_PID=$!
    STARTED+=("$REDIS_PID")
    for ((i = 0; i < 200; i++)); do
        if ! alive "$REDIS_PID"; then
            tail -n 20 "$TMP/redis-stdout.log" "$TMP/redis.log" >&2 || true
            echo "bench-db: redis-server exited while starting" >&2
            return 1
        fi
        [[ $(redis_cli ping 2>/dev/null) == PONG ]] && return 0
        sleep 0.1
    done
    tail -n 20 "$TMP/redis.log" >&2 || true
    echo "bench-db: redis-server did not answer PING within 20 s" >&2
    return 1
}

redis_stop() {
    [[ -n $REDIS_PID ]] || return 0
    stop_server "$REDIS_PID" redis-server || note "redis-server exited with status $? on SIGTERM"
    REDIS_PID=
}

# redis_keys: the number of keys in Redis's database 0 (nothing on error)
redis_keys() { redis_cli dbsize 2>/dev/null | tr -dc '0-9'; }

# ---------------------------------------------------------------- servers

# check_endpoints PORT NAME CACHED: the four shapes (and /cached-queries when CACHED is 1)
# answer as TechEmpower's rules ask, and /updates really wrote its rows. Wrong main shapes
# fail; edge cases become notes.
check_endpoints() {
    local port=$1 name=$2 cached=$3 out rc=0
    out=$(BENCH_DATABASE_URL=$DB_URL "$PYTHON" - "$HOST" "$port" "$QUERIES" "$cached" <<'EOF'
import asyncio, html, json, re, sys, urllib.request
import asyncpg, os

host, port, nq, cached = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
fatal, edge = [], []

def get(path):
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()

def world(o):
    return (isinstance(o, dict) and set(o) == {"id", "randomNumber"}
            and all(isinstance(o[k], int) and 1 <= o[k] <= 10000 for k in o))

def worlds(path, want, where):
    try:
        st, ct, body = get(path)
        rows = json.loads(body)
    except Exception as e:
        where.append(f"GET {path}: {e}")
        return []
    if st != 200 or not ct.startswith("application/json"):
        where.append(f"GET {path}: {st} {ct}")
    if not (isinstance(rows, list) and len(rows) == want and all(map(world, rows))):
        where.append(f"GET {path}: want {want} World objects, got {body[:120]!r}")
        return []
    return rows

try:
    st, ct, body = get("/db")
    if st != 200 or not ct.startswith("application/json") or not world(json.loads(body)):
        fatal.append(f"GET /db: {st} {ct} {body[:120]!r}")
except Exception as e:
    fatal.append(f"GET /db: {e}")
worlds(f"/queries?queries={nq}", nq, fatal)
for q, want in (("0", 1), ("foo", 1), ("501", 500), ("", 1)):
    worlds(f"/queries?queries={q}", want, edge)
if cached:
    # twice: the second answer comes (partly) from the cache
    worlds(f"/cached-queries?count={nq}", nq, fatal)
    worlds(f"/cached-queries?count={nq}", nq, fatal)
    for q, want in (("0", 1), ("foo", 1), ("501", 500), ("", 1)):
        worlds(f"/cached-queries?count={q}", want, edge)
try:
    st, ct, body = get("/fortunes")
    text = body.decode()
    rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", text)
    msgs = [html.unescape(m) for _, m in rows]
    if st != 200 or not ct.startswith("text/html"):
        fatal.append(f"GET /fortunes: {st} {ct}")
    if len(rows) != 13 or msgs != sorted(msgs):
        fatal.append(f"GET /fortunes: want 13 rows sorted by message, got {len(rows)}: {text[:200]!r}")
    if "&lt;script&gt;" not in text or "<script>" in text:
        fatal.append("GET /fortunes: the <script> fortune is not escaped")
    if "Additional fortune added at request time." not in msgs or "フレームワークのベンチマーク" not in msgs:
        fatal.append("GET /fortunes: the added or the UTF-8 fortune is missing")
    if "charset=utf-8" not in ct.lower().replace(" ", ""):
        edge.append(f"GET /fortunes: Content-Type {ct!r} names no charset=utf-8")
except Exception as e:
    fatal.append(f"GET /fortunes: {e}")
rows = worlds(f"/updates?queries={nq}", nq, fatal)
if rows:
    async def stored():
        c = await asyncpg.connect(os.environ["BENCH_DATABASE_URL"])
        try:
            got = await c.fetch("SELECT id, randomnumber FROM world WHERE id = ANY($1::int[])",
                                [r["id"] for r in rows])
        finally:
            await c.close()
        return {r[0]: r[1] for r in got}
    db = asyncio.run(stored())
    bad = [r for r in rows if db.get(r["id"]) != r["randomNumber"]]
    if bad:
        fatal.append(f"GET /updates: {len(bad)} of {len(rows)} rows not stored as answered, e.g. {bad[0]} vs {db.get(bad[0]['id'])}")
for f in fatal:
    print("fatal", f)
for n in edge if not fatal else []:
    print("note", n)
EOF
    ) || rc=$?
    local line
    while IFS= read -r line; do
        case $line in
        note\ *) note "$name: ${line#note }" ;;
        fatal\ *) echo "bench-db: $name: ${line#fatal }" >&2; rc=1 ;;
        esac
    done <<<"$out"
    return "$rc"
}

# wait_ready PID PORT NAME LOG CACHED: GET /health is 200 and the shapes answer correctly.
wait_ready() {
    local pid=$1 port=$2 name=$3 log=$4 cached=$5 i code=
    for ((i = 0; i < 200; i++)); do
        if ! alive "$pid"; then
            echo "bench-db: $name exited during start-up; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            return 1
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HOST:$port/health" || true)
        [[ $code == 200 ]] && break
        sleep 0.1
    done
    if [[ $code != 200 ]]; then
        echo "bench-db: $name: GET /health did not answer 200 within 20 s (last: $code); log:" >&2
        tail -n 20 "$log" >&2 || true
        return 1
    fi
    check_endpoints "$port" "$name" "$cached" || { tail -n 20 "$log" >&2 || true; return 1; }
}

# start_server NAME PORT: sets SERVER_PID. All on SERVER_CPU, one worker each, a pool
# of exactly POOL connections each. nexus has the memory cache, nexus-redis the Redis of
# redis_start.
start_server() {
    local name=$1 port=$2 log=$TMP/$1.log cached=0
    local -a cache_env=(NEXUS_CACHE_TYPE=memory)
    [[ $name == nexus* ]] && cached=$CACHED
    if [[ $name == nexus-redis ]]; then
        cache_env=(NEXUS_CACHE_TYPE=redis "NEXUS_CACHE_REDIS_HOST=$HOST" "NEXUS_CACHE_REDIS_PORT=$REDIS_PORT"
            "NEXUS_CACHE_REDIS_PASSWORD=$REDIS_PASSWORD")
    fi
    if [[ $name == nexus* ]]; then
        env "${cache_env[@]}" \
            NEXUS_DATABASE_URL="$DB_URL" NEXUS_DATABASE_POOL_SIZE="$POOL" NEXUS_DATABASE_MAX_OVERFLOW=0 \
            NEXUS_SERVER_KEEPALIVE_TIMEOUT=300s \
            taskset -c "$SERVER_CPU" "$NEXUS" serve --host "$HOST" --port "$port" --workers 1 \
            --access-log off --plugins-dir "$PLUGINS_DIR" >>"$log" 2>&1 &
    else
        BENCH_DATABASE_URL=$DB_URL BENCH_DB_POOL=$POOL \
            taskset -c "$SERVER_CPU" "$PYTHON" -m uvicorn --app-dir "$BENCH_DIR" fastapi_app:app \
            --host "$HOST" --port "$port" --workers 1 --no-access-log --log-level warning \
            >>"$log" 2>&1 &
    fi
    local pid=$!
    STARTED+=("$pid")
    wait_ready "$pid" "$port" "$name" "$log" "$cached" || return 1
    SERVER_PID=$pid
}

# shellcheck disable=SC2317  # reached through the trap
cleanup() {
    local rc=$? pid f
    trap - EXIT INT TERM
    for pid in "${STARTED[@]}"; do
        stop_server "$pid" server || true
    done
    pg_stop
    for f in "$TMP"/*.log "$PG_DIR/server.log"; do
        [[ -e $f ]] && cp "$f" "$RAW_DIR/db-$(basename "$f")"
    done
    if ((!REPORTED)) && [[ -s $RESULTS ]]; then
        echo "bench-db: failed; partial results:" >&2
        report | tee "$OUT" || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- measuring

to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0) print "nan"; else printf "%.3f", n * f
    }'
}

# wrk's duration ("10s", "2m", "90") in whole seconds, for pgbench -T
to_seconds() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "" || u == "s") ? 1 : (u == "m") ? 60 : (u == "h") ? 3600 : 1
        s = int(n * f + 0.5); print (s < 1) ? 1 : s
    }'
}

declare -A PID_OF PORT_OF

# measure CMD...: runs CMD (wrk or pgbench) and sets M_APP M_PG M_CACHE M_CLIENT M_OTHER
# (CPU-s) and M_WALL (s); M_APP is the tree of $M_ROOT when set, M_CACHE Redis's while it
# runs.
measure() {
    local app0=0 app1=0 pg0 pg1 rd0=0 rd1=0 busy0 busy1 cl0 t0 t1 rc=0 s
    if [[ -n ${M_ROOT:-} ]]; then s=$(proc_scan "$M_ROOT"); app0=${s%% *}; fi
    if [[ -n $REDIS_PID ]]; then s=$(proc_scan "$REDIS_PID"); rd0=${s%% *}; fi
    s=$(proc_scan "$PG_PID"); pg0=${s%% *}
    busy0=$(busy_ticks)
    children_cpu
    cl0=$CHILD_CPU
    t0=$(date +%s.%N)
    "$@" || rc=$?
    t1=$(date +%s.%N)
    children_cpu
    busy1=$(busy_ticks)
    s=$(proc_scan "$PG_PID"); pg1=${s%% *}
    if [[ -n $REDIS_PID ]]; then s=$(proc_scan "$REDIS_PID"); rd1=${s%% *}; fi
    if [[ -n ${M_ROOT:-} ]]; then s=$(proc_scan "$M_ROOT"); app1=${s%% *}; fi
    read -r M_APP M_PG M_CACHE M_CLIENT M_OTHER M_WALL < <(awk -v a0="$app0" -v a1="$app1" \
        -v p0="$pg0" -v p1="$pg1" -v r0="$rd0" -v r1="$rd1" -v b0="$busy0" -v b1="$busy1" \
        -v c0="$cl0" -v c1="$CHILD_CPU" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN {
            a = (a1 - a0) / hz; p = (p1 - p0) / hz; r = (r1 - r0) / hz; c = c1 - c0
            o = (b1 - b0) / hz - a - p - r - c
            printf "%.2f %.2f %.2f %.2f %.2f %.2f\n", a, p, r, c, (o < 0) ? 0 : o, t1 - t0 }')
    return "$rc"
}

# run_wrk SCENARIO NAME PATH ROUND
run_wrk() {
    local scenario=$1 name=$2 path=$3 round=$4
    local pid=${PID_OF[$name]} rc=0
    local url="http://$HOST:${PORT_OF[$name]}$path"
    local raw=$RAW_DIR/db-wrk-$scenario-$name-$round.txt
    if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
        taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$url" >"$raw.warmup" 2>&1 || true
    fi
    log "$scenario / $name (round $round/$ROUNDS): wrk -t$THREADS -c$CONNS -d$DURATION $url"
    local tree0 tree1
    tree0=$(proc_scan "$pid")
    M_ROOT=$pid measure taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" \
        --latency "$url" >"$raw" 2>&1 || rc=$?
    tree1=$(proc_scan "$pid")
    if ((rc != 0)) || ! grep -q '^Requests/sec:' "$raw"; then
        echo "bench-db: wrk failed (exit $rc) for $scenario / $name:" >&2
        cat "$raw" >&2
        exit 1
    fi
    if ! alive "$pid"; then
        echo "bench-db: $name DIED during $scenario (pid $pid); last lines of its log:" >&2
        tail -n 20 "$TMP/$name.log" >&2 || true
        exit 1
    fi
    [[ ${tree0#* } == "${tree1#* }" ]] ||
        note "$name: process tree changed during $scenario: a worker was replaced"
    local rps p99 maxlat non2xx sockerr errors=
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$raw")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2; exit}' "$raw")")
    maxlat=$(to_ms "$(awk '$1 == "Latency" {print $4; exit}' "$raw")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$raw")
    sockerr=$(awk -F': ' '/Socket errors:/ {print $2}' "$raw")
    [[ -n $non2xx ]] && errors="non-2xx $non2xx"
    [[ -n $sockerr ]] && errors="${errors:+$errors; }$sockerr"
    [[ -n $errors ]] && note "$name $scenario (round $round): wrk reported errors: $errors"
    other_note "$name $scenario (round $round)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$name" "$rps" "$p99" \
        "$maxlat" "$M_APP" "$M_PG" "$M_CLIENT" "$M_OTHER" "$M_WALL" "${errors:--}" "$M_CACHE" >>"$RESULTS"
}

# warm_cache NAME: fills NAME's cache with all 10000 World rows before the cached shape is
# measured: 2-second wrk runs of /cached-queries?count=500 until at least 200000 rows were
# asked for (a given id is then never asked with probability e^-20). nexus-redis must then
# have put them in Redis (>= 10000 keys): none at all means it is not using Redis.
warm_cache() {
    local name=$1 i n total=0 keys
    local url="http://$HOST:${PORT_OF[$name]}/cached-queries?count=500"
    local raw=$RAW_DIR/db-wrk-warm-cache-$name.txt
    : >"$raw"
    log "warming $name's cache: wrk -t$THREADS -c$CONNS -d2s $url until 400 requests"
    for ((i = 0; i < 10 && total < 400; i++)); do
        taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d2s "$url" >"$raw.part" 2>&1 || true
        cat "$raw.part" >>"$raw"
        n=$(awk '/ requests in / {print $1; exit}' "$raw.part")
        total=$((total + ${n:-0}))
        grep -q 'Non-2xx or 3xx responses:' "$raw.part" && note "$name: cache warm-up got non-2xx answers (raw/$(basename "$raw"))"
    done
    rm -f "$raw.part"
    if ((total < 400)); then
        echo "bench-db: $name: cache warm-up made only $total requests of 500 rows in $i runs ($raw)" >&2
        exit 1
    fi
    alive "${PID_OF[$name]}" || { echo "bench-db: $name DIED during its cache warm-up" >&2; exit 1; }
    if [[ $name == nexus-redis ]]; then
        keys=$(redis_keys)
        if ((${keys:-0} == 0)); then
            echo "bench-db: nexus-redis answered $total warm-up requests but Redis holds no keys: it does not use the Redis cache" >&2
            tail -n 20 "$TMP/$name.log" >&2 || true
            exit 1
        fi
        ((keys >= 10000)) || note "nexus-redis: Redis holds only $keys keys after the warm-up, not all 10000 World rows"
        log "Redis holds $keys keys"
    fi
}

other_note() {
    if awk -v o="$M_OTHER" -v w="$M_WALL" 'BEGIN {exit !(o > 0.1 * w)}'; then
        note "$1: other processes used $M_OTHER CPU-s of the box during the $M_WALL s run; the numbers are disturbed"
    fi
}

# run_pgbench ROUND: the ceiling for /db - PostgreSQL answering the same primary-key
# SELECT to POOL clients, with nothing between (pgbench on the app servers' core).
run_pgbench() {
    local round=$1 rc=0 secs warm
    local raw=$RAW_DIR/db-pgbench-$round.txt
    local -a cmd=(taskset -c "$SERVER_CPU" "$PG_BIN/pgbench" -h "$HOST" -p "$PG_PORT" -U "$PG_USER"
        -n -S -M prepared -c "$POOL" -j 1)
    secs=$(to_seconds "$DURATION")
    if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
        warm=$(to_seconds "$WARMUP")
        "${cmd[@]}" -T "$warm" pgbench >"$raw.warmup" 2>&1 || true
    fi
    log "db / pgbench (round $round/$ROUNDS): pgbench -S -M prepared -c $POOL -j 1 -T $secs"
    M_ROOT='' measure "${cmd[@]}" -T "$secs" pgbench >"$raw" 2>&1 || rc=$?
    local tps
    tps=$(awk '/^tps = / {print $3; exit}' "$raw")
    if ((rc != 0)) || [[ -z $tps ]]; then
        echo "bench-db: pgbench failed (exit $rc):" >&2
        cat "$raw" >&2
        exit 1
    fi
    other_note "pgbench (round $round)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' db pgbench-S "$tps" nan nan \
        0 "$M_PG" "$M_CLIENT" "$M_OTHER" "$M_WALL" - "$M_CACHE" >>"$RESULTS"
}

# ---------------------------------------------------------------- report

report() {
    local nexus_version pg_version py_versions
    nexus_version=$(timeout 2 "$NEXUS" version </dev/null 2>/dev/null | head -n 1 || true)
    pg_version=$("$PG_BIN/postgres" --version 2>/dev/null | sed 's/^postgres (PostgreSQL) //')
    py_versions=$("$PYTHON" -c 'import sys, fastapi, uvicorn, asyncpg; print("python %d.%d.%d, fastapi %s, uvicorn %s, asyncpg %s" % (sys.version_info[:3] + (fastapi.__version__, uvicorn.__version__, asyncpg.__version__)))' 2>/dev/null || echo "no fastapi")
    echo "Nexus vs FastAPI, database shapes - $(date -u '+%Y-%m-%d %H:%M UTC') - $(uname -r)"
    echo "CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $NCPU online; app servers (and pgbench) on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU, PostgreSQL unpinned"
    echo "nexus: $NEXUS ${nexus_version:+($nexus_version)}, built $(date -u -r "$NEXUS" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$NEXUS" | cut -c1-12)"
    echo "fastapi: $py_versions; ${FASTAPI_RUNS:-not run}"
    echo "PostgreSQL $pg_version (fsync off, shared_buffers 256MB), tables from ${SCHEMA_FROM:-?}; $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency (warm-up $WARMUP); one worker each, pool of $POOL database connections each; pgbench -S -M prepared -c $POOL -j 1$( ((ROUNDS == 1)) || echo "; $ROUNDS rounds: medians")"
    if grep -q '^cached' "$RESULTS"; then
        echo "cached: nexus with cache.type memory (its shared memory segment), nexus-redis with cache.type redis on a throwaway $(redis-server --version | awk '{print $1, $3}' | sed 's/v=//') (127.0.0.1, password, no persistence, unpinned); both warmed with all 10000 rows first"
    fi
    echo "load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    awk -F'\t' -v Q="$QUERIES" '
    function median(list, key, cnt,    i, j, t, v) {
        for (i = 1; i <= cnt; i++) v[i] = list[key, i]
        for (i = 2; i <= cnt; i++)
            for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
        return (cnt % 2) ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
    }
    function mark(ok) { return ok ? "met" : "NOT MET" }
    {
        key = $1 SUBSEP $2
        if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
        if (!(key in runs)) { sv[$1] = sv[$1] " " $2 }
        r = ++runs[key]
        rpsl[key, r] = $3; p99l[key, r] = $4
        if ($5 != "nan" && $5 > mx[key]) mx[key] = $5
        app[key] += $6; pg[key] += $7; cl[key] += $8; oth[key] += $9; wall[key] += $10; rd[key] += $12
        req[key] += $3 * $10
        if ($11 != "-") err[key] = (nerr[key]++ ? err[key] " | " : "") $11
    }
    END {
        fmt = "%-10s %-11s %11s %8s %8s %7s %7s %7s %11s %6s  %s\n"
        printf fmt, "scenario", "server", "requests/s", "p99 ms", "max ms", "app CPU", "pg CPU", "client", "req/app-CPU", "other", "errors"
        for (i = 1; i <= n; i++) {
            s = order[i]; m = split(substr(sv[s], 2), names, " ")
            for (j = 1; j <= m; j++) {
                k = s SUBSEP names[j]
                rps[k] = median(rpsl, k, runs[k]); p99[k] = median(p99l, k, runs[k])
                rpc[k] = (app[k] > 0) ? req[k] / app[k] : 0
                w = wall[k]
                pct = "%6.0f%%"
                printf "%-10s %-11s %11.0f %8s %8s %7s %7s %7s %11s %6.2f  %s\n", s, names[j], rps[k], \
                    (p99[k] == "nan") ? "-" : sprintf("%.2f", p99[k]), \
                    (names[j] ~ /^pgbench/) ? "-" : sprintf("%.2f", mx[k]), \
                    (app[k] > 0 && w > 0) ? sprintf(pct, 100 * app[k] / w) : "-", \
                    (w > 0) ? sprintf(pct, 100 * pg[k] / w) : "-", \
                    (w > 0) ? sprintf(pct, 100 * cl[k] / w) : "-", \
                    (app[k] > 0) ? sprintf("%.0f", req[k] / app[k]) : "-", oth[k], nerr[k] ? err[k] : "-"
            }
        }
        print ""
        print "Nexus / FastAPI"
        printf "%-10s %10s %26s\n", "scenario", "req/s", "p99 nexus vs fastapi"
        for (i = 1; i <= n; i++) {
            s = order[i]; a = s SUBSEP "nexus"; b = s SUBSEP "fastapi"
            if (!(a in rps) || !(b in rps)) continue
            R[s] = rps[b] > 0 ? rps[a] / rps[b] : 0; have[s] = 1
            printf "%-10s %9.2fx %14.2f vs %.2f ms\n", s, R[s], p99[a], p99[b]
        }
        u = "queries" Q SUBSEP "nexus"
        if ((("cached" Q) SUBSEP "nexus") in rps || (("cached" Q) SUBSEP "nexus-redis") in rps) {
            print ""
            print "Nexus cached / uncached: /cached-queries?count=" Q " vs /queries?queries=" Q
            fmt = "%-10s %-12s %-7s %11s %7s %8s %11s %7s %9s\n"
            printf fmt, "scenario", "server", "cache", "requests/s", "ratio", "p99 ms", "req/app-CPU", "ratio", "Redis CPU"
            m = split("queries" Q " nexus none|cached" Q " nexus memory|cached" Q " nexus-redis redis", rows, "|")
            for (j = 1; j <= m; j++) {
                split(rows[j], f, " "); k = f[1] SUBSEP f[2]
                if (!(k in rps)) continue
                printf fmt, f[1], f[2], f[3], sprintf("%.0f", rps[k]), \
                    (u in rps && rps[u] > 0) ? sprintf("%.2fx", rps[k] / rps[u]) : "-", \
                    (p99[k] == "nan") ? "-" : sprintf("%.2f", p99[k]), \
                    (rpc[k] > 0) ? sprintf("%.0f", rpc[k]) : "-", \
                    (u in rpc && rpc[u] > 0 && rpc[k] > 0) ? sprintf("%.2fx", rpc[k] / rpc[u]) : "-", \
                    (f[2] == "nexus-redis" && wall[k] > 0) ? sprintf("%8.0f%%", 100 * rd[k] / wall[k]) : "-"
            }
        }
        print ""
        print "Targets (issue: database shapes)"
        fmt = "  %-44s %9s  %s\n"
        for (i = 1; i <= n; i++) {
            s = order[i]
            if (have[s]) printf fmt, s ": req/s >= 5x FastAPI", sprintf("%.2fx", R[s]), mark(R[s] >= 5)
        }
        a = "db" SUBSEP "nexus"; b = "db" SUBSEP "pgbench-S"
        if ((a in rps) && (b in rps) && rps[b] > 0)
            printf fmt, "db: req/s >= 0.7x pgbench -S tps", sprintf("%.2fx", rps[a] / rps[b]), mark(rps[a] / rps[b] >= 0.7)
    }' "$RESULTS"
    if [[ -s $NOTES ]]; then
        echo
        echo "Notes"
        sed 's/^/  - /' "$NOTES"
    fi
}

# ---------------------------------------------------------------- main

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "starting PostgreSQL"
pg_start || exit 1
make_tables || exit 1
log "tables from $SCHEMA_FROM; pgbench -i -s 10"
"$PG_BIN/pgbench" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -i -s 10 -q pgbench >"$RAW_DIR/db-pgbench-init.txt" 2>&1 ||
    { cat "$RAW_DIR/db-pgbench-init.txt" >&2; exit 1; }

for name in "${SERVERS[@]}"; do
    PORT_OF[$name]=$(free_port)
    log "starting $name on port ${PORT_OF[$name]} (CPU $SERVER_CPU)"
    start_server "$name" "${PORT_OF[$name]}" || exit 1
    PID_OF[$name]=$SERVER_PID
done
LOGGED=("${SERVERS[@]}") # servers whose logs are checked at the end
if [[ -n ${PORT_OF[fastapi]:-} ]]; then
    FASTAPI_RUNS=$(curl -s --max-time 2 "http://$HOST:${PORT_OF[fastapi]}/health" | tr -d '\n')
fi

for shape in "${SHAPES[@]}"; do
    names=("${SERVERS[@]}")
    uncached_ref=0
    case $shape in
    db) scenario=db path=/db ;;
    queries | updates) scenario=$shape$QUERIES path="/$shape?queries=$QUERIES" ;;
    fortunes) scenario=fortunes path=/fortunes ;;
    cached)
        ((CACHED)) || continue
        scenario=cached$QUERIES path="/cached-queries?count=$QUERIES" names=(nexus nexus-redis)
        # the uncached reference: Nexus's /queries of the same count, measured here when
        # the queries shape is not selected
        [[ " ${SHAPES[*]} " == *" queries "* ]] || uncached_ref=1
        log "starting redis-server"
        redis_start || exit 1
        log "Redis on port $REDIS_PORT; starting nexus-redis"
        PORT_OF[nexus-redis]=$(free_port)
        start_server nexus-redis "${PORT_OF[nexus-redis]}" || exit 1
        PID_OF[nexus-redis]=$SERVER_PID
        LOGGED+=(nexus-redis)
        warm_cache nexus
        warm_cache nexus-redis
        ;;
    *) echo "bench-db: unknown shape '$shape' in BENCH_DB_SHAPES" >&2; exit 2 ;;
    esac
    for ((round = 1; round <= ROUNDS; round++)); do
        ((uncached_ref)) && run_wrk "queries$QUERIES" nexus "/queries?queries=$QUERIES" "$round"
        for name in "${names[@]}"; do
            run_wrk "$scenario" "$name" "$path" "$round"
        done
        [[ $scenario == db ]] && run_pgbench "$round"
    done
    if [[ $shape == cached ]]; then
        status=0
        stop_server "${PID_OF[nexus-redis]}" nexus-redis || status=$?
        ((status == 0)) || note "nexus-redis exited with status $status on SIGTERM"
        redis_stop
    fi
done

for name in "${SERVERS[@]}"; do
    status=0
    stop_server "${PID_OF[$name]}" "$name" || status=$?
    # uvicorn exits 0 on SIGTERM, Nexus too
    ((status == 0)) || note "$name exited with status $status on SIGTERM"
done
ERR_RE='level=(warn|error|fatal|crit)|sanitizer|segv|abort|core dumped|Traceback'
# Not counted: a Redis call (or the wait for a Redis connection) given up because wrk closed
# its connection mid-request at the end of a run (nexus-redis logs that as a warning).
ERR_SKIP='the client went away'
for name in "${LOGGED[@]}"; do
    errs=$(grep -hiE "$ERR_RE" "$TMP/$name.log" 2>/dev/null | grep -vF "$ERR_SKIP" || true)
    if [[ -n $errs ]]; then
        note "$name logged $(wc -l <<<"$errs") warning/error lines (raw/db-$name.log); first: $(head -n 1 <<<"$errs")"
    fi
done

REPORTED=1
report | tee "$OUT"
log "table saved to $OUT; raw wrk and pgbench output and logs in $RAW_DIR/db-*"
exit "$FAILED"
