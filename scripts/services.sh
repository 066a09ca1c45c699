#!/usr/bin/env bash
# Throwaway PostgreSQL 15, MariaDB and Redis servers for the tests and the benchmark: loopback
# only, all state under one folder, gone with it.
#
#   scripts/services.sh start DIR       create (first time) and start all three, write DIR/env
#   scripts/services.sh stop DIR        stop whatever of them runs; DIR stays for the caller
#   scripts/services.sh start-pg|stop-pg|restart-pg|kill-pg DIR
#   scripts/services.sh start-mysql|stop-mysql|restart-mysql|kill-mysql DIR
#   scripts/services.sh start-redis|stop-redis|restart-redis|kill-redis DIR
#
# DIR is a fresh `mktemp -d` folder (short: Unix socket paths live in it). `source DIR/env`
# exports NEXUS_TEST_PG_URL and NEXUS_TEST_MYSQL_URL (user, password and database `nexus`,
# a superuser that may create and drop other databases), NEXUS_TEST_REDIS_URL (password
# `nexus`, no persistence) and the paths and ports the outage tests need. The per-server verbs
# keep the port and the data, so a client sees the same server come back: `stop-*` is a clean
# shutdown, `kill-*` a crash (PostgreSQL's immediate shutdown, SIGKILL for MariaDB and Redis)
# that the next start recovers from (Redis keeps nothing on disk: it comes back empty).
#
# As root, PostgreSQL runs as the `postgres` user (it refuses root), MariaDB and Redis as root.
# The servers run in sessions of their own, so a Ctrl-C on the terminal reaches only the
# caller, whose trap then stops them cleanly.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
MARIADBD=/usr/sbin/mariadbd
REDIS_SERVER=/usr/bin/redis-server
REDIS_CLI=/usr/bin/redis-cli
START_TIMEOUT=60 # seconds for a server to answer or to stop
USER_NAME=nexus  # user, password and database of the servers (Redis: the password)
MAX_CONNECTIONS=500

SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

die() {
    echo "services: $*" >&2
    exit 1
}

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 64
}

