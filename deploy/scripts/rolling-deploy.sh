#!/usr/bin/env bash
# Restarts the Nexus instances behind nginx one at a time without failing a request.
#
# For each instance:
#   1. mark its `server` line `down` in the nginx upstream, `nginx -t`, reload nginx;
#   2. wait until nginx's previous workers have exited (their in-flight requests are done;
#      at most --drain seconds), or --drain seconds when the nginx master is not visible;
#   3. run the restart command (systemctl restart nexus@PORT by default);
#   4. wait until the instance's /ready answers 200; if it does not within --ready-timeout,
#      stop here: the instance stays marked `down`, the others keep serving, exit 1;
#   5. remove `down`, `nginx -t`, reload, pause, next instance.
# Before anything is changed, `nginx -t` must pass and every instance must be a server of
# the upstream file; an instance is only taken out while another one is in the upstream
# and ready. --check does these checks and changes nothing.
#
# Why take the instance out of nginx first, rather than rely on SIGTERM (Nexus serves for
# server.shutdown_delay, then closes its listener) and on proxy_next_upstream? Measured with
# two instances behind deploy/nginx/nexus.conf and wrk -c16:
# - SIGTERM and restart, one instance after the other: nginx retries the refused
#   connections on the other instance but counts them against max_fails, then keeps the
#   restarted instance out for fail_timeout (10s) although it is back. When the second one
#   stops inside that window nginx has no live upstream and answers 502 to everything
#   (214,000 of 325,000 requests in one run). Spaced by more than fail_timeout, the same
#   restarts failed nothing; but nginx then sends requests to a new instance as soon as it
#   listens, not once /ready is 200 (nginx without Plus has no health checks), and has no
#   way to leave out an instance that never becomes ready.
# - kill -9 and restart: besides the above, the requests in progress get 502 (nginx does
#   not replay a POST it has sent).
# - Taken out first (this script): no failed request, and an instance returns only once
#   ready. tests/integration/test_deploy_rolling.py runs both this and the two above.
# The cost is the reload. It loses no request nginx has begun, and the listening sockets
# stay open throughout; but the old workers close their idle keep-alive client
# connections, and a client whose next request crosses that close has to resend it.
# HTTP/1.1 allows that and browsers do it (HTTP/2 clients are warned by a GOAWAY); wrk does not
# and counts a few read errors per reload on keep-alive connections, with or without an
# upstream change. Every nginx reload (new certificate, config edit) costs the same.
#
# The instance's own SIGTERM handling still matters: requests nginx's old workers are
# still sending when the restart begins finish within server.graceful_timeout.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$here/common.sh"

UPSTREAM_FILE=${ROLLING_UPSTREAM_FILE:-/etc/nginx/sites-available/nexus}
INSTANCES=${ROLLING_INSTANCES:-127.0.0.1:8001 127.0.0.1:8002}
RESTART_CMD=${ROLLING_RESTART_CMD:-"systemctl restart nexus@{port}"}
READY_URL=${ROLLING_READY_URL:-"http://{addr}/ready"}
READY_TIMEOUT=${ROLLING_READY_TIMEOUT:-60}
DRAIN=${ROLLING_DRAIN:-10}
PAUSE=${ROLLING_PAUSE:-5}
NGINX_TEST_CMD=${NGINX_TEST_CMD:-nginx -t -q}
NGINX_RELOAD_CMD=${NGINX_RELOAD_CMD:-systemctl reload nginx}
NGINX_PID_FILE=${NGINX_PID_FILE-/run/nginx.pid}
CHECK_ONLY=0

