#!/usr/bin/env bash
# Points nginx at the blue or the green Nexus deployment.
#
#   blue-green-switch.sh green     check green's /ready, write upstream.conf, nginx -t,
#                                  reload, verify through nginx that green answers
#   blue-green-switch.sh status    the live colour and the readiness of both
#   blue-green-switch.sh render C  print the upstream.conf of colour C, change nothing
#
# upstream.conf (deploy/nginx/nexus-active/) holds `upstream nexus_active` with the servers
# of one colour and a map naming that colour, which deploy/nginx/blue-green.conf returns in
# the X-Deployment header. It is replaced by rename: Compose mounts its folder, so the
# container sees the new file.
#
# Nothing changes unless the target is ready and `nginx -t` accepts the new file (the old
# one is put back otherwise). If, after the reload, nginx does not answer 200 with the new
# colour's header within --verify-timeout, the previous file is restored and nginx reloaded
# again. The reload is graceful: requests in progress finish on the old colour, which keeps
# running; stop it once nothing needs it (or keep it for switching back).
#
# The defaults suit deploy/compose/docker-compose.blue-green.yml run from this checkout:
# nginx reaches nexus-blue:8000 / nexus-green:8000, the script checks 127.0.0.1:8001 /
# 127.0.0.1:8002 (their published ports). Compose reads the file's variables even for
# `exec`: export BLUE_VERSION and GREEN_VERSION as for `up`. On a host with nginx and two
# instances (nexus@8001, nexus@8002):
#   blue-green-switch.sh --upstream-file /etc/nginx/nexus-active/upstream.conf \
#       --blue 127.0.0.1:8001 --green 127.0.0.1:8002 --nginx-test 'nginx -t -q' \
#       --nginx-reload 'systemctl reload nginx' --nginx-pid-file /run/nginx.pid green

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$here/common.sh"
deploy=$(dirname "$here")

if command -v docker-compose >/dev/null; then
    compose="docker-compose"
else
    compose="docker compose"
fi
compose+=" -f '$deploy/compose/docker-compose.blue-green.yml'"

UPSTREAM_FILE=${BG_UPSTREAM_FILE:-$deploy/nginx/nexus-active/upstream.conf}
BLUE_SERVERS=${BG_BLUE_SERVERS:-nexus-blue:8000}
GREEN_SERVERS=${BG_GREEN_SERVERS:-nexus-green:8000}
BLUE_READY=${BG_BLUE_READY:-}
GREEN_READY=${BG_GREEN_READY:-}
VERIFY_URL=${BG_VERIFY_URL:-http://127.0.0.1/health}
VERIFY_TIMEOUT=${BG_VERIFY_TIMEOUT:-10}
NGINX_TEST_CMD=${NGINX_TEST_CMD:-$compose exec -T nginx nginx -t -q}
NGINX_RELOAD_CMD=${NGINX_RELOAD_CMD:-$compose exec -T nginx nginx -s reload}
NGINX_PID_FILE=${NGINX_PID_FILE:-}

usage() {
    cat <<EOF
Usage: $PROG [options] blue|green|status
       $PROG [options] render blue|green

Options (environment variable, default):
  --upstream-file FILE  BG_UPSTREAM_FILE   $UPSTREAM_FILE
  --blue SERVERS        BG_BLUE_SERVERS    $BLUE_SERVERS
  --green SERVERS       BG_GREEN_SERVERS   $GREEN_SERVERS
        HOST:PORT of the colour's instances as nginx reaches them (spaces or commas)
  --blue-ready URLS     BG_BLUE_READY      ${BLUE_READY:-http://127.0.0.1:8001/ready}
  --green-ready URLS    BG_GREEN_READY     ${GREEN_READY:-http://127.0.0.1:8002/ready}
        readiness URLs as seen from here; every one must answer 200 before a switch
        (given --blue/--green only: http://SERVER/ready for each server)
  --verify-url URL      BG_VERIFY_URL      $VERIFY_URL
        a URL through nginx whose answer carries X-Deployment
  --verify-timeout SECS BG_VERIFY_TIMEOUT  $VERIFY_TIMEOUT
  --nginx-test CMD      NGINX_TEST_CMD     $NGINX_TEST_CMD
  --nginx-reload CMD    NGINX_RELOAD_CMD   $NGINX_RELOAD_CMD
  --nginx-pid-file FILE NGINX_PID_FILE     ${NGINX_PID_FILE:-(none)}
        the nginx master's pid file, when visible from here, to follow the reload
  -h, --help

Exit status: 0 when nginx serves the requested colour (or status/render succeeded);
1 when nothing was switched, the message says why.
EOF
}

# Servers given (flag or variable) without readiness URLs: check http://SERVER/ready.
blue_set=0 green_set=0
[[ -n ${BG_BLUE_SERVERS:-} ]] && blue_set=1
[[ -n ${BG_GREEN_SERVERS:-} ]] && green_set=1
args=()
while (($#)); do
    case $1 in
    --upstream-file) UPSTREAM_FILE=$(value "$@"); shift ;;
    --blue) BLUE_SERVERS=$(value "$@"); blue_set=1; shift ;;
    --green) GREEN_SERVERS=$(value "$@"); green_set=1; shift ;;
    --blue-ready) BLUE_READY=$(value "$@"); shift ;;
    --green-ready) GREEN_READY=$(value "$@"); shift ;;
    --verify-url) VERIFY_URL=$(value "$@"); shift ;;
    --verify-timeout) VERIFY_TIMEOUT=$(value "$@"); shift ;;
    --nginx-test) NGINX_TEST_CMD=$(value "$@"); shift ;;
    --nginx-reload) NGINX_RELOAD_CMD=$(value "$@"); shift ;;
    --nginx-pid-file) NGINX_PID_FILE=$(value "$@"); shift ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option: $1 (see --help)" ;;
    *) args+=("$1") ;;
    esac
    shift