log_tail() {
    [ -f "$1" ] || return 0
    echo "---- $1 (tail) ----" >&2
    tail -n 30 "$1" >&2
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# A free port below the kernel's ephemeral range (32768 up), which clients' outgoing
# connections and the tests' own servers (port 0) draw from: one of them could otherwise sit
# on a database's port while an outage test has the database stopped.
free_port() {
    /usr/bin/python3 -c 'import random, socket, sys
for port in random.sample(range(20000, 32768), 200):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        sys.exit(0)
sys.exit("services: no free port in 20000-32767")'
}

# Whether a process still runs: some thread of it is neither a zombie nor dead. The servers
# are reparented to init once we exit, and a killed multi-threaded one shows a zombie leader
# while its other threads (holding its sockets) are still on their way out.
alive() {
    local stat state
    for stat in /proc/"$1"/task/*/stat; do
        state=$(awk '{ sub(/.*\) /, ""); print $1 }' "$stat" 2>/dev/null) || continue
        [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ] && return 0
    done
    return 1
}

# ---- PostgreSQL ---------------------------------------------------------------------------

as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_ctl() {
    as_pg "$PG_BIN/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" "$@"
}

pg_running() {
    [ -f "$dir/pg/data/postmaster.pid" ] && alive "$(head -n 1 "$dir/pg/data/postmaster.pid")"
}

# The settings live in the data folder, so a plain `pg_ctl start` brings back the same server.
pg_init() {
    [ -f "$dir/pg/data/PG_VERSION" ] && return 0
    [ -x "$PG_BIN/initdb" ] || die "$PG_BIN/initdb missing: run scripts/install-deps.sh test"
    mkdir -p "$dir/pg"
    printf '%s\n' "$USER_NAME" >"$dir/pg/password"
    chmod 600 "$dir/pg/password"
    if is_root; then
        chown -R postgres "$dir/pg"
        runuser -u postgres -- test -w "$dir/pg" ||
            die "user postgres cannot write $dir/pg: every folder above it must be searchable" \
                "(chmod o+x)"
    fi
    if ! as_pg "$PG_BIN/initdb" -D "$dir/pg/data" -U "$USER_NAME" --pwfile="$dir/pg/password" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale --no-sync \
        --no-instructions >"$dir/pg/initdb.log" 2>&1; then
        log_tail "$dir/pg/initdb.log"
        die "PostgreSQL initdb failed in $dir/pg/data"
    fi
    local port
    port=$(free_port)
    echo "$port" >"$dir/pg/port"
    cat >>"$dir/pg/data/postgresql.conf" <<EOF

# scripts/services.sh: a throwaway test server
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/pg'
max_connections = $MAX_CONNECTIONS
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    pg_start
    if ! as_pg "$PG_BIN/psql" -X -q -h "$dir/pg" -p "$port" -U "$USER_NAME" -d postgres \
        -c "CREATE DATABASE $USER_NAME" >>"$dir/pg/initdb.log" 2>&1; then
        log_tail "$dir/pg/initdb.log"
        die "PostgreSQL: could not create database $USER_NAME"
    fi
}

pg_start() {
    pg_running && return 0
    if ! pg_ctl -w -t "$START_TIMEOUT" start >/dev/null 2>"$dir/pg/ctl.err"; then
        cat "$dir/pg/ctl.err" >&2
        log_tail "$dir/pg/server.log"
        die "PostgreSQL did not start within ${START_TIMEOUT}s (data $dir/pg/data)"
    fi
}

pg_stop() { # MODE: fast (clean) or immediate (a crash: recovery on the next start)
    pg_running || return 0
    if ! pg_ctl -m "$1" -w -t "$START_TIMEOUT" stop >/dev/null 2>"$dir/pg/ctl.err"; then
        cat "$dir/pg/ctl.err" >&2
        pg_ctl -m immediate -w -t "$START_TIMEOUT" stop >/dev/null 2>&1 ||
            die "PostgreSQL in $dir/pg/data does not stop"
    fi
}

# ---- MariaDB ------------------------------------------------------------------------------

my_user() { if is_root; then echo root; else id -un; fi; }

# Everything but the port is fixed here, so a restart is the same server.
my_args() {
    local args=(--no-defaults --datadir="$dir/my/data" --tmpdir="$dir/my/tmp"
        --innodb-log-file-size=16M --innodb-buffer-pool-size=64M)
    if is_root; then args+=(--user=root); fi
    printf '%s\n' "${args[@]}"
}

my_pid() { [ -f "$dir/my/pid" ] && head -n 1 "$dir/my/pid"; }

my_running() {
    local pid
    pid=$(my_pid) || return 1
    alive "$pid" && grep -q mariadbd "/proc/$pid/comm" 2>/dev/null
}

my_sql() {
    /usr/bin/mariadb --no-defaults --socket="$dir/my/sock" --user="$(my_user)"
}

my_init() {
    [ -d "$dir/my/data/mysql" ] && return 0
    [ -x "$MARIADBD" ] || die "$MARIADBD missing: run scripts/install-deps.sh test"
    mkdir -p "$dir/my/data" "$dir/my/tmp"
    local args
    mapfile -t args < <(my_args)
    if ! /usr/bin/mariadb-install-db "${args[@]}" --skip-test-db \
        --auth-root-authentication-method=socket >"$dir/my/install.log" 2>&1; then
        log_tail "$dir/my/install.log"
        die "mariadb-install-db failed in $dir/my/data"
    fi
    free_port >"$dir/my/port"
    my_start
    # With skip-name-resolve, 'nexus'@'%' is the TCP account and 'nexus'@'localhost' the
    # socket one; anonymous accounts would shadow them, so they go.
    if ! my_sql >>"$dir/my/install.log" 2>&1 <<EOF; then
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
CREATE DATABASE $USER_NAME CHARACTER SET utf8mb4;
CREATE USER '$USER_NAME'@'%' IDENTIFIED BY '$USER_NAME';
CREATE USER '$USER_NAME'@'localhost' IDENTIFIED BY '$USER_NAME';
GRANT ALL ON *.* TO '$USER_NAME'@'%' WITH GRANT OPTION;
GRANT ALL ON *.* TO '$USER_NAME'@'localhost' WITH GRANT OPTION;
EOF
        log_tail "$dir/my/install.log"
        die "MariaDB: could not create user and database $USER_NAME"
    fi
}

my_start() {
    my_running && return 0
    local args port pid i
    mapfile -t args < <(my_args)
    port=$(cat "$dir/my/port")
    rm -f "$dir/my/pid"
    setsid "$MARIADBD" "${args[@]}" --socket="$dir/my/sock" --port="$port" \
        --bind-address=127.0.0.1 --pid-file="$dir/my/pid" --log-error="$dir/my/server.log" \
        --skip-log-bin --innodb-flush-log-at-trx-commit=0 --max-connections="$MAX_CONNECTIONS" \
        --skip-name-resolve --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_general_ci </dev/null >>"$dir/my/server.log" 2>&1 &
    pid=$!
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        if ! alive "$pid"; then
            log_tail "$dir/my/server.log"
            die "MariaDB exited while starting (data $dir/my/data)"
        fi
        if [ -f "$dir/my/pid" ] && /usr/bin/mariadb-admin --no-defaults --socket="$dir/my/sock" \
            --user="$(my_user)" --connect-timeout=2 ping >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    log_tail "$dir/my/server.log"
    die "MariaDB did not answer within ${START_TIMEOUT}s (data $dir/my/data)"
}

# Stops process PID named NAME: MODE fast (SIGTERM, a clean shutdown, SIGKILL if it is
# still there after START_TIMEOUT) or immediate (SIGKILL, a crash).
stop_pid() { # NAME PID MODE
    local i
    if [ "$3" = immediate ]; then
        kill -KILL "$2"
    else
        kill -TERM "$2"
    fi
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        alive "$2" || return 0
        sleep 0.1
    done
    echo "services: $1 (pid $2) still runs ${START_TIMEOUT}s after SIGTERM; killing it" >&2
    kill -KILL "$2" 2>/dev/null || true
}

my_stop() { # MODE: fast or immediate (see stop_pid)
    my_running || return 0
    stop_pid MariaDB "$(my_pid)" "$1"
}

# ---- Redis --------------------------------------------------------------------------------

rd_pid() { [ -f "$dir/redis/pid" ] && head -n 1 "$dir/redis/pid"; }

rd_running() {
    local pid
    pid=$(rd_pid) || return 1
    alive "$pid" && grep -q redis-server "/proc/$pid/comm" 2>/dev/null
}

rd_cli() {
    "$REDIS_CLI" -s "$dir/redis/sock" -a "$USER_NAME" --no-auth-warning "$@"
}

# The port is chosen once; everything else is fixed here, so a restart is the same server.
rd_init() {
    [ -f "$dir/redis/port" ] && return 0
    [ -x "$REDIS_SERVER" ] || die "$REDIS_SERVER missing: run scripts/install-deps.sh test"
    mkdir -p "$dir/redis"
    free_port >"$dir/redis/port"
}

rd_start() {
    rd_init
    rd_running && return 0
    local port pid i
    port=$(cat "$dir/redis/port")
    rm -f "$dir/redis/pid"
    setsid "$REDIS_SERVER" --bind 127.0.0.1 --port "$port" --unixsocket "$dir/redis/sock" \
        --unixsocketperm 700 --dir "$dir/redis" --pidfile "$dir/redis/pid" \
        --logfile "$dir/redis/server.log" --daemonize no --save '' --appendonly no \
        --requirepass "$USER_NAME" --maxclients "$MAX_CONNECTIONS" </dev/null \
        >>"$dir/redis/stdout.log" 2>&1 &
    pid=$!
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        if ! alive "$pid"; then
            log_tail "$dir/redis/stdout.log"
            log_tail "$dir/redis/server.log"
            die "Redis exited while starting (folder $dir/redis)"
        fi
        if [ -f "$dir/redis/pid" ] && [ "$(rd_cli ping 2>/dev/null)" = PONG ]; then
            return 0
        fi
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    log_tail "$dir/redis/server.log"
    die "Redis did not answer within ${START_TIMEOUT}s (folder $dir/redis)"
}

rd_stop() { # MODE: fast or immediate (see stop_pid)
    rd_running || return 0
    stop_pid Redis "$(rd_pid)" "$1"
}

# ---- the whole set ------------------------------------------------------------------------

# Single quotes, readable by `source` and by Python's shlex alike.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

write_env() {
    local pg_port my_port rd_port ctl vars i
    pg_port=$(cat "$dir/pg/port")
    my_port=$(cat "$dir/my/port")
    rd_port=$(cat "$dir/redis/port")
    ctl="$PG_BIN/pg_ctl -D $dir/pg/data -l $dir/pg/server.log"
    if is_root; then ctl="runuser -u postgres -- $ctl"; fi
    vars=(
        NEXUS_TEST_SERVICES "$SELF"
        NEXUS_TEST_SERVICES_DIR "$dir"
        NEXUS_TEST_PG_URL "postgresql://$USER_NAME:$USER_NAME@127.0.0.1:$pg_port/$USER_NAME"
        NEXUS_TEST_PG_HOST 127.0.0.1
        NEXUS_TEST_PG_PORT "$pg_port"
        NEXUS_TEST_PG_BIN "$PG_BIN"
        NEXUS_TEST_PG_DATA "$dir/pg/data"
        NEXUS_TEST_PG_SOCKET_DIR "$dir/pg"
        NEXUS_TEST_PG_LOG "$dir/pg/server.log"
        NEXUS_TEST_PG_CTL "$ctl"
        NEXUS_TEST_MYSQL_URL "mysql://$USER_NAME:$USER_NAME@127.0.0.1:$my_port/$USER_NAME"
        NEXUS_TEST_MYSQL_HOST 127.0.0.1
        NEXUS_TEST_MYSQL_PORT "$my_port"
        NEXUS_TEST_MYSQL_DATA "$dir/my/data"
        NEXUS_TEST_MYSQL_SOCKET "$dir/my/sock"
        NEXUS_TEST_MYSQL_PID_FILE "$dir/my/pid"
        NEXUS_TEST_MYSQL_LOG "$dir/my/server.log"
        NEXUS_TEST_REDIS_URL "redis://:$USER_NAME@127.0.0.1:$rd_port/0"
        NEXUS_TEST_REDIS_HOST 127.0.0.1
        NEXUS_TEST_REDIS_PORT "$rd_port"
        NEXUS_TEST_REDIS_PASSWORD "$USER_NAME"
        NEXUS_TEST_REDIS_SOCKET "$dir/redis/sock"
        NEXUS_TEST_REDIS_PID_FILE "$dir/redis/pid"
        NEXUS_TEST_REDIS_LOG "$dir/redis/server.log"
    )
    {
        echo "# written by scripts/services.sh start DIR; stop with scripts/services.sh stop DIR"
        for ((i = 0; i < ${#vars[@]}; i += 2)); do
            printf 'export %s=%s\n' "${vars[i]}" "$(quote "${vars[i + 1]}")"
        done
    } >"$dir/env.tmp"
    mv "$dir/env.tmp" "$dir/env"
}

start_all() {
    # A half-started set is stopped again, so a failed start leaves nothing running.
    trap 'stop_all' EXIT
    if is_root; then chmod o+x "$dir"; fi
    pg_init
    pg_start
    my_init
    my_start
    rd_start
    write_env
    trap - EXIT
}

stop_all() {
    local rc=0
    if [ -d "$dir/pg" ]; then pg_stop fast || rc=1; fi
    if [ -d "$dir/my" ]; then my_stop fast || rc=1; fi
    if [ -d "$dir/redis" ]; then rd_stop fast || rc=1; fi
    return $rc
}

[ $# -eq 2 ] || usage
cmd=$1
[ -d "$2" ] || die "no folder $2 (create it with mktemp -d)"
dir=$(cd "$2" && pwd)
# Unix socket paths are limited to 107 bytes: DIR/pg/.s.PGSQL.PORT must fit. Plain characters
# keep the paths usable unquoted in NEXUS_TEST_PG_CTL and in the servers' configuration.
[ ${#dir} -le 80 ] || die "folder path too long for Unix sockets (over 80 bytes): $dir"
[[ $dir =~ ^[A-Za-z0-9._/-]+$ ]] ||
    die "folder path with characters other than A-Z a-z 0-9 . _ / -: $dir"

case "$cmd" in
start) start_all ;;
stop) stop_all ;;
start-pg) pg_start ;;
stop-pg) pg_stop fast ;;
kill-pg) pg_stop immediate ;;
restart-pg) pg_stop fast && pg_start ;;
start-mysql) my_start ;;
stop-mysql) my_stop fast ;;
kill-mysql) my_stop immediate ;;
restart-mysql) my_stop fast && my_start ;;
start-redis) rd_start ;;
stop-redis) rd_stop fast ;;
kill-redis) rd_stop immediate ;;
restart-redis) rd_stop fast && rd_start ;;
*) usage ;;
esac