usage() {
    cat <<EOF
Usage: $PROG [options]

Restarts the Nexus instances of an nginx upstream one at a time: each is marked down,
drained, restarted, checked on /ready and put back before the next.

Options (environment variable, default):
  --upstream-file FILE   ROLLING_UPSTREAM_FILE   $UPSTREAM_FILE
        the nginx file with the upstream's 'server HOST:PORT ...;' lines
  --instances LIST       ROLLING_INSTANCES       $INSTANCES
        HOST:PORT of each instance, in order, separated by spaces or commas
  --restart-cmd CMD      ROLLING_RESTART_CMD     $RESTART_CMD
        run with bash -c for each instance; {addr}, {host}, {port} are replaced
        (Compose, services reached as SERVICE:8000:
         'docker compose up -d --no-deps --force-recreate {host}')
  --ready-url URL        ROLLING_READY_URL       $READY_URL
        the instance's readiness URL as seen from here; {addr}, {host}, {port} are
        replaced
  --ready-timeout SECS   ROLLING_READY_TIMEOUT   $READY_TIMEOUT
  --drain SECS           ROLLING_DRAIN           $DRAIN
        longest wait for nginx's old workers to finish after taking an instance out;
        a fixed wait when the nginx master is not visible (nginx in a container)
  --pause SECS           ROLLING_PAUSE           $PAUSE
        wait after putting an instance back, before the next one
  --nginx-test CMD       NGINX_TEST_CMD          $NGINX_TEST_CMD
  --nginx-reload CMD     NGINX_RELOAD_CMD        $NGINX_RELOAD_CMD
        (Compose: 'docker compose exec -T nginx nginx -s reload')
  --nginx-pid-file FILE  NGINX_PID_FILE          ${NGINX_PID_FILE:-(none)}
        the nginx master's pid file, to follow reloads; '' for fixed waits
  --check                run the preflight checks, print the plan, change nothing
  -h, --help

Exit status: 0 when every instance was restarted and is back in the upstream; 1 otherwise
(the message names the instance that is left out and why).
EOF
}

while (($#)); do
    case $1 in
    --upstream-file) UPSTREAM_FILE=$(value "$@"); shift ;;
    --instances) INSTANCES=$(value "$@"); shift ;;
    --restart-cmd) RESTART_CMD=$(value "$@"); shift ;;
    --ready-url) READY_URL=$(value "$@"); shift ;;
    --ready-timeout) READY_TIMEOUT=$(value "$@"); shift ;;
    --drain) DRAIN=$(value "$@"); shift ;;
    --pause) PAUSE=$(value "$@"); shift ;;
    --nginx-test) NGINX_TEST_CMD=$(value "$@"); shift ;;
    --nginx-reload) NGINX_RELOAD_CMD=$(value "$@"); shift ;;
    --nginx-pid-file) NGINX_PID_FILE=$(value "$@"); shift ;;
    --check) CHECK_ONLY=1 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