done
check_seconds --verify-timeout "$VERIFY_TIMEOUT"

# ready_urls COLOUR -> its readiness URLs, space separated.
ready_urls() {
    local given servers set s out=""
    if [[ $1 == blue ]]; then
        given=$BLUE_READY servers=$BLUE_SERVERS set=$blue_set
    else
        given=$GREEN_READY servers=$GREEN_SERVERS set=$green_set
    fi
    if [[ -n $given ]]; then
        printf '%s' "${given//,/ }"
    elif ((set)); then
        for s in ${servers//,/ }; do out+="http://$s/ready "; done
        printf '%s' "${out% }"
    elif [[ $1 == blue ]]; then
        printf 'http://127.0.0.1:8001/ready'
    else
        printf 'http://127.0.0.1:8002/ready'
    fi
}

servers_of() {
    if [[ $1 == blue ]]; then
        printf '%s' "${BLUE_SERVERS//,/ }"
    else
        printf '%s' "${GREEN_SERVERS//,/ }"
    fi
}

render() {
    local colour=$1 s
    cat <<EOF
# The live colour of the blue-green deployment. Written whole by
# deploy/scripts/blue-green-switch.sh: switch with it rather than editing this file.
# Included at the http level by deploy/nginx/blue-green.conf.

upstream nexus_active {
    least_conn;
EOF
    for s in $(servers_of "$colour"); do
        [[ $s =~ ^[^:[:space:]]+:[0-9]+$ ]] || die "server '$s' of $colour is not HOST:PORT"
        printf '    server %s max_fails=3 fail_timeout=10s;\n' "$s"
    done
    cat <<EOF
    keepalive 32;
    keepalive_timeout 4s; # below Nexus's server.keepalive_timeout (5s): nginx closes first
}

# Returned in the X-Deployment response header, so clients and this script can tell which
# colour answered.
map \$host \$nexus_active_colour {
    default $colour;
}
EOF
}

# The colour upstream.conf names now, or "none".
active_colour() {
    local c
    c=$(awk '/^map .*\$nexus_active_colour/ { m = 1 } m && $1 == "default" {
             sub(/;.*/, "", $2); print $2; exit }' "$UPSTREAM_FILE" 2>/dev/null || true)
    printf '%s' "${c:-none}"
}

# not_ready COLOUR -> prints "URL answered STATUS" for each readiness URL not at 200.
not_ready() {
    local u st
    for u in $(ready_urls "$1"); do
        st=$(http_status "$u")
        [[ $st == 200 ]] || printf '%s answered %s; ' "$u" "$st"
    done
}

# verify COLOUR: nginx answers VERIFY_URL with 200 and X-Deployment: COLOUR.
verify() {
    local until headers status got
    until=$(deadline "$VERIFY_TIMEOUT")
    while :; do
        headers=$(curl -sk --noproxy '*' -o /dev/null -D - --max-time 3 "$VERIFY_URL" || true)
        status=$(awk 'NR == 1 { print $2 }' <<<"$headers")
        got=$(awk -F': *' 'tolower($1) == "x-deployment" { sub(/\r$/, "", $2); print $2 }' \
            <<<"$headers")
        [[ $status == 200 && $got == "$1" ]] && return 0
        before "$until" || {
            printf '%s: %s answered %s with X-Deployment "%s"\n' "$PROG" "$VERIFY_URL" \
                "${status:-nothing}" "$got" >&2
            return 1
        }
        sleep 0.2
    done
}

# install FILE: renames FILE over upstream.conf (readable by nginx's workers too).
install_file() {
    chmod 0644 "$1"
    mv -f "$1" "$UPSTREAM_FILE"
}

colour_arg() {
    [[ ${1:-} == blue || ${1:-} == green ]] ||
        die "expected blue, green, status or render, not '${1:-}' (see --help)"
}

case ${args[0]:-} in
render)
    colour_arg "${args[1]:-}"
    render "${args[1]}"
    exit 0
    ;;
status)
    say "live colour: $(active_colour) ($UPSTREAM_FILE)"
    for c in blue green; do
        problems=$(not_ready "$c")
        problems=${problems%; }
        say "$c: $(servers_of "$c"): ${problems:-ready}"
    done
    exit 0
    ;;
esac
((${#args[@]} == 1)) || die "one colour expected (see --help)"
target=${args[0]}
colour_arg "$target"
command -v curl >/dev/null || die "curl is required (readiness and verification)"
dir=$(dirname "$UPSTREAM_FILE")
[[ -d $dir && -w $dir ]] || die "$dir is not a writable folder (--upstream-file)"

previous=$(active_colour)
problems=$(not_ready "$target")
[[ -z $problems ]] || die "$target is not ready (${problems%; }): nothing changed," \
    "nginx still serves $previous"

new=$(mktemp "$dir/.upstream.conf.XXXXXX")
backup=$(mktemp "$dir/.upstream.conf.XXXXXX")
trap 'rm -f "$new" "$backup"' EXIT
render "$target" >"$new"
if [[ -f $UPSTREAM_FILE ]] && cmp -s "$new" "$UPSTREAM_FILE"; then
    verify "$target" || die "$target is the live colour but nginx does not answer as such"
    say "$target is already the live colour; nothing changed"
    exit 0
fi
run "nginx -t" "$NGINX_TEST_CMD" ||
    die "the nginx configuration fails its test before any change: nothing changed"

had_file=0
if [[ -f $UPSTREAM_FILE ]]; then
    cp -p "$UPSTREAM_FILE" "$backup"
    had_file=1
fi
restore() {
    if ((had_file)); then
        install_file "$backup"
    else
        rm -f "$UPSTREAM_FILE"
    fi
}

install_file "$new"
if ! run "nginx -t" "$NGINX_TEST_CMD"; then
    restore
    die "nginx -t rejects upstream.conf for $target; the previous file is back, nothing changed"
fi
if ! reload_nginx 0; then
    restore
    die "nginx reload failed; the previous upstream.conf is back (nginx serves $previous)"
fi
if ! verify "$target"; then
    restore
    reload_nginx 0 || true
    die "nginx does not answer as $target after the reload: switched back to $previous"
fi
say "nginx now sends traffic to $target ($(servers_of "$target")), was $previous;" \
    "verified: $VERIFY_URL answers 200 with X-Deployment: $target"
if [[ $previous != none && $previous != "$target" ]]; then
    say "$previous keeps running and finishes the requests it has; switch back with:" \
        "$PROG $previous"
fi