check_seconds --ready-timeout "$READY_TIMEOUT"
check_seconds --drain "$DRAIN"
check_seconds --pause "$PAUSE"
read -r -a instances <<<"${INSTANCES//,/ }"
((${#instances[@]})) || die "no instances given"
for addr in "${instances[@]}"; do
    [[ $addr =~ ^[^:[:space:]]+:[0-9]+$ ]] || die "instance '$addr' is not HOST:PORT"
done
command -v curl >/dev/null || die "curl is required (it asks each instance's /ready)"

# upstream_edit FILE ADDR MODE -> the file on stdout with ADDR's server lines marked `down`
# (MODE down), unmarked (up), or unchanged (state: prints down or up instead). Exit 3 when
# no server line names ADDR. `server {` blocks and server_name never match: the word after
# `server` must be the address itself.
upstream_edit() {
    awk -v addr="$2" -v mode="$3" '
        {
            line = $0
            if (match(line, /^[ \t]*server[ \t]+[^ \t;]+/)) {
                tok = substr(line, 1, RLENGTH)
                sub(/^[ \t]*server[ \t]+/, "", tok)
                semi = index(line, ";")
                if (tok == addr && semi > 0) {
                    found++
                    body = substr(line, 1, semi - 1)
                    rest = substr(line, semi)
                    isdown = (body " " ~ /[ \t]down[ \t]/)
                    if (mode == "state") state = isdown ? "down" : "up"
                    if (mode == "down" && !isdown) body = body " down"
                    if (mode == "up" && isdown) {
                        body = body " "
                        gsub(/[ \t]+down[ \t]/, " ", body)
                        sub(/[ \t]+$/, "", body)
                    }
                    line = body rest
                }
            }
            if (mode != "state") print line
        }
        END {
            if (!found) exit 3
            if (mode == "state") print state
        }' "$1"
}

state_of() {
    upstream_edit "$UPSTREAM_FILE" "$1" state 2>/dev/null || printf 'missing'
}

ready_status() {
    http_status "$(fill "$READY_URL" "$1")"
}

# set_state ADDR down|up: edits the upstream file in place (same inode: a file bind-mounted
# into a container sees the change), tests the configuration, and restores the previous
# contents when the test fails.
set_state() {
    local addr=$1 mode=$2 backup next
    backup=$(mktemp)
    next=$(mktemp)
    cp "$UPSTREAM_FILE" "$backup"
    upstream_edit "$UPSTREAM_FILE" "$addr" "$mode" >"$next"
    cat "$next" >"$UPSTREAM_FILE"
    if ! run "nginx -t" "$NGINX_TEST_CMD"; then
        cat "$backup" >"$UPSTREAM_FILE"
        rm -f "$backup" "$next"
        die "nginx -t failed with $addr marked $mode; $UPSTREAM_FILE is restored"
    fi
    rm -f "$backup" "$next"
}

# Taking the last serving instance out would leave nginx nothing to send requests to.
require_another() {
    local addr=$1 other
    for other in "${instances[@]}"; do
        [[ $other == "$addr" ]] && continue
        if [[ $(state_of "$other") == up && $(ready_status "$other") == 200 ]]; then
            return 0
        fi
    done
    die "no other instance is in the upstream and ready: taking $addr out would stop" \
        "the service; nothing changed for $addr"
}

wait_ready() {
    local addr=$1 url status until
    url=$(fill "$READY_URL" "$addr")
    until=$(deadline "$READY_TIMEOUT")
    while :; do
        status=$(http_status "$url")
        [[ $status == 200 ]] && return 0
        before "$until" || {
            printf '%s: %s answered %s for %ss\n' "$PROG" "$url" "$status" \
                "$READY_TIMEOUT" >&2
            return 1
        }
        sleep 0.25
    done
}

# ---- preflight: nothing is changed before these pass -----------------------------------

[[ -r $UPSTREAM_FILE && -w $UPSTREAM_FILE ]] ||
    die "$UPSTREAM_FILE is not a readable and writable file (--upstream-file)"
run "nginx -t" "$NGINX_TEST_CMD" ||
    die "the nginx configuration does not pass its test before any change: fix it first"
for addr in "${instances[@]}"; do
    [[ $(state_of "$addr") != missing ]] ||
        die "no 'server $addr ...;' line in $UPSTREAM_FILE (--instances, --upstream-file)"
done
((${#instances[@]} >= 2)) ||
    die "one instance cannot be restarted without stopping the service; nothing changed"

if ((CHECK_ONLY)); then
    say "nginx -t passes; upstream file $UPSTREAM_FILE"
    if master=$(nginx_master); then
        say "nginx master $master: reloads are followed and drains end when its old workers exit"
    else
        say "nginx master not visible: each drain waits ${DRAIN}s"
    fi
    for addr in "${instances[@]}"; do
        say "$addr: $(state_of "$addr") in the upstream, /ready $(ready_status "$addr")," \
            "restart: $(fill "$RESTART_CMD" "$addr")"
    done
    exit 0
fi

# One rollout at a time: a second one could take the other instance out meanwhile.
if command -v flock >/dev/null; then
    exec 9<"$UPSTREAM_FILE"
    flock -n 9 || die "another rollout is running on $UPSTREAM_FILE"
fi

out=""
on_exit() {
    local rc=$?
    if [[ -n $out ]] && ((rc != 0)); then
        printf '%s: %s is still marked down in %s: nginx sends it nothing. Once it is ready,\n' \
            "$PROG" "$out" "$UPSTREAM_FILE" >&2
        printf '%s: run this script again, or remove "down" from its line and reload nginx.\n' \
            "$PROG" >&2
    fi
}
trap on_exit EXIT

n=0
for addr in "${instances[@]}"; do
    n=$((n + 1))
    say "[$n/${#instances[@]}] $addr: taking it out of the upstream"
    require_another "$addr"
    set_state "$addr" down
    out=$addr
    reload_nginx "$DRAIN" || die "nginx reload failed while taking $addr out"

    say "[$n/${#instances[@]}] $addr: restarting"
    run "restart of $addr" "$(fill "$RESTART_CMD" "$addr")" ||
        die "the restart command failed for $addr"
    wait_ready "$addr" ||
        die "$addr did not become ready within ${READY_TIMEOUT}s; rollout stopped," \
            "the other instances keep serving"

    say "[$n/${#instances[@]}] $addr: ready, putting it back"
    set_state "$addr" up
    out=""
    reload_nginx 0 || die "nginx reload failed while putting $addr back in"
    if ((n < ${#instances[@]})); then
        sleep "$PAUSE"
    fi
done
say "restarted ${#instances[@]} instances: ${instances[*]}"
